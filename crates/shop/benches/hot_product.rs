//! A best seller: the inventory's stock call for a product with 1,000 orders behind it and with
//! 200,000, in one run, next to a do-nothing call of the same HTTP stack.
//!
//! The product's history is written as the inventory writes it (each order's `StockMovePlanned`
//! on its reservation, then its `QtyDecreased` on the product, a `StockCounted` after every 100),
//! in batches so that 200,000 orders take seconds. Then the real stock call (`POST
//! /products/{id}/decrease` for a new order) is timed one call at a time, alternating between the
//! two products so the machine's noise falls on both alike, each followed by the same call's
//! store steps timed one by one (where the time goes). Then the same call from
//! `CONCURRENT_CALLERS` callers at once, as the saga's partitions call it: all on one product,
//! and spread over as many products, with the process's CPU per call (its CPU is the store's
//! and the inventory's: nothing else runs). Only the store and the inventory run.
//!
//! Bounded: a fixed number of orders and calls; all traffic stays on 127.0.0.1.

use std::time::Instant;

use chrono::Utc;
use domain::product::{Product, ProductCommand};
use domain::reservation::{plan_for, Held, Reservation, ReservationEvent};
use domain::{Decider, OrderId, ProductId, Quantity};
use eventlog::{Actor, ActorKind, Appended, EventLog, Metadata};
use futures::StreamExt;
use serde_json::json;
use shop::{Ports, Service, Shop, ShopSettings};
use support::{percentile, Signed, IDENTITY};

mod support;

/// The two products' histories, in orders.
const ORDERS_BEHIND: [usize; 2] = [1_000, 200_000];
/// Stock calls timed on each.
const CALLS: usize = 1_000;
/// Orders written per batch while seeding (one product append).
const SEED_BATCH_ORDERS: usize = 100;
/// Reservations appended at once while seeding.
const SEED_CONCURRENCY: usize = 64;
/// Callers at once in the concurrent phase: the saga's partitions.
const CONCURRENT_CALLERS: usize = 16;
/// Stock calls in each case of the concurrent phase.
const CONCURRENT_CALLS: usize = 3_200;

#[tokio::main]
async fn main() {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut shop = Shop::start(ShopSettings::new(dir.path(), Ports::ANY))
        .await
        .unwrap();
    for other in [
        Service::Gateway,
        Service::Saga,
        Service::OrderStatus,
        Service::Order,
        Service::Payment,
        Service::Delivery,
    ] {
        shop.stop_service(other).await;
    }
    let _ = IDENTITY.set(shop.identity().clone());
    let inventory = shop.url(Service::Inventory);
    let log = EventLog::connect(shop.store_url()).unwrap();
    let mut products = Vec::new();
    for orders in ORDERS_BEHIND {
        let product = support::register(&http, &inventory, "Best seller").await;
        let product = ProductId::parse(&product).unwrap();
        let seeding = Instant::now();
        seed(&log, product, orders).await;
        products.push((orders, product, seeding.elapsed().as_secs_f64()));
    }

    let hello = support::do_nothing_service().await;
    let hello_url = format!("{}/hello", hello.url());
    let do_nothing = time_calls(|| http.post(&hello_url).json(&json!({}))).await;
    hello.stop().await;

    // The products' calls alternate, so the machine's noise falls on both alike.
    let mut calls = vec![Vec::with_capacity(CALLS); products.len()];
    let mut steps = vec![Steps::default(); products.len()];
    for _ in 0..CALLS {
        for (i, (_, product, _)) in products.iter().enumerate() {
            calls[i].push(time_call(&http, &inventory, *product).await);
            steps[i].time(&log, *product).await;
        }
    }
    let one = support::register(&http, &inventory, "Flash sale").await;
    let hot = vec![ProductId::parse(&one).unwrap(); CONCURRENT_CALLERS];
    let mut spread = Vec::new();
    for _ in 0..CONCURRENT_CALLERS {
        let product = support::register(&http, &inventory, "Everyday").await;
        spread.push(ProductId::parse(&product).unwrap());
    }
    let concurrent = [
        (
            "all on one product",
            concurrent_calls(&http, &inventory, &hot).await,
        ),
        (
            "each on its own product",
            concurrent_calls(&http, &inventory, &spread).await,
        ),
    ];
    shop.stop().await;

    println!(
        "| stock call, one at a time ({CALLS} calls each) | p50 | p99 | p99 vs 1,000 orders |"
    );
    println!("|---|---|---|---|");
    println!(
        "| machine: do-nothing JSON POST through servicekit | {:.2} ms | {:.2} ms | |",
        percentile(&do_nothing, 0.5),
        percentile(&do_nothing, 0.99)
    );
    let base = percentile(&calls[0], 0.99);
    for (((orders, _, seeded_s), calls), steps) in products.iter().zip(&calls).zip(&steps) {
        let p99 = percentile(calls, 0.99);
        println!(
            "| inventory decrease, {orders} orders behind the product (seeded in {seeded_s:.1} s) | {:.2} ms | {p99:.2} ms | {:.2}× |",
            percentile(calls, 0.5),
            p99 / base
        );
        for (step, latencies) in Steps::NAMES.iter().zip(&steps.0) {
            println!(
                "| … its step through the store's client: {step} | {:.2} ms | {:.2} ms | |",
                percentile(latencies, 0.5),
                percentile(latencies, 0.99)
            );
        }
    }

    println!();
    println!(
        "| stock calls, {CONCURRENT_CALLERS} callers at once ({CONCURRENT_CALLS} calls each) | calls/s | p50 | p99 | CPU per call (store + inventory) | refused |"
    );
    println!("|---|---|---|---|---|---|");
    for (case, run) in &concurrent {
        println!(
            "| {case} | {:.0} | {:.2} ms | {:.2} ms | {:.0} µs | {} |",
            run.calls_per_s,
            percentile(&run.latencies, 0.5),
            percentile(&run.latencies, 0.99),
            run.cpu_us_per_call,
            refused(&run.refused)
        );
    }
}

/// "none", or each status with its count.
fn refused(by_status: &std::collections::BTreeMap<u16, usize>) -> String {
    if by_status.is_empty() {
        return "none".to_string();
    }
    let counts: Vec<String> = by_status.iter().map(|(s, n)| format!("{n}× {s}")).collect();
    counts.join(", ")
}

/// What a concurrent run of stock calls measured.
struct ConcurrentRun {
    /// Answers other than 201, by status.
    refused: std::collections::BTreeMap<u16, usize>,
    calls_per_s: f64,
    latencies: Vec<f64>,
    cpu_us_per_call: f64,
}

/// `CONCURRENT_CALLS` stock calls for new orders, caller `i` calling on `products[i]`, all
/// callers at once.
async fn concurrent_calls(
    http: &reqwest::Client,
    inventory: &str,
    products: &[ProductId],
) -> ConcurrentRun {
    let per_caller = CONCURRENT_CALLS / products.len();
    let cpu_before = process_cpu_s();
    let start = Instant::now();
    let callers = products.iter().map(|product| async move {
        let mut answers = Vec::with_capacity(per_caller);
        for _ in 0..per_caller {
            answers.push(call(http, inventory, *product).await);
        }
        answers
    });
    let answers: Vec<(u16, f64)> = futures::future::join_all(callers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut refused = std::collections::BTreeMap::new();
    for (status, _) in answers.iter().filter(|(status, _)| *status != 201) {
        *refused.entry(*status).or_insert(0) += 1;
    }
    let latencies: Vec<f64> = answers.iter().map(|(_, ms)| *ms).collect();
    let elapsed_s = start.elapsed().as_secs_f64();
    let cpu_s = process_cpu_s() - cpu_before;
    ConcurrentRun {
        refused,
        calls_per_s: latencies.len() as f64 / elapsed_s,
        cpu_us_per_call: cpu_s * 1e6 / latencies.len() as f64,
        latencies,
    }
}

/// This process's CPU time so far (user + system), in seconds.
fn process_cpu_s() -> f64 {
    // SAFETY: getrusage writes one `rusage` into the zeroed value it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// One stock call for a new order, expected to succeed; its latency in ms.
async fn time_call(http: &reqwest::Client, inventory: &str, product: ProductId) -> f64 {
    let (status, ms) = call(http, inventory, product).await;
    assert_eq!(status, 201);
    ms
}

/// One stock call for a new order: its status and latency in ms.
async fn call(http: &reqwest::Client, inventory: &str, product: ProductId) -> (u16, f64) {
    let start = Instant::now();
    let response = http
        .post(format!("{inventory}/products/{product}/decrease"))
        .signed("system:bench")
        .json(&json!({ "orderId": OrderId::new().to_string(), "quantity": 1 }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    response.bytes().await.unwrap();
    (status, start.elapsed().as_secs_f64() * 1000.0)
}

/// Where a stock call's time goes: its store steps for new orders, each timed alone (ms).
#[derive(Clone, Default)]
struct Steps([Vec<f64>; 4]);

impl Steps {
    const NAMES: [&'static str; 4] = [
        "read the order's reservation (absent)",
        "load the product (back to its latest count)",
        "append the plan (new stream)",
        "append the take at the expected revision",
    ];

    /// The steps of one stock call for a new order.
    async fn time(&mut self, log: &EventLog, product_id: ProductId) {
        let stream = format!("product-{product_id}");
        let metadata = bench_metadata(product_id.as_uuid());
        let ms = |start: Instant| start.elapsed().as_secs_f64() * 1000.0;
        let order_id = OrderId::new();
        let reservation = format!("reservation-{order_id}");
        let start = Instant::now();
        log.load::<Reservation>(&reservation).await.unwrap();
        self.0[0].push(ms(start));
        let start = Instant::now();
        let product = log.load::<Product>(&stream).await.unwrap();
        self.0[1].push(ms(start));
        let at = Utc::now();
        let take = ProductCommand::DecreaseForOrder {
            order_id,
            quantity: Quantity::parse(1).unwrap(),
            held: Held::Nothing,
            at,
        };
        let events = Product::decide(&product.state, take).unwrap();
        let next = product.revision.map_or(0, |r| r + 1);
        let plan = [ReservationEvent::StockMovePlanned(
            plan_for(&events[0], next, at).unwrap(),
        )];
        let start = Instant::now();
        log.append(&reservation, None, &plan, &metadata)
            .await
            .unwrap();
        self.0[2].push(ms(start));
        let start = Instant::now();
        log.append_decided::<Product>(&stream, &product, &events, &metadata)
            .await
            .unwrap();
        self.0[3].push(ms(start));
    }
}

fn bench_metadata(correlation_id: uuid::Uuid) -> Metadata {
    Metadata {
        correlation_id,
        causation_id: uuid::Uuid::new_v4(),
        actor: Actor {
            kind: ActorKind::System,
            id: "bench".to_string(),
        },
        at: Utc::now(),
        request_id: None,
        trace_parent: None,
    }
}

/// Sends `CALLS` requests one after the other, each expected to succeed; latencies in ms.
async fn time_calls(request: impl Fn() -> reqwest::RequestBuilder) -> Vec<f64> {
    let mut latencies = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let start = Instant::now();
        let response = request().send().await.unwrap();
        let status = response.status();
        response.bytes().await.unwrap();
        assert!(status.is_success(), "{status}");
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    latencies
}

/// Writes `orders` more orders' takes of one unit, as the inventory would: each order's plan on
/// its reservation first, then the product's events at the planned revisions.
async fn seed(log: &EventLog, product_id: ProductId, orders: usize) {
    let stream = format!("product-{product_id}");
    let metadata = bench_metadata(product_id.as_uuid());
    let mut written = 0;
    while written < orders {
        let product = log.load::<Product>(&stream).await.unwrap();
        let mut state = product.state.clone();
        let mut revision = product.revision.map_or(0, |r| r + 1);
        let (mut events, mut plans) = (Vec::new(), Vec::new());
        for _ in 0..SEED_BATCH_ORDERS.min(orders - written) {
            let at = Utc::now();
            let take = ProductCommand::DecreaseForOrder {
                order_id: OrderId::new(),
                quantity: Quantity::parse(1).unwrap(),
                held: Held::Nothing,
                at,
            };
            for event in Product::decide(&state, take).unwrap() {
                plans.push(plan_for(&event, revision, at).unwrap());
                state = Product::evolve(state, &event);
                revision += 1;
                events.push(event);
            }
        }
        let planned = futures::stream::iter(plans)
            .map(|plan| {
                let stream = format!("reservation-{}", plan.order_id);
                let metadata = Metadata {
                    correlation_id: plan.order_id.as_uuid(),
                    ..metadata.clone()
                };
                async move {
                    let plan = [ReservationEvent::StockMovePlanned(plan)];
                    log.append(&stream, None, &plan, &metadata).await.unwrap()
                }
            })
            .buffer_unordered(SEED_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        assert!(planned
            .iter()
            .all(|a| matches!(a, Appended::Written { .. })));
        let appended = log
            .append_decided::<Product>(&stream, &product, &events, &metadata)
            .await
            .unwrap();
        assert!(
            matches!(appended, Appended::Written { .. }),
            "nothing else writes"
        );
        written += events.len();
    }
}
