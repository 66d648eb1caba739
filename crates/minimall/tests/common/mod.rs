//! What the binary's tests share; each test binary uses some of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::{Duration, Instant};

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
