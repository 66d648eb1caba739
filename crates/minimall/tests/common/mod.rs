//! What the binary's tests share.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::{Duration, Instant};

/// Reads the first lines `minimall up` prints until it says it is up, and gives the gateway's
/// URL; whatever it prints after is read too, so it never writes into a closed pipe.
pub fn gateway_of(shop: &mut Child, up_ms_max: u64) -> String {
    let mut gateway = None;
    let started = Instant::now();
    let mut lines = BufReader::new(shop.stdout.take().expect("stdout piped")).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.trim().strip_prefix("gateway") {
            gateway.get_or_insert(url.trim().to_string());
        }
        if line.starts_with("Ctrl-C stops it.") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(up_ms_max),
            "not up"
        );
    }
    std::thread::spawn(move || lines.for_each(drop));
    gateway.expect("the first lines name the gateway")
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
