//! The shop's order path, measured against this machine's own limit in the same run.
//!
//! - **Limit**: a do-nothing JSON POST served by the same HTTP stack as the services
//!   (`servicekit::serve`), driven by the same client at the same concurrency.
//! - **Placement**: concurrent customers placing orders on the order service (each an event
//!   appended with its expected revision, fsync'd) — throughput and latency.
//! - **Saga drain**: the time the saga takes to open a payment for every order placed, with one
//!   instance and with two sharing the orders.
//! - **Through the gateway**: placement by logged-in customers; then the whole path at a steady
//!   offered rate (open loop), a seller confirming each deposit as its payment opens: first
//!   offered more than it carries (its maximum), then 25%, 50% and 75% of that maximum.
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
/// Offered loads, as fractions of the whole path's maximum (placed → Shipping, measured first).
const OFFERED_FRACTIONS: [f64; 3] = [0.25, 0.5, 0.75];
/// Products the offered orders spread over (a shop sells more than one; one hot product is
/// measured on its own by `scripts/bench-hot-product`).
const OFFERED_PRODUCTS: usize = 16;
/// How long each offered load lasts, in milliseconds.
const OFFERED_MS: u64 = 4_000;
/// Pause before a call the gateway refused (429 or 503) is sent again, in milliseconds.
const REFUSED_RETRY_MS: u64 = 100;
/// Seller accounts confirming deposits in the offered-load phase (password: bench), so the
/// gateway's per-client rate does not bound the confirmations.
const GATEWAY_SELLERS: usize = 20;

#[tokio::main]
async fn main() {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let dir = tempfile::tempdir().unwrap();
    let mut settings = ShopSettings::new(dir.path(), Ports::ANY);
    settings.parts.gateway.accounts = bench_accounts();
    if let Ok(rate) = std::env::var("BENCH_OFFERED_RATE") {
        let rates = rate
            .split(',')
            .map(|r| r.parse().expect("BENCH_OFFERED_RATE: orders per second"));
        return offered_alone(&http, settings, rates.collect()).await;
    }
    if let Ok(instances) = std::env::var("BENCH_SAGAS") {
        let instances = instances.parse().expect("BENCH_SAGAS: saga instances");
        return sagas_alone(&http, settings, instances).await;
    }
    let limit = hello_limit(&http).await;
    let mut shop = Shop::start(settings).await.unwrap();
    let _ = IDENTITY.set(shop.identity().clone());
    let order_url = shop.url(Service::Order);
    let product = support::register(&http, &shop.url(Service::Inventory), "Bench tea").await;

    let place_direct = || place_directly(&http, &order_url, &product);
    let placing = Instant::now();
    let placed = place_direct().await;
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
    // The read model catches up on the orders placed while it was stopped: before the next
    // phase, not during it.
    wait_read_model_settled(&http, &shop.url(Service::OrderStatus)).await;

    // The saga as two instances sharing the orders (the second in this process too).
    let second = shop.start_another(Service::Saga).await.unwrap();
    let sagas = [saga_url.clone(), second.url()];
    wait_split(&http, &sagas).await;
    let placing = Instant::now();
    let placed_for_two = place_direct().await;
    for saga in &sagas {
        wait_saga_settled(&http, saga).await;
    }
    let drained_by_two_s = placing.elapsed().as_secs_f64();
    second.stop().await;
    wait_split(&http, &sagas[..1]).await;
    wait_saga_settled(&http, &saga_url).await;

    let mut sellers = Vec::with_capacity(GATEWAY_SELLERS);
    for i in 0..GATEWAY_SELLERS {
        sellers.push(login(&http, &gateway, &format!("benchseller{i}")).await);
    }
    let inventory = shop.url(Service::Inventory);
    let mut products = Vec::with_capacity(OFFERED_PRODUCTS);
    for i in 0..OFFERED_PRODUCTS {
        products.push(support::register(&http, &inventory, &format!("Bench tea {i}")).await);
    }
    let gateway_calls = Gateway {
        url: &gateway,
        customers: &tokens,
        sellers: &sellers,
    };
    // The whole path's maximum: offered as many orders as the gateway places, how many it
    // carries to Shipping per second.
    let saturated = at_offered_rate(
        &http,
        &shop,
        &gateway_calls,
        &products,
        through_gateway.rate,
    )
    .await;
    wait_saga_settled(&http, &saga_url).await;
    let mut offered = Vec::new();
    for fraction in OFFERED_FRACTIONS {
        let rate = fraction * saturated.carried_per_s;
        offered.push((
            fraction,
            rate,
            at_offered_rate(&http, &shop, &gateway_calls, &products, rate).await,
        ));
        wait_saga_settled(&http, &saga_url).await;
    }

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
        "| saga as two instances sharing the orders (both in this process): payments opened for {} more orders, from the first placement | {:.1} s ({:.0} orders/s; one instance: {:.0}) | |",
        placed_for_two.latencies.len(),
        drained_by_two_s,
        placed_for_two.latencies.len() as f64 / drained_by_two_s,
        placed.latencies.len() as f64 / drained_s
    );
    println!(
        "| the whole path's maximum: offered {:.0} orders/s through the gateway for {} s ({OFFERED_PRODUCTS} products), a seller confirming each deposit once its payment opens: carried placed → Shipping | {:.0} orders/s ({} orders, {} calls refused) | |",
        through_gateway.rate,
        OFFERED_MS / 1000,
        saturated.carried_per_s,
        saturated.to_shipping.len(),
        saturated.refused
    );
    for (fraction, rate, latencies) in &offered {
        let load = format!(
            "offered {:.0}% of the whole path's maximum ({rate:.0} orders/s)",
            fraction * 100.0
        );
        print_offered(&load, latencies);
    }
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

/// `BENCH_OFFERED_RATE=N[,N…]`: only the whole path at N orders/s offered (one load after the
/// other), with where its slowest confirmations went, for profiling one load without the other
/// phases; `BENCH_BACKLOG=K` first places K rounds of the placement phase's orders that then
/// await their deposits (the full run leaves ~40,000 such orders before its offered loads).
async fn offered_alone(http: &reqwest::Client, settings: ShopSettings, rates: Vec<f64>) {
    let shop = Shop::start(settings).await.unwrap();
    let _ = IDENTITY.set(shop.identity().clone());
    let gateway = shop.url(Service::Gateway);
    let customers = login_all(http, &gateway).await;
    let mut sellers = Vec::with_capacity(GATEWAY_SELLERS);
    for i in 0..GATEWAY_SELLERS {
        sellers.push(login(http, &gateway, &format!("benchseller{i}")).await);
    }
    let mut products = Vec::with_capacity(OFFERED_PRODUCTS);
    for i in 0..OFFERED_PRODUCTS {
        let inventory = shop.url(Service::Inventory);
        products.push(support::register(http, &inventory, &format!("Bench tea {i}")).await);
    }
    let calls = Gateway {
        url: &gateway,
        customers: &customers,
        sellers: &sellers,
    };
    place_backlog(http, &shop, &products[0]).await;
    for rate in rates {
        let offered = at_offered_rate(http, &shop, &calls, &products, rate).await;
        print_offered(&format!("offered {rate:.0} orders/s"), &offered);
        wait_saga_settled(http, &shop.url(Service::Saga)).await;
    }
    shop.stop().await;
}

/// The placement phase: `CLIENTS` customers placing orders of `product` on the order service
/// directly (one of 1,000 customer names each).
async fn place_directly(http: &reqwest::Client, order_url: &str, product: &str) -> Measured {
    let (order_url, product) = (order_url.to_string(), product.to_string());
    run_bounded(http, move |http, i| {
        let (url, product) = (order_url.clone(), product.clone());
        async move {
            place(&http, &url, &product, &format!("bench{}", i % 1000)).await;
        }
    })
    .await
}

/// `BENCH_BACKLOG=K`: K placement phases of `product`, each waited for by the saga, whose
/// orders then await their deposits.
async fn place_backlog(http: &reqwest::Client, shop: &Shop, product: &str) {
    let rounds = std::env::var("BENCH_BACKLOG").map_or(0, |k| {
        k.parse().expect("BENCH_BACKLOG: rounds of placement")
    });
    for _ in 0..rounds {
        place_directly(http, &shop.url(Service::Order), product).await;
        wait_saga_settled(http, &shop.url(Service::Saga)).await;
    }
}

/// `BENCH_SAGAS=N`: only the saga's drain, with N instances in this process.
async fn sagas_alone(http: &reqwest::Client, settings: ShopSettings, instances: usize) {
    let shop = Shop::start(settings).await.unwrap();
    let _ = IDENTITY.set(shop.identity().clone());
    let product = support::register(http, &shop.url(Service::Inventory), "Bench tea").await;
    place_backlog(http, &shop, &product).await;
    let mut others = Vec::new();
    for _ in 1..instances {
        others.push(shop.start_another(Service::Saga).await.unwrap());
    }
    let sagas: Vec<String> = std::iter::once(shop.url(Service::Saga))
        .chain(others.iter().map(|other| other.url()))
        .collect();
    wait_split(http, &sagas).await;
    let placing = Instant::now();
    let placed = place_directly(http, &shop.url(Service::Order), &product).await;
    for saga in &sagas {
        wait_saga_settled(http, saga).await;
    }
    let drained_s = placing.elapsed().as_secs_f64();
    println!(
        "| saga as {instances} instances: payments opened for {} orders, from the first placement | {drained_s:.1} s ({:.0} orders/s) | |",
        placed.latencies.len(),
        placed.latencies.len() as f64 / drained_s
    );
    for other in others {
        other.stop().await;
    }
    shop.stop().await;
}

fn print_offered(load: &str, latencies: &Offered) {
    println!(
        "| {load} for {} s through the gateway ({} placed, {} calls refused): placed → AwaitingDeposit / deposit confirmed → Shipping | p50 {:.1} / {:.1} ms, p99 {:.1} / {:.1} ms | |",
        OFFERED_MS / 1000,
        latencies.to_awaiting.len(),
        latencies.refused,
        percentile(&latencies.to_awaiting, 0.5),
        percentile(&latencies.to_shipping, 0.5),
        percentile(&latencies.to_awaiting, 0.99),
        percentile(&latencies.to_shipping, 0.99)
    );
    let hops: Vec<String> = latencies
        .slowest_hops
        .iter()
        .take(HOPS_SHOWN)
        .map(|(hop, slow, all)| format!("{hop} {slow:.1} ({all:.1})"))
        .collect();
    println!(
        "| … where its confirmations at or above the p99 went: mean ms per hop (over all in brackets), largest first | {} | |",
        hops.join("; ")
    );
}

/// Hops shown per offered load.
const HOPS_SHOWN: usize = 5;

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
    let account = |name: String, role| gateway::Account {
        name,
        role,
        password_hash: hash.clone(),
    };
    (0..GATEWAY_CUSTOMERS)
        .map(|i| account(format!("bench{i}"), gateway::Role::Customer))
        .chain(
            (0..GATEWAY_SELLERS).map(|i| account(format!("benchseller{i}"), gateway::Role::Seller)),
        )
        .collect()
}

/// Logs every bench customer in once; their tokens.
async fn login_all(http: &reqwest::Client, gateway: &str) -> Vec<String> {
    let mut tokens = Vec::with_capacity(GATEWAY_CUSTOMERS);
    for i in 0..GATEWAY_CUSTOMERS {
        tokens.push(login(http, gateway, &format!("bench{i}")).await);
    }
    tokens
}

async fn login(http: &reqwest::Client, gateway: &str, name: &str) -> String {
    let answer: Value = http
        .post(format!("{gateway}/api/login"))
        .json(&json!({ "name": name, "password": "bench" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["token"].as_str().unwrap().to_string()
}

/// The gateway and who calls it.
struct Gateway<'a> {
    url: &'a str,
    customers: &'a [String],
    sellers: &'a [String],
}

/// One offered load's outcome: latencies in ms, and the calls the gateway refused.
#[derive(Default)]
struct Offered {
    to_awaiting: Vec<f64>,
    to_shipping: Vec<f64>,
    refused: usize,
    /// Orders shipped per second, from the first placement to the last shipment.
    carried_per_s: f64,
    /// Where the slowest confirmations went: the hops between one order's events, each with
    /// its mean gap over the orders at or above the p99 and over all, in ms (largest first).
    slowest_hops: Vec<(String, f64, f64)>,
}

/// When each step of one order happened.
#[derive(Default, Clone, Copy)]
struct Steps {
    placed: Option<chrono::DateTime<chrono::Utc>>,
    opened: Option<chrono::DateTime<chrono::Utc>>,
    confirmed: Option<chrono::DateTime<chrono::Utc>>,
    shipped: Option<chrono::DateTime<chrono::Utc>>,
}

type Orders = Arc<std::sync::Mutex<std::collections::HashMap<String, Steps>>>;

/// Places orders through the gateway at `rate` per second for `OFFERED_MS` whatever the answers
/// take (open loop); a subscription to the store sees each payment open and has a seller
/// confirm its deposit at once. Latencies end when `PayPlaced` and `OrderShipped` were written
/// (their metadata's `at`), so measuring polls nothing.
async fn at_offered_rate(
    http: &reqwest::Client,
    shop: &Shop,
    gateway: &Gateway<'_>,
    products: &[String],
    rate: f64,
) -> Offered {
    let orders: Orders = Arc::default();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store = eventstore::Client::new(shop.store_url().parse().unwrap()).unwrap();
    let watcher = watch_steps(&store, http, gateway, &orders, &refused).await;
    let count = (rate * OFFERED_MS as f64 / 1000.0) as usize;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut placements = Vec::with_capacity(count);
    for i in 0..count {
        ticks.tick().await;
        let (http, url) = (http.clone(), gateway.url.to_string());
        let product = products[i % products.len()].clone();
        let token = gateway.customers[i % gateway.customers.len()].clone();
        let (orders, refused) = (orders.clone(), refused.clone());
        placements.push(tokio::spawn(async move {
            let placed = chrono::Utc::now();
            match try_place_through_gateway(&http, &url, &token, &product).await {
                Ok(order) => orders.lock().unwrap().entry(order).or_default().placed = Some(placed),
                Err(_) => _ = refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            }
        }));
    }
    for placement in placements {
        placement.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_millis(SAGA_WAIT_MS_MAX);
    while !all_shipped(&orders) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watcher.abort();
    let mut offered = Offered {
        refused: refused.load(std::sync::atomic::Ordering::Relaxed),
        ..Offered::default()
    };
    let ms = |d: chrono::TimeDelta| d.num_microseconds().unwrap_or(0) as f64 / 1000.0;
    let all = orders.lock().unwrap().clone();
    let first_placed = all.values().filter_map(|s| s.placed).min();
    let last_shipped = all.values().filter_map(|s| s.shipped).max();
    if let (Some(first), Some(last)) = (first_placed, last_shipped) {
        let shipped = all
            .values()
            .filter(|s| s.placed.is_some() && s.shipped.is_some());
        offered.carried_per_s = shipped.count() as f64 / (ms(last - first) / 1000.0);
    }
    for steps in all.values() {
        if let (Some(placed), Some(opened)) = (steps.placed, steps.opened) {
            offered.to_awaiting.push(ms(opened - placed));
        }
        if let (Some(confirmed), Some(shipped)) = (steps.confirmed, steps.shipped) {
            offered.to_shipping.push(ms(shipped - confirmed));
        }
    }
    offered.slowest_hops = slowest_hops(&store, &all, percentile(&offered.to_shipping, 0.99)).await;
    offered
}

/// Largest events read back to break the confirmations down.
const HOPS_EVENTS_MAX: u64 = 200_000;

/// From deposit confirmed to shipped, each order's events (every stream named
/// `{category}-{orderId}`, read back from the log's end) in the order they were written: the
/// mean gap before each, over the orders whose confirmation took at least `slow_ms` and over
/// all, largest first. The first hop starts when the confirmation was sent.
async fn slowest_hops(
    store: &eventstore::Client,
    orders: &std::collections::HashMap<String, Steps>,
    slow_ms: f64,
) -> Vec<(String, f64, f64)> {
    let Some(first) = orders.values().filter_map(|s| s.confirmed).min() else {
        return Vec::new();
    };
    let options = eventstore::ReadAllOptions::default()
        .position(eventstore::StreamPosition::End)
        .backwards()
        .max_count(HOPS_EVENTS_MAX as usize);
    let mut written: std::collections::HashMap<&str, Vec<(chrono::DateTime<chrono::Utc>, String)>> =
        std::collections::HashMap::new();
    let mut read = store.read_all(&options).await.unwrap();
    while let Ok(Some(event)) = read.next().await {
        let event = event.get_original_event();
        let at = written_at(event);
        if at < first {
            break;
        }
        let Some((category, order)) = event.stream_id.split_once('-') else {
            continue;
        };
        if let Some((order, _)) = orders.get_key_value(order) {
            written
                .entry(order.as_str())
                .or_default()
                .push((at, format!("{category}:{}", event.event_type)));
        }
    }
    let ms = |d: chrono::TimeDelta| d.num_microseconds().unwrap_or(0) as f64 / 1000.0;
    let mut gaps: std::collections::HashMap<String, (f64, usize, f64, usize)> = Default::default();
    for (order, mut events) in written {
        let steps = orders[order];
        let (Some(confirmed), Some(shipped)) = (steps.confirmed, steps.shipped) else {
            continue;
        };
        let slow = ms(shipped - confirmed) >= slow_ms;
        events.sort();
        let mut before = (confirmed, "confirmation sent".to_string());
        for (at, step) in events
            .into_iter()
            .filter(|(at, _)| *at >= confirmed && *at <= shipped)
        {
            let gap = gaps.entry(format!("{} → {step}", before.1)).or_default();
            let took = ms(at - before.0);
            (gap.0, gap.1) = (gap.0 + took, gap.1 + 1);
            if slow {
                (gap.2, gap.3) = (gap.2 + took, gap.3 + 1);
            }
            before = (at, step);
        }
    }
    let mut hops: Vec<_> = gaps
        .into_iter()
        .filter(|(_, gap)| gap.3 > 0)
        .map(|(hop, gap)| (hop, gap.2 / gap.3 as f64, gap.0 / gap.1 as f64))
        .collect();
    hops.sort_by(|a, b| b.1.total_cmp(&a.1));
    hops
}

fn all_shipped(orders: &Orders) -> bool {
    let orders = orders.lock().unwrap();
    orders
        .values()
        .filter(|steps| steps.placed.is_some())
        .all(|steps| steps.shipped.is_some())
}

/// Follows the store from now on for payments opened (a seller confirms each deposit at once)
/// and orders shipped, noting their commit times; returns once the subscription is live.
async fn watch_steps(
    store: &eventstore::Client,
    http: &reqwest::Client,
    gateway: &Gateway<'_>,
    orders: &Orders,
    refused: &Arc<std::sync::atomic::AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    let filter =
        eventstore::SubscriptionFilter::on_event_type().regex("^(PayPlaced|OrderShipped)$");
    let options = eventstore::SubscribeToAllOptions::default()
        .position(eventstore::StreamPosition::End)
        .filter(filter);
    let mut subscription = store.subscribe_to_all(&options).await;
    while !matches!(
        subscription.next_subscription_event().await.unwrap(),
        eventstore::SubscriptionEvent::Confirmed(_)
    ) {}
    let (http, url, sellers) = (
        http.clone(),
        gateway.url.to_string(),
        gateway.sellers.to_vec(),
    );
    let (orders, refused) = (orders.clone(), refused.clone());
    tokio::spawn(async move {
        let mut confirmations = 0;
        while let Ok(event) = subscription.next().await {
            let event = event.get_original_event();
            let Some((_, order)) = event.stream_id.split_once('-') else {
                continue;
            };
            let order = order.to_string();
            let mut all = orders.lock().unwrap();
            let steps = all.entry(order.clone()).or_default();
            if event.event_type == "OrderShipped" {
                steps.shipped = Some(written_at(event));
                continue;
            }
            steps.opened = Some(written_at(event));
            let seller = sellers[confirmations % sellers.len()].clone();
            confirmations += 1;
            let (http, url, orders, refused) =
                (http.clone(), url.clone(), orders.clone(), refused.clone());
            tokio::spawn(async move {
                let confirmed = confirm_deposit(&http, &url, &seller, &order, &refused).await;
                orders.lock().unwrap().entry(order).or_default().confirmed = Some(confirmed);
            });
        }
    })
}

/// When the service that wrote the event appended it (its metadata's `at`: the official client
/// gives the store's own time in whole seconds only).
fn written_at(event: &eventstore::RecordedEvent) -> chrono::DateTime<chrono::Utc> {
    let metadata: Value = serde_json::from_slice(&event.custom_metadata).unwrap_or(Value::Null);
    metadata["at"]
        .as_str()
        .and_then(|at| at.parse().ok())
        .unwrap_or(event.created)
}

/// Confirms the order's deposit as a seller, again after a pause while the gateway refuses (each
/// refusal counted); when the confirmation that worked was sent.
async fn confirm_deposit(
    http: &reqwest::Client,
    gateway: &str,
    seller: &str,
    order: &str,
    refused: &std::sync::atomic::AtomicUsize,
) -> chrono::DateTime<chrono::Utc> {
    let deadline = Instant::now() + Duration::from_millis(SAGA_WAIT_MS_MAX);
    while Instant::now() < deadline {
        let sent = chrono::Utc::now();
        let response = http
            .post(format!("{gateway}/api/payments/{order}/deposit"))
            .bearer_auth(seller)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 | 201 => return sent,
            429 | 503 => _ = refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            status => panic!("confirming {order}: {status} {:?}", response.text().await),
        }
        tokio::time::sleep(Duration::from_millis(REFUSED_RETRY_MS)).await;
    }
    panic!("order {order}'s deposit was not confirmed within {SAGA_WAIT_MS_MAX} ms");
}

async fn place_through_gateway(http: &reqwest::Client, gateway: &str, token: &str, product: &str) {
    if let Err(refusal) = try_place_through_gateway(http, gateway, token, product).await {
        panic!("placing through the gateway: {refusal}");
    }
}

/// The order placed, or the gateway's answer when it is not 201.
async fn try_place_through_gateway(
    http: &reqwest::Client,
    gateway: &str,
    token: &str,
    product: &str,
) -> Result<String, String> {
    let response = http
        .post(format!("{gateway}/api/orders"))
        .bearer_auth(token)
        .json(&json!({ "productId": product, "quantity": 1 }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match body["orderId"].as_str() {
        Some(order) if status == 201 => Ok(order.to_string()),
        _ => Err(format!("{status} {body}")),
    }
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

/// A saga instance's `GET /saga/status`.
async fn saga_status(http: &reqwest::Client, saga_url: &str) -> Value {
    http.get(format!("{saga_url}/saga/status"))
        .signed("system:bench")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_saga_settled(http: &reqwest::Client, saga_url: &str) {
    let deadline = Instant::now() + Duration::from_millis(SAGA_WAIT_MS_MAX);
    while Instant::now() < deadline {
        let status = saga_status(http, saga_url).await;
        if status["caughtUp"] == true && status["unfinishedEvents"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the saga did not settle within {SAGA_WAIT_MS_MAX} ms");
}

/// How long the read model's last applied event must stay the same to count as settled, in
/// milliseconds.
const READ_MODEL_QUIET_MS: u64 = 500;

/// Waits until the read model applies nothing new for `READ_MODEL_QUIET_MS`.
async fn wait_read_model_settled(http: &reqwest::Client, read_model_url: &str) {
    let url = format!("{read_model_url}/status");
    let deadline = Instant::now() + Duration::from_millis(SAGA_WAIT_MS_MAX);
    let mut applied = Value::Null;
    while Instant::now() < deadline {
        let response = http.get(&url).signed("system:bench").send().await.unwrap();
        let status: Value = response.json().await.unwrap_or(Value::Null);
        if status["caughtUp"] == true && status["applied"] == applied {
            return;
        }
        applied = status["applied"].clone();
        tokio::time::sleep(Duration::from_millis(READ_MODEL_QUIET_MS)).await;
    }
    panic!("the read model did not settle within {SAGA_WAIT_MS_MAX} ms");
}

/// Waits until the saga instances at `sagas` split the partitions evenly among them.
async fn wait_split(http: &reqwest::Client, sagas: &[String]) {
    let deadline = Instant::now() + Duration::from_millis(SAGA_WAIT_MS_MAX);
    while Instant::now() < deadline {
        let mut held = Vec::new();
        for saga in sagas {
            let status = saga_status(http, saga).await;
            held.push(status["partitions"].as_array().map_or(0, Vec::len));
        }
        if held.iter().all(|n| *n == saga::PARTITIONS / sagas.len()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the saga instances did not split the partitions within {SAGA_WAIT_MS_MAX} ms");
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
