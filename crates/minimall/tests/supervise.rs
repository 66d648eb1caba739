//! `minimall up --supervise`: every part a child process of the real binary, replicas behind the
//! gateway; a part killed with SIGKILL is started again and the shop takes orders again within a
//! bound; SIGTERM stops the whole fleet, leaving no process behind.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Longest wait for the fleet to come up, and for the shop to take orders again after a kill,
/// in milliseconds.
const UP_MS_MAX: u64 = 60_000;
const BACK_MS_MAX: u64 = 15_000;
/// Longest wait for the fleet to stop after SIGTERM (two tiers of drain notices), in ms.
const STOP_MS_MAX: u64 = 30_000;

fn state(data_dir: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(data_dir.join("supervisor.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn child<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|child| child["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {state}"))
}

fn alive(pid: u64) -> bool {
    // SAFETY: signal 0 only asks whether the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// Places an order through the gateway and waits until its payment is open (the saga called
/// payment), or gives up at `deadline`.
async fn order_goes_through(http: &reqwest::Client, gateway: &str, deadline: Instant) -> bool {
    let login = http
        .post(format!("{gateway}/api/login"))
        .json(&json!({"name": "alice", "password": "alice"}))
        .send()
        .await;
    let Ok(login) = login else { return false };
    let Ok(token) = login.json::<Value>().await else {
        return false;
    };
    let Some(token) = token["token"].as_str() else {
        return false;
    };
    let placed = http
        .post(format!("{gateway}/api/orders"))
        .bearer_auth(token)
        .json(&json!({"productId": "6d1f2c1e-3b1a-4c55-9a57-0d2a4f1e9b01", "quantity": 1}))
        .send()
        .await;
    let Ok(placed) = placed else { return false };
    if placed.status() != 201 {
        return false;
    }
    let order = placed.json::<Value>().await.unwrap()["orderId"]
        .as_str()
        .unwrap()
        .to_string();
    while Instant::now() < deadline {
        let seen = http
            .get(format!("{gateway}/api/orders/{order}"))
            .bearer_auth(token)
            .send()
            .await;
        if let Ok(seen) = seen {
            if seen.json::<Value>().await.unwrap_or_default()["status"] == "AwaitingDeposit" {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_part_is_started_again_and_the_shop_takes_orders_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Command::new(env!("CARGO_BIN_EXE_minimall"))
        .args([
            "up",
            "--supervise",
            "--any-port",
            "--replicas",
            "2",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut gateway = None;
    let started = Instant::now();
    let mut lines = BufReader::new(supervisor.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.trim().strip_prefix("gateway") {
            gateway.get_or_insert(url.trim().to_string());
        }
        if line.starts_with("Ctrl-C stops it.") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(UP_MS_MAX),
            "not up"
        );
    }
    let gateway = gateway.expect("the first lines name the gateway");
    // Whatever else it prints is read, so it never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let fleet = state(dir.path());
    assert_eq!(fleet["children"].as_array().unwrap().len(), 13, "{fleet}");
    let deadline = Instant::now() + Duration::from_millis(BACK_MS_MAX);
    assert!(
        order_goes_through(&http, &gateway, deadline).await,
        "the fleet takes no order"
    );

    // The payment replica the saga calls, a read-model replica, and the gateway itself.
    for name in ["payment-1", "order-status-1", "gateway"] {
        let pid = child(&state(dir.path()), name)["pid"].as_u64().unwrap();
        // SAFETY: SIGKILL to a child of the supervisor started by this test.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        let killed = Instant::now();
        let deadline = killed + Duration::from_millis(BACK_MS_MAX);
        let mut back = false;
        while Instant::now() < deadline && !back {
            let fleet = state(dir.path());
            let now = child(&fleet, name);
            back = now["restarts"].as_u64() >= Some(1)
                && now["pid"].as_u64().is_some_and(|new| new != pid)
                && order_goes_through(&http, &gateway, deadline).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            back,
            "{name} not back within {BACK_MS_MAX} ms: {}",
            state(dir.path())
        );
        assert!(
            child(&state(dir.path()), name)["lastExit"]
                .as_str()
                .unwrap()
                .contains("signal 9"),
            "the restart says why"
        );
    }

    let pids: Vec<u64> = state(dir.path())["children"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|child| child["pid"].as_u64())
        .collect();
    // SAFETY: SIGTERM to the supervisor this test started.
    unsafe { libc::kill(supervisor.id() as libc::pid_t, libc::SIGTERM) };
    let stopping = Instant::now();
    while supervisor.try_wait().unwrap().is_none() {
        assert!(
            stopping.elapsed() < Duration::from_millis(STOP_MS_MAX),
            "still stopping"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(supervisor.wait().unwrap().success());
    let left: Vec<_> = pids.into_iter().filter(|pid| alive(*pid)).collect();
    assert!(left.is_empty(), "children left running: {left:?}");
}
