//! Several saga instances (`minimall serve saga`, separate processes) against one store share
//! the orders: each partition of them is worked by one instance at a time, and none is left
//! behind when an instance is killed with kill -9 or another one is added. Every order still
//! goes to Shipping with each of its steps recorded once and its stock taken once.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{serve, signed, start_store, until, Process};
use reqwest::Method;
use serde_json::{json, Value};

/// Orders placed in each round.
const ORDERS_PER_ROUND: usize = 24;
/// Stock the product starts with.
const STOCK: i64 = 1_000;
/// Longest wait for the saga to take over from a killed instance and carry the orders on, in
/// milliseconds (its lease lapses after `saga::LEASE_MS`).
const TAKEOVER_MS_MAX: u64 = 60_000;

struct Shop {
    http: reqwest::Client,
    store_url: String,
    order: String,
    payment: String,
    inventory: String,
    saga_args: Vec<String>,
}

impl Shop {
    fn saga(&self) -> (Process, String) {
        let args: Vec<&str> = self.saga_args.iter().map(String::as_str).collect();
        serve("saga", &self.store_url, &args)
    }

    async fn get(&self, url: String) -> (u16, Value) {
        signed(&self.http, Method::GET, url, "system:test", None).await
    }

    async fn post(&self, url: String, actor: &str, body: Value) -> (u16, Value) {
        signed(&self.http, Method::POST, url, actor, Some(body)).await
    }

    /// Places `ORDERS_PER_ROUND` orders; their ids.
    async fn place(&self, product: &str) -> Vec<String> {
        let mut orders = Vec::new();
        for i in 0..ORDERS_PER_ROUND {
            let body = json!({ "productId": product, "quantity": 1 });
            let customer = format!("customer:c{i}");
            let (status, placed) = self
                .post(format!("{}/orders", self.order), &customer, body)
                .await;
            assert_eq!(status, 201, "{placed}");
            orders.push(placed["orderId"].as_str().unwrap().to_string());
        }
        orders
    }

    /// Confirms each order's deposit once its payment is open, then waits for all to ship.
    async fn carry_to_shipping(&self, orders: &[String]) {
        for order in orders {
            let payment = format!("{}/payments/{order}", self.payment);
            until_within(TAKEOVER_MS_MAX, "the payment opens", async || {
                self.get(payment.clone()).await.0 == 200
            })
            .await;
            let (status, body) = self
                .post(format!("{payment}/deposit"), "seller:shop", json!({}))
                .await;
            assert!(status == 201 || status == 200, "{status} {body}");
        }
        for order in orders {
            let url = format!("{}/orders/{order}", self.order);
            until_within(TAKEOVER_MS_MAX, "the order ships", async || {
                self.get(url.clone()).await.1["status"] == "Shipping"
            })
            .await;
        }
    }
}

async fn until_within(ms: u64, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

/// The partitions each instance says it works (none for one that does not answer: it was
/// just killed).
async fn partitions(shop: &Shop, sagas: &[String]) -> Vec<BTreeSet<u64>> {
    let mut all = Vec::new();
    for saga in sagas {
        let proof =
            servicekit::IdentityKey::new(common::IDENTITY_SECRET.as_bytes()).prove("system:test");
        let answer = shop
            .http
            .get(format!("{saga}/saga/status"))
            .header("x-actor", "system:test")
            .header(servicekit::PROOF_HEADER, proof)
            .send()
            .await;
        let status = match answer {
            Ok(answer) => answer.json::<Value>().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let held = status["partitions"].as_array().cloned().unwrap_or_default();
        all.push(held.iter().filter_map(Value::as_u64).collect());
    }
    all
}

/// Whether the instances split every partition between them, each holding `shares`.
fn split(held: &[BTreeSet<u64>], shares: &[usize]) -> bool {
    let total: usize = held.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<u64> = held.iter().flatten().copied().collect();
    let sizes: Vec<usize> = held.iter().map(BTreeSet::len).collect();
    total == saga::PARTITIONS && union.len() == saga::PARTITIONS && sizes == shares
}

/// Watches the live instances every 20 ms until told to stop: a partition two of them work at
/// once is noted.
fn watch_overlaps(
    shop: Arc<Shop>,
    sagas: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut overlaps = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let live = sagas.lock().unwrap().clone();
            let held = partitions(&shop, &live).await;
            for (i, a) in held.iter().enumerate() {
                for b in &held[i + 1..] {
                    if !a.is_disjoint(b) {
                        overlaps.push(format!("{a:?} and {b:?}"));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        overlaps
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn saga_instances_share_the_orders_and_carry_on_when_one_is_killed_or_added() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, store_url) = start_store(dir.path().to_str().unwrap());
    let (_inventory, inventory) = serve("inventory", &store_url, &[]);
    let (_payment, payment) = serve("payment", &store_url, &[]);
    let (_delivery, delivery) = serve("delivery", &store_url, &[]);
    let (_order, order) = serve("order", &store_url, &["--payment-url", &payment]);
    let saga_args = [
        ("--order-url", &order),
        ("--payment-url", &payment),
        ("--inventory-url", &inventory),
        ("--delivery-url", &delivery),
    ]
    .iter()
    .flat_map(|(flag, url)| [flag.to_string(), url.to_string()])
    .collect();
    let shop = Arc::new(Shop {
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(common::WAIT_MS_MAX))
            .build()
            .unwrap(),
        store_url: store_url.clone(),
        order,
        payment,
        inventory,
        saga_args,
    });
    let (mut first, first_url) = shop.saga();
    let (_second, second_url) = shop.saga();
    for url in [&shop.inventory, &shop.payment, &delivery, &shop.order] {
        until("every service is ready", async || {
            shop.get(format!("{url}/health/ready")).await.0 == 200
        })
        .await;
    }
    let sagas = Arc::new(Mutex::new(vec![first_url.clone(), second_url.clone()]));
    let stop = Arc::new(AtomicBool::new(false));
    let overlaps = watch_overlaps(Arc::clone(&shop), Arc::clone(&sagas), Arc::clone(&stop));

    // Two instances split the partitions, eight each.
    let pair = [first_url.clone(), second_url.clone()];
    until_within(
        TAKEOVER_MS_MAX,
        "two instances split the partitions",
        async || split(&partitions(&shop, &pair).await, &[8, 8]),
    )
    .await;
    let product = json!({ "name": "Sencha", "price": 900, "stock": STOCK });
    let (status, product) = shop
        .post(
            format!("{}/products", shop.inventory),
            "seller:shop",
            product,
        )
        .await;
    assert_eq!(status, 201, "{product}");
    let product = product["productId"].as_str().unwrap().to_string();
    let mut all_orders = shop.place(&product).await;
    shop.carry_to_shipping(&all_orders).await;

    // One killed with kill -9 while orders flow: the other takes its partitions and carries
    // every order on.
    let orders = shop.place(&product).await;
    first.child.kill().expect("kill -9");
    first.child.wait().unwrap();
    sagas.lock().unwrap().retain(|url| *url != first_url);
    shop.carry_to_shipping(&orders).await;
    all_orders.extend(orders);
    let alone = [second_url.clone()];
    until_within(
        TAKEOVER_MS_MAX,
        "the survivor holds every partition",
        async || split(&partitions(&shop, &alone).await, &[16]),
    )
    .await;

    // One added: it gets half, handed over by the holder.
    let (_third, third_url) = shop.saga();
    sagas.lock().unwrap().push(third_url.clone());
    let pair = [second_url.clone(), third_url.clone()];
    until_within(TAKEOVER_MS_MAX, "the newcomer gets half", async || {
        let held = partitions(&shop, &pair).await;
        split(&held, &[8, 8])
    })
    .await;
    let orders = shop.place(&product).await;
    shop.carry_to_shipping(&orders).await;
    all_orders.extend(orders);

    stop.store(true, Ordering::Relaxed);
    let overlaps = overlaps.await.unwrap();
    assert!(
        overlaps.is_empty(),
        "partitions worked twice at once: {overlaps:?}"
    );

    // Every order's stock taken once, each saga step recorded once.
    let (_, stocked) = shop
        .get(format!("{}/products/{product}", shop.inventory))
        .await;
    assert_eq!(
        stocked["stock"],
        STOCK - all_orders.len() as i64,
        "{stocked}"
    );
    let store = eventstore::Client::new(store_url.parse().unwrap()).unwrap();
    for order in &all_orders {
        let mut steps = event_types(&store, &format!("saga-{order}")).await;
        let recorded = steps.len();
        steps.sort();
        steps.dedup();
        assert_eq!(
            steps.len(),
            recorded,
            "a step recorded twice for {order}: {steps:?}"
        );
    }
    let mut taken: Vec<String> = events(&store, &format!("product-{product}"))
        .await
        .into_iter()
        .filter(|(event_type, _)| event_type == "QtyDecreased" || event_type == "QtyIncreased")
        .map(|(event_type, data)| format!("{event_type} {}", data["orderId"]))
        .collect();
    taken.sort();
    let mut expected: Vec<String> = all_orders
        .iter()
        .map(|order| format!("QtyDecreased \"{order}\""))
        .collect();
    expected.sort();
    assert_eq!(
        taken, expected,
        "each order's stock taken once, none given back"
    );
}

/// The stream's events: type and data.
async fn events(store: &eventstore::Client, stream: &str) -> Vec<(String, Value)> {
    let mut read = store
        .read_stream(stream, &Default::default())
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(event) = read.next().await.unwrap() {
        let event = event.get_original_event();
        let data = serde_json::from_slice(&event.data).unwrap_or(Value::Null);
        events.push((event.event_type.clone(), data));
    }
    events
}

async fn event_types(store: &eventstore::Client, stream: &str) -> Vec<String> {
    events(store, stream)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect()
}
