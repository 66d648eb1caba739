//! The shop as separate processes, as it runs when deployed: `minimall estore` and one
//! `minimall serve <name>` per service, wired by URL, each on 127.0.0.1 port 0. One order goes
//! from placement to receipt across them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The secret every process signs identities with.
const IDENTITY_SECRET: &str = "separate-processes-test";

/// Longest wait for the order to get somewhere, in milliseconds.
const WAIT_MS_MAX: u64 = 20_000;

/// A child process killed when dropped, so a failing test leaves nothing running.
struct Process {
    child: Child,
    /// What its first stdout line announced.
    announced: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_minimall"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start minimall {args:?}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Process {
        child,
        announced: line.trim().to_string(),
    }
}

/// `minimall serve <name>` on port 0 with the store at `store_url`; returns the process and its
/// base URL.
fn serve(name: &str, store_url: &str, extra: &[&str]) -> (Process, String) {
    serve_part(name, &[&["--store-url", store_url], extra].concat())
}

/// `minimall serve <name>` on port 0; returns the process and its base URL.
fn serve_part(name: &str, extra: &[&str]) -> (Process, String) {
    let mut args = vec![
        "serve",
        name,
        "--listen",
        "127.0.0.1:0",
        "--identity-secret",
        IDENTITY_SECRET,
    ];
    args.extend_from_slice(extra);
    let process = start(&args);
    let addr = process
        .announced
        .strip_prefix(&format!("{name} listening on "))
        .unwrap_or_else(|| panic!("unexpected first line: {:?}", process.announced))
        .to_string();
    (process, format!("http://{addr}"))
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_goes_through_the_shop_run_as_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let store = start(&["estore", "--listen", "127.0.0.1:0", "--data-dir", data_dir]);
    let store_url = store
        .announced
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap()
        .to_string();
    let (_inventory, inventory) = serve("inventory", &store_url, &[]);
    let (_payment, payment) = serve("payment", &store_url, &[]);
    let (_delivery, delivery) = serve("delivery", &store_url, &[]);
    let (_order, order) = serve("order", &store_url, &["--payment-url", &payment]);
    let (_saga, saga) = serve(
        "saga",
        &store_url,
        &[
            "--order-url",
            &order,
            "--payment-url",
            &payment,
            "--inventory-url",
            &inventory,
            "--delivery-url",
            &delivery,
        ],
    );

    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(WAIT_MS_MAX))
        .build()
        .unwrap();
    let post = |url: String, actor: &'static str, body: Value| {
        let http = http.clone();
        async move {
            let proof = servicekit::IdentityKey::new(IDENTITY_SECRET.as_bytes()).prove(actor);
            let response = http
                .post(url)
                .header("x-actor", actor)
                .header(servicekit::PROOF_HEADER, proof)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let get = |url: String| {
        let http = http.clone();
        async move {
            let proof =
                servicekit::IdentityKey::new(IDENTITY_SECRET.as_bytes()).prove("system:test");
            let response = http
                .get(url)
                .header("x-actor", "system:test")
                .header(servicekit::PROOF_HEADER, proof)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for url in [&inventory, &payment, &delivery, &order, &saga] {
        until("every service is ready", async || {
            get(format!("{url}/health/ready")).await.0 == 200
        })
        .await;
    }

    let product = json!({ "name": "Green tea", "price": 1250, "stock": 5 });
    let (status, product) = post(format!("{inventory}/products"), "seller:shop", product).await;
    assert_eq!(status, 201);
    let placing = json!({ "productId": product["productId"], "quantity": 2 });
    let (status, placed) = post(format!("{order}/orders"), "customer:alice", placing).await;
    assert_eq!(status, 201, "{placed}");
    let order_id = placed["orderId"].as_str().unwrap().to_string();
    until("the payment opens", async || {
        get(format!("{payment}/payments/{order_id}")).await.0 == 200
    })
    .await;
    let deposit = format!("{payment}/payments/{order_id}/deposit");
    assert_eq!(post(deposit, "seller:shop", json!({})).await.0, 201);
    until("the order ships", async || {
        get(format!("{order}/orders/{order_id}")).await.1["status"] == "Shipping"
    })
    .await;
    let receipt = format!("{order}/orders/{order_id}/receipt");
    let (status, closed) = post(receipt, "customer:alice", json!({})).await;
    assert_eq!((status, closed["status"].as_str()), (201, Some("Closed")));
    let (_, product) = get(format!(
        "{inventory}/products/{}",
        product["productId"].as_str().unwrap()
    ))
    .await;
    assert_eq!(product["stock"], 3);

    // The read model and the gateway, run alone too.
    let database = dir.path().join("order-status.sqlite");
    let database = database.to_str().unwrap();
    let (_order_status, order_status) =
        serve("order-status", &store_url, &["--database", database]);
    let (_gateway, gateway) = serve_part(
        "gateway",
        &[
            "--order-url",
            &order,
            "--payment-url",
            &payment,
            "--inventory-url",
            &inventory,
            "--order-status-url",
            &order_status,
            "--token-secret",
            "separate-processes-tokens",
            "--demo-accounts",
        ],
    );
    for url in [&order_status, &gateway] {
        until("the read model and the gateway are ready", async || {
            get(format!("{url}/health/ready")).await.0 == 200
        })
        .await;
    }
    let token = common::login(&http, &gateway, "alice").await;
    let read = |path: String| {
        let (http, token, url) = (http.clone(), token.clone(), format!("{gateway}{path}"));
        async move { http.get(url).bearer_auth(token).send().await.unwrap() }
    };
    // A read waiting for a position not reached: 503 + Retry-After saying what it awaited.
    let waited = read(format!("/api/orders/{order_id}?atLeast=999999999999")).await;
    assert_eq!(waited.status(), 503);
    assert_eq!(waited.headers()["retry-after"], "1");
    let problem: Value = waited.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("999999999999"),
        "{problem}"
    );
    // The receipt marked the delivery delivered.
    until("the read model shows the delivery delivered", async || {
        let view: Value = read(format!("/api/orders/{order_id}"))
            .await
            .json()
            .await
            .unwrap();
        view["delivery"]["deliveredAt"].is_string()
    })
    .await;
    // The documented rebuild runs against the read model, signing with the shared secret.
    common::rebuild_read_model(
        &order_status,
        &["--identity-secret".as_ref(), IDENTITY_SECRET.as_ref()],
    );
}
