//! `minimall up --supervise`: every part a child process of the real binary, replicas behind the
//! gateway; a part killed with SIGKILL is started again and the shop takes orders again within a
//! bound; SIGTERM stops the whole fleet, leaving no process behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

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

/// Places an order through the gateway as `customer` (password = name) and waits until its
/// payment is open (the saga called payment), or gives up at `deadline`.
async fn order_goes_through(
    http: &reqwest::Client,
    gateway: &str,
    customer: &str,
    deadline: Instant,
) -> bool {
    let login = http
        .post(format!("{gateway}/api/login"))
        .json(&json!({"name": customer, "password": customer}))
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

/// A supervised shop started by a test.
struct Fleet {
    /// Killed if the test fails: its children follow it (they get SIGTERM when it dies).
    supervisor: common::KillOnDrop,
    gateway: String,
    dir: tempfile::TempDir,
}

impl Fleet {
    /// `replicas` of each service, the supervisor's environment with `env` added.
    fn start(replicas: u16, env: &[(&str, &str)]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let mut supervisor = Command::new(env!("CARGO_BIN_EXE_minimall"))
            .args(["up", "--supervise", "--any-port", "--replicas"])
            .arg(replicas.to_string())
            .arg("--data-dir")
            .arg(dir.path())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let gateway = common::urls_of(&mut supervisor, UP_MS_MAX)["gateway"].clone();
        Fleet {
            supervisor: common::KillOnDrop(supervisor),
            gateway,
            dir,
        }
    }

    fn pids(&self) -> Vec<u64> {
        state(self.dir.path())["children"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|child| child["pid"].as_u64())
            .collect()
    }

    /// SIGTERM, then every child must be gone.
    async fn stop(mut self) {
        let pids = self.pids();
        // SAFETY: SIGTERM to the supervisor this test started.
        unsafe { libc::kill(self.supervisor.0.id() as libc::pid_t, libc::SIGTERM) };
        let stopping = Instant::now();
        while self.supervisor.0.try_wait().unwrap().is_none() {
            assert!(
                stopping.elapsed() < Duration::from_millis(STOP_MS_MAX),
                "still stopping"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(self.supervisor.0.wait().unwrap().success());
        let left: Vec<_> = pids.into_iter().filter(|pid| alive(*pid)).collect();
        assert!(left.is_empty(), "children left running: {left:?}");
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_given_in_the_environment_reach_the_parts_as_files_only() {
    let hashed = Command::new(env!("CARGO_BIN_EXE_minimall"))
        .args(["hash-password", "carol"])
        .output()
        .unwrap();
    assert!(hashed.status.success(), "{hashed:?}");
    let hash = String::from_utf8(hashed.stdout).unwrap();
    let accounts = json!([{"name": "carol", "role": "customer", "passwordHash": hash.trim()}]);
    let (token_secret, identity_secret) = ("token-given-by-env", "identity-given-by-env");
    let fleet = Fleet::start(
        1,
        &[
            ("MINIMALL_ACCOUNTS", &accounts.to_string()),
            ("MINIMALL_TOKEN_SECRET", token_secret),
            ("MINIMALL_IDENTITY_SECRET", identity_secret),
        ],
    );
    let deadline = Instant::now() + Duration::from_millis(BACK_MS_MAX);
    assert!(
        order_goes_through(&http(), &fleet.gateway, "carol", deadline).await,
        "the account given in the environment cannot order"
    );
    let demo = http()
        .post(format!("{}/api/login", fleet.gateway))
        .json(&json!({"name": "alice", "password": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        demo.status(),
        401,
        "a demo account beside the accounts given"
    );
    for pid in fleet.pids() {
        let environment = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environment = String::from_utf8_lossy(&environment);
        for secret in [token_secret, identity_secret, "passwordHash"] {
            assert!(
                !environment.contains(secret),
                "{secret} in the environment of {pid}"
            );
        }
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_part_is_started_again_and_the_shop_takes_orders_again() {
    let fleet = Fleet::start(2, &[]);
    let (gateway, dir) = (&fleet.gateway, &fleet.dir);
    let http = http();
    let children = state(dir.path());
    assert_eq!(
        children["children"].as_array().unwrap().len(),
        14,
        "{children}"
    );
    let deadline = Instant::now() + Duration::from_millis(BACK_MS_MAX);
    assert!(
        order_goes_through(&http, gateway, "alice", deadline).await,
        "the fleet takes no order"
    );

    // The payment replica the saga calls, a read-model replica, a saga replica (the other
    // takes its orders over), the gateway and the store.
    for name in ["payment-1", "order-status-1", "saga-1", "gateway", "estore"] {
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
                && order_goes_through(&http, gateway, "alice", deadline).await;
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
        let metrics = std::fs::read_to_string(dir.path().join("supervisor.prom")).unwrap();
        let counted = format!("minimall_supervisor_restarts_total{{part=\"{name}\"}} 1");
        assert!(metrics.lines().any(|line| line == counted), "{metrics}");
    }

    fleet.stop().await;
}

/// Clients of the load a rollout runs under, and each one's pause between requests, in
/// milliseconds (two clients per account stay well under the gateway's rate per account).
const LOAD_CLIENTS: usize = 4;
const LOAD_PAUSE_MS: u64 = 60;
const PRODUCT: &str = "6d1f2c1e-3b1a-4c55-9a57-0d2a4f1e9b01";

/// One client's share of the load until `stop`: reads and order placements (each with its own
/// orderId, its idempotency key). Gives back every request that did not succeed, and the orders
/// acknowledged.
async fn load(
    http: reqwest::Client,
    gateway: String,
    token: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (usize, Vec<String>, Vec<String>) {
    let (mut sent, mut failed, mut placed) = (0, Vec::new(), Vec::new());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let order = uuid::Uuid::new_v4().to_string();
        let request = match sent % 3 {
            0 => http.get(format!("{gateway}/api/products")),
            1 => http.get(format!("{gateway}/api/my/orders")),
            _ => http
                .post(format!("{gateway}/api/orders"))
                .json(&json!({"productId": PRODUCT, "quantity": 1, "orderId": order})),
        };
        let what = sent % 3;
        sent += 1;
        let request = request.bearer_auth(&token);
        // A kept-alive connection a stopping process closed just as this request went out is
        // sent on once more, as HTTP clients do (every request here is safe to repeat: the
        // placement carries its orderId); one that fails again is a failure.
        let resend = request.try_clone();
        let answer = match (request.send().await, resend) {
            (Err(error), Some(resend)) if error.is_request() && !error.is_timeout() => {
                resend.send().await
            }
            (answer, _) => answer,
        };
        match answer {
            Ok(answer) if answer.status().is_success() => {
                if what == 2 {
                    placed.push(order);
                }
            }
            Ok(answer) => failed.push(format!("{what}: {}", answer.status())),
            Err(error) => failed.push(format!("{what}: {error}")),
        }
        tokio::time::sleep(Duration::from_millis(LOAD_PAUSE_MS)).await;
    }
    (sent, failed, placed)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_under_load_replaces_every_process_and_fails_no_request() {
    // One replica of each part: the hardest case, nothing to fall back on.
    let fleet = Fleet::start(1, &[]);
    let http = http();
    let deadline = Instant::now() + Duration::from_millis(BACK_MS_MAX);
    assert!(order_goes_through(&http, &fleet.gateway, "alice", deadline).await);
    let before = fleet.pids();
    let store = child(&state(fleet.dir.path()), "estore")["pid"].as_u64();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..LOAD_CLIENTS {
        let token = common::login(&http, &fleet.gateway, ["alice", "bob"][i % 2]).await;
        clients.push(tokio::spawn(load(
            http.clone(),
            fleet.gateway.clone(),
            token,
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..2 {
        let dir = fleet.dir.path().to_path_buf();
        let rollout = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_minimall"))
                .args(["rollout", "--data-dir"])
                .arg(dir)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let said = String::from_utf8_lossy(&rollout.stdout).to_string()
            + &String::from_utf8_lossy(&rollout.stderr);
        assert!(rollout.status.success(), "{said}");
        assert!(said.contains("done: 7 parts replaced"), "{said}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut sent, mut failed, mut placed) = (0, Vec::new(), Vec::new());
    for client in clients {
        let (n, f, p) = client.await.unwrap();
        sent += n;
        failed.extend(f);
        placed.extend(p);
    }
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}",
        failed.len()
    );
    assert!(sent >= 100, "too little load to tell: {sent} requests");

    let after = fleet.pids();
    let kept: Vec<_> = after
        .iter()
        .filter(|pid| before.contains(pid) && Some(**pid) != store)
        .collect();
    assert!(kept.is_empty(), "processes not replaced: {kept:?}");
    assert_eq!(
        child(&state(fleet.dir.path()), "saga-1")["replaced"],
        2,
        "each rollout replaced the saga once"
    );
    let metrics = std::fs::read_to_string(fleet.dir.path().join("supervisor.prom")).unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line == "minimall_supervisor_replaced_total{part=\"saga-1\"} 2"),
        "{metrics}"
    );

    // Every acknowledged order shows in the read model.
    let tokens = [
        common::login(&http, &fleet.gateway, "alice").await,
        common::login(&http, &fleet.gateway, "bob").await,
    ];
    let deadline = Instant::now() + Duration::from_millis(BACK_MS_MAX);
    let mut missing = placed;
    while !missing.is_empty() && Instant::now() < deadline {
        let mut seen = String::new();
        for token in &tokens {
            let mine = http
                .get(format!("{}/api/my/orders", fleet.gateway))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            seen.push_str(&mine.text().await.unwrap());
        }
        missing.retain(|order| !seen.contains(order.as_str()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        missing.is_empty(),
        "acknowledged orders missing: {missing:?}"
    );
    fleet.stop().await;
}

/// Longest wait for a frozen part to be found not live, killed and started again, in ms: three
/// liveness checks two seconds apart, a restart, and slack for a busy machine.
const WEDGED_MS_MAX: u64 = 20_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_part_fails_its_liveness_and_is_replaced() {
    let fleet = Fleet::start(1, &[]);
    let pid = child(&state(fleet.dir.path()), "payment-1")["pid"]
        .as_u64()
        .unwrap();
    // SAFETY: SIGSTOP to a child of the supervisor this test started: it stays, answering
    // nothing, as a wedged process does.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
    let frozen = Instant::now();
    let replaced = loop {
        let now = child(&state(fleet.dir.path()), "payment-1").clone();
        if now["pid"].as_u64().is_some_and(|new| new != pid) {
            break now;
        }
        assert!(
            frozen.elapsed() < Duration::from_millis(WEDGED_MS_MAX),
            "a frozen payment-1 still runs: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let why = replaced["lastExit"].as_str().unwrap();
    assert!(why.starts_with("not live"), "{why}");
    assert!(!alive(pid), "the frozen process was left behind");
    let deadline = Instant::now() + Duration::from_millis(BACK_MS_MAX);
    assert!(order_goes_through(&http(), &fleet.gateway, "alice", deadline).await);
    fleet.stop().await;
}
