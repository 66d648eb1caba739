//! What the binary's tests share; each test binary uses some of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The secret every separately started process signs identities with.
pub const IDENTITY_SECRET: &str = "separate-processes-test";

/// Longest wait for something to happen across processes, in milliseconds.
pub const WAIT_MS_MAX: u64 = 20_000;

/// Reads the first lines `minimall up` prints until it says it is up, and gives every part's URL
/// as listed (`gateway` → `http://…`); whatever it prints after is read too, so it never writes
/// into a closed pipe.
pub fn urls_of(shop: &mut Child, up_ms_max: u64) -> HashMap<String, String> {
    let mut urls = HashMap::new();
    let started = Instant::now();
    let mut lines = BufReader::new(shop.stdout.take().expect("stdout piped")).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("Ctrl-C stops it.") {
            break;
        }
        if let Some((part, url)) = line.trim().split_once(char::is_whitespace) {
            if url.trim().starts_with("http") || url.trim().starts_with("esdb") {
                urls.entry(part.to_string())
                    .or_insert_with(|| url.trim().to_string());
            }
        }
        assert!(
            started.elapsed() < Duration::from_millis(up_ms_max),
            "not up"
        );
    }
    std::thread::spawn(move || lines.for_each(drop));
    urls
}

/// A child process killed when dropped (a failing test leaves nothing running).
/// Starts `minimall up` on any free ports with its data in `dir` (and `env` set), and waits until
/// it printed where each part listens.
pub fn up(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    up_ms_max: u64,
) -> (KillOnDrop, HashMap<String, String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_minimall"));
    command
        .args(["up", "--any-port", "--data-dir"])
        .arg(dir)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut shop = KillOnDrop(command.spawn().unwrap());
    let urls = urls_of(&mut shop.0, up_ms_max);
    (shop, urls)
}

pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A token for a demo account (password = name), through the gateway.
pub async fn login(http: &reqwest::Client, gateway: &str, name: &str) -> String {
    let answer: serde_json::Value = http
        .post(format!("{gateway}/api/login"))
        .json(&serde_json::json!({"name": name, "password": name}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["token"].as_str().unwrap().to_string()
}

/// Runs `minimall projections rebuild order-status --url URL` with `args`; asserts it rebuilt.
pub fn rebuild_read_model(url: &str, args: &[&std::ffi::OsStr]) {
    let rebuilt = std::process::Command::new(env!("CARGO_BIN_EXE_minimall"))
        .args(["projections", "rebuild", "order-status", "--url", url])
        .args(args)
        .output()
        .unwrap();
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert!(String::from_utf8_lossy(&rebuilt.stdout).contains("rebuilt and swapped in"));
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct Process {
    pub child: Child,
    /// What its first stdout line announced.
    pub announced: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(args: &[&str]) -> Process {
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
pub fn serve(name: &str, store_url: &str, extra: &[&str]) -> (Process, String) {
    serve_part(name, &[&["--store-url", store_url], extra].concat())
}

/// `minimall serve <name>` on port 0; returns the process and its base URL.
pub fn serve_part(name: &str, extra: &[&str]) -> (Process, String) {
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

pub async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

/// `minimall estore` on port 0 with its data in `data_dir`; the process and its URL.
pub fn start_store(data_dir: &str) -> (Process, String) {
    let store = start(&["estore", "--listen", "127.0.0.1:0", "--data-dir", data_dir]);
    let url = store
        .announced
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap()
        .to_string();
    (store, url)
}

/// A call as `actor`, signed with `IDENTITY_SECRET`: its status and JSON body.
pub async fn signed(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    actor: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let proof = servicekit::IdentityKey::new(IDENTITY_SECRET.as_bytes()).prove(actor);
    let mut request = http
        .request(method, url)
        .header("x-actor", actor)
        .header(servicekit::PROOF_HEADER, proof);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}
