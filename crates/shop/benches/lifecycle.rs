//! The shop's order path, measured against this machine's own limit in the same run.
//!
//! - **Limit**: a do-nothing JSON POST served by the same HTTP stack as the services
//!   (`servicekit::serve`), driven by the same client at the same concurrency.
//! - **Placement**: concurrent customers placing orders on the order service (each an event
//!   appended with its expected revision, fsync'd) — throughput and latency.
//! - **Saga drain**: the time the saga takes to open a payment for every order placed.
//! - **End to end**: one order at a time, placement → payment open, and deposit confirmation →
//!   Shipping (stock taken, delivery started, order marked shipped), polled every millisecond.
//!
//! Bounded: each phase stops by count or time; all traffic stays on 127.0.0.1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shop::{Ports, Service, Shop, ShopSettings};
use support::{percentile, Signed, IDENTITY};

mod support;

/// Concurrent clients in the throughput phases.
const CLIENTS: usize = 32;
/// Longest a throughput phase runs.
const PHASE_MS_MAX: u64 = 5_000;
/// Most orders placed in the placement phase.
const ORDERS_MAX: usize = 20_000;
/// Orders taken one at a time through the whole saga.
const E2E_ORDERS: usize = 100;
/// Longest wait for the saga, in milliseconds.
const SAGA_WAIT_MS_MAX: u64 = 120_000;
/// Customer accounts placing orders through the gateway, each logging in once (the gateway
/// lets one client make 50 requests/s: the calls spread over them).
const GATEWAY_CUSTOMERS: usize = 200;

#[tokio::main]
async fn main() {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let limit = hello_limit(&http).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = ShopSettings::new(dir.path(), Ports::ANY);
    settings.parts.gateway.accounts = bench_accounts();
    let mut shop = Shop::start(settings).await.unwrap();
    let _ = IDENTITY.set(shop.identity().clone());
    let order_url = shop.url(Service::Order);
    let product = support::register(&http, &shop.url(Service::Inventory), "Bench tea").await;

    let placing = Instant::now();
    let placed = run_bounded(&http, {
        let (order_url, product) = (order_url.clone(), product.clone());
        move |http, i| {
            let (url, product) = (order_url.clone(), product.clone());
            async move {
                place(&http, &url, &product, &format!("bench{}", i % 1000)).await;
            }
        }
    })
    .await;
    let placement_s = placing.elapsed().as_secs_f64();
    let saga_url = shop.url(Service::Saga);
    wait_saga_settled(&http, &saga_url).await;
    let drained_s = placing.elapsed().as_secs_f64();

    let gateway = shop.url(Service::Gateway);
    let tokens = Arc::new(login_all(&http, &gateway).await);
    let place_all = || {
        run_bounded(&http, {
            let (gateway, product, tokens) = (gateway.clone(), product.clone(), tokens.clone());
            move |http, i| {
                let (gateway, product) = (gateway.clone(), product.clone());
                let token = tokens[i % tokens.len()].clone();
                async move { place_through_gateway(&http, &gateway, &token, &product).await }
            }
        })
    };
    let through_gateway = place_all().await;
    wait_saga_settled(&http, &saga_url).await;
    // The placement path alone: what the saga and the read model take of the two cores.
    for follower in [Service::Saga, Service::OrderStatus] {
        shop.stop_service(follower).await;
    }
    let path_alone = place_all().await;
    for follower in [Service::Saga, Service::OrderStatus] {
        shop.start_service(follower).await.unwrap();
    }
    wait_saga_settled(&http, &saga_url).await;

    let (to_payment, to_shipping) = end_to_end(&http, &shop, &product).await;
    let rss_mib = resident_mib();
    shop.stop().await;

    let rate = placed.latencies.len() as f64 / placement_s;
    println!("| measure | figure | vs limit |");
    println!("|---|---|---|");
    println!(
        "| machine: do-nothing JSON POST through servicekit, {CLIENTS} clients, in-process ({cores} cores) | {:.0} req/s, p50 {:.2} ms | limit |",
        limit.rate,
        percentile(&limit.latencies, 0.5)
    );
    println!(
        "| order placement, {CLIENTS} concurrent customers ({} orders) | {rate:.0} orders/s, p50 {:.2} ms, p99 {:.2} ms | {:.1}% |",
        placed.latencies.len(),
        percentile(&placed.latencies, 0.5),
        percentile(&placed.latencies, 0.99),
        100.0 * rate / limit.rate
    );
    println!(
        "| saga: payments opened for all of them, from the first placement | {:.1} s ({:.0} orders/s) | |",
        drained_s,
        placed.latencies.len() as f64 / drained_s
    );
    println!(
        "| order placement through the gateway, {CLIENTS} concurrent customers of {GATEWAY_CUSTOMERS} (logged in once, each call's token checked; {} orders) | {:.0} orders/s, p50 {:.2} ms, p99 {:.2} ms | {:.1}% |",
        through_gateway.latencies.len(),
        through_gateway.rate,
        percentile(&through_gateway.latencies, 0.5),
        percentile(&through_gateway.latencies, 0.99),
        100.0 * through_gateway.rate / limit.rate
    );
    println!(
        "| … the same with the saga and the read model stopped (the placement path alone; {} orders) | {:.0} orders/s, p50 {:.2} ms, p99 {:.2} ms | {:.1}% |",
        path_alone.latencies.len(),
        path_alone.rate,
        percentile(&path_alone.latencies, 0.5),
        percentile(&path_alone.latencies, 0.99),
        100.0 * path_alone.rate / limit.rate
    );
    println!(
        "| end to end, one order at a time: placed → payment open | p50 {:.1} ms, p99 {:.1} ms | |",
        percentile(&to_payment, 0.5),
        percentile(&to_payment, 0.99)
    );
    println!(
        "| end to end: deposit confirmed → Shipping (stock, delivery, order shipped) | p50 {:.1} ms, p99 {:.1} ms | |",
        percentile(&to_shipping, 0.5),
        percentile(&to_shipping, 0.99)
    );
    println!(
        "| memory: the whole shop in this one process (and the benchmark's client), RSS after the run | {rss_mib:.0} MiB | |"
    );
}

/// This process's resident memory, in MiB (Linux).
fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        });
    kib.map_or(f64::NAN, |kib| kib / 1024.0)
}

/// `GATEWAY_CUSTOMERS` customer accounts, password = name.
fn bench_accounts() -> Vec<gateway::Account> {
    let hash = gateway::hash_password("bench").unwrap();
    (0..GATEWAY_CUSTOMERS)
        .map(|i| gateway::Account {
            name: format!("bench{i}"),
            role: gateway::Role::Customer,
            password_hash: hash.clone(),
        })
        .collect()
}

/// Logs every bench customer in once; their tokens.
async fn login_all(http: &reqwest::Client, gateway: &str) -> Vec<String> {
    let mut tokens = Vec::with_capacity(GATEWAY_CUSTOMERS);
    for i in 0..GATEWAY_CUSTOMERS {
        let answer: Value = http
            .post(format!("{gateway}/api/login"))
            .json(&json!({ "name": format!("bench{i}"), "password": "bench" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(answer["token"].as_str().unwrap().to_string());
    }
    tokens
}

async fn place_through_gateway(http: &reqwest::Client, gateway: &str, token: &str, product: &str) {
    let response = http
        .post(format!("{gateway}/api/orders"))
        .bearer_auth(token)
        .json(&json!({ "productId": product, "quantity": 1 }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(status, 201, "{:?}", response.text().await);
}

struct Measured {
    latencies: Vec<f64>,
    rate: f64,
}

/// `CLIENTS` tasks calling `call(i)` until `ORDERS_MAX` calls or `PHASE_MS_MAX`; latencies in ms.
async fn run_bounded<F, Fut>(http: &reqwest::Client, call: F) -> Measured
where
    F: Fn(reqwest::Client, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_millis(PHASE_MS_MAX);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (call, next, http) = (Arc::clone(&call), Arc::clone(&next), http.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= ORDERS_MAX || Instant::now() >= deadline {
                        return latencies;
                    }
                    let start = Instant::now();
                    call(http.clone(), i).await;
                    latencies.push(start.elapsed().as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    Measured { latencies, rate }
}

async fn hello_limit(http: &reqwest::Client) -> Measured {
    let hello = support::do_nothing_service().await;
    let url = format!("{}/hello", hello.url());
    let measured = run_bounded(http, move |http, _| {
        let url = url.clone();
        async move {
            let status = http
                .post(&url)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success());
        }
    })
    .await;
    hello.stop().await;
    measured
}

async fn place(http: &reqwest::Client, order_url: &str, product: &str, customer: &str) -> String {
    let response = http
        .post(format!("{order_url}/orders"))
        .signed(&format!("customer:{customer}"))
        .json(&json!({ "productId": product, "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let answer: Value = response.json().await.unwrap();
    answer["orderId"].as_str().unwrap().to_string()
}

async fn wait_saga_settled(http: &reqwest::Client, saga_url: &str) {
    let deadline = Instant::now() + Duration::from_millis(SAGA_WAIT_MS_MAX);
    while Instant::now() < deadline {
        let status: Value = http
            .get(format!("{saga_url}/saga/status"))
            .signed("system:bench")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["caughtUp"] == true && status["unfinishedEvents"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the saga did not settle within {SAGA_WAIT_MS_MAX} ms");
}

/// Polls `url` every millisecond until `done(body)`; the time it took, in ms.
async fn until(http: &reqwest::Client, url: &str, done: impl Fn(u16, &Value) -> bool) -> f64 {
    let start = Instant::now();
    let deadline = start + Duration::from_millis(SAGA_WAIT_MS_MAX);
    while Instant::now() < deadline {
        let response = http.get(url).signed("system:bench").send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if done(status, &body) {
            return start.elapsed().as_secs_f64() * 1000.0;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{url} did not get there within {SAGA_WAIT_MS_MAX} ms");
}

async fn end_to_end(http: &reqwest::Client, shop: &Shop, product: &str) -> (Vec<f64>, Vec<f64>) {
    let (order_url, payment_url) = (shop.url(Service::Order), shop.url(Service::Payment));
    let mut to_payment = Vec::new();
    let mut to_shipping = Vec::new();
    for _ in 0..E2E_ORDERS {
        let start = Instant::now();
        let order = place(http, &order_url, product, "e2e").await;
        let placed_ms = start.elapsed().as_secs_f64() * 1000.0;
        let payment = format!("{payment_url}/payments/{order}");
        let waited = until(http, &payment, |status, _| status == 200).await;
        to_payment.push(placed_ms + waited);
        let start = Instant::now();
        let confirmed = http
            .post(format!("{payment}/deposit"))
            .signed("seller:bench")
            .send()
            .await
            .unwrap();
        assert_eq!(confirmed.status().as_u16(), 201);
        until(http, &format!("{order_url}/orders/{order}"), |_, body| {
            body["status"] == "Shipping"
        })
        .await;
        to_shipping.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    (to_payment, to_shipping)
}
