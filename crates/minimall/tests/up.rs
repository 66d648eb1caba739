//! What the README promises of `minimall up`, run as a user runs it: read-your-writes waits
//! answer 503 + Retry-After through the gateway (and never open its breaker for others), the
//! documented rebuild of the read model runs beside the shop, and the process runs without
//! transparent huge pages (with them the allocator's regions doubled its resident memory).

mod common;

use std::time::Duration;

use serde_json::{json, Value};

/// Longest wait for the shop to print that it is up, in milliseconds.
const UP_MS_MAX: u64 = 60_000;
/// A product of the demo catalogue.
const DEMO_PRODUCT: &str = "6d1f2c1e-3b1a-4c55-9a57-0d2a4f1e9b01";
/// More waiting reads at once than the gateway's breaker takes failures.
const WAITING_READS: usize = 8;

/// The kernel's word on this process: `THP_enabled` in /proc/PID/status (Linux 5.0 and later).
fn huge_pages_enabled(pid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("THP_enabled:"))?;
    Some(line.split_whitespace().nth(1)? != "0")
}

#[test]
fn the_shop_runs_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (shop, _) = common::up(dir.path(), &[], UP_MS_MAX);
    assert_eq!(
        huge_pages_enabled(std::process::id()),
        Some(true),
        "this machine's kernel must allow them for the check to mean anything"
    );
    assert_eq!(huge_pages_enabled(shop.0.id()), Some(false));
}

#[tokio::test(flavor = "multi_thread")]
async fn waits_answer_503_through_the_gateway_and_the_rebuild_runs_beside_the_shop() {
    let dir = tempfile::tempdir().unwrap();
    let (mut shop, urls) = common::up(dir.path(), &[], UP_MS_MAX);
    let gateway = urls["gateway"].clone();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let alice = common::login(&http, &gateway, "alice").await;
    let bob = common::login(&http, &gateway, "bob").await;
    let placed: Value = http
        .post(format!("{gateway}/api/orders"))
        .bearer_auth(&alice)
        .json(&json!({"productId": DEMO_PRODUCT, "quantity": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order = placed["orderId"].as_str().unwrap().to_string();

    // Reads by one customer waiting for a position the log has not reached, all at once.
    let wait = format!("{gateway}/api/orders/{order}?atLeast=999999999999");
    let waits: Vec<_> = (0..WAITING_READS)
        .map(|_| tokio::spawn(http.get(&wait).bearer_auth(&alice).send()))
        .collect();
    for answer in waits {
        let answer = answer.await.unwrap().unwrap();
        assert_eq!(answer.status(), 503);
        assert_eq!(answer.headers()["retry-after"], "1");
        assert_eq!(answer.headers()["content-type"], "application/problem+json");
        let problem: Value = answer.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains("999999999999"),
            "{problem}"
        );
    }
    // They were the read model's answer, not its failure: another customer's reads go on.
    let theirs = http
        .get(format!("{gateway}/api/my/orders"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 200);

    // The rebuild signs its calls with the identity secret the shop keeps in its data directory.
    common::rebuild_read_model(
        &urls["order-status"],
        &["--data-dir".as_ref(), dir.path().as_os_str()],
    );
    // SAFETY: SIGTERM to the shop this test started.
    unsafe { libc::kill(shop.0.id() as libc::pid_t, libc::SIGTERM) };
    assert!(shop.0.wait().unwrap().success());
}
