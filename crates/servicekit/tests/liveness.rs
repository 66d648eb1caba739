//! Liveness means the service can still do its work: a background worker that ends while the
//! service runs (it returned or panicked) turns `/health/live` to 503, so a supervisor or a
//! kubelet restarts the service; a worker that runs on keeps it 200.

use std::time::{Duration, Instant};

use axum::Router;
use servicekit::Readiness;

/// Longest wait for liveness to turn, in milliseconds: it turns within a fraction of a second,
/// but `cargo test` runs many test binaries at once on two cores, and 2 s once was not enough.
const TURN_MS_MAX: u64 = 10_000;

async fn live_status(http: &reqwest::Client, url: &str) -> (u16, String) {
    let answer = http.get(format!("{url}/health/live")).send().await.unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

async fn serve_with(worker: tokio::task::JoinHandle<()>) -> servicekit::Running {
    let addr = servicekit::Listen::Bind("127.0.0.1:0".parse().unwrap());
    servicekit::serve(
        "test",
        addr,
        Router::new(),
        Readiness::always(),
        None,
        serde_json::json!({}),
    )
    .await
    .unwrap()
    .with_worker(worker)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_ends_turns_liveness_red_and_one_that_runs_keeps_it_green() {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let running = serve_with(tokio::spawn(std::future::pending())).await;
    let ending = serve_with(tokio::spawn(async {})).await;
    let panicking = serve_with(tokio::spawn(async { panic!("a follower lost its way") })).await;

    let deadline = Instant::now() + Duration::from_millis(TURN_MS_MAX);
    let mut seen = Vec::new();
    for service in [&ending, &panicking] {
        loop {
            let (status, body) = live_status(&http, &service.url()).await;
            if status == 503 {
                assert!(
                    body.contains("wedged") && body.contains("worker 1"),
                    "{body}"
                );
                seen.push(body);
                break;
            }
            assert!(Instant::now() < deadline, "liveness stayed {status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(
        seen[0].contains("returned") && seen[1].contains("panicked"),
        "{seen:?}"
    );
    assert_eq!(live_status(&http, &running.url()).await.0, 200);
    for service in [running, ending, panicking] {
        service.stop().await;
    }
}
