//! The chaos run: the supervised fleet (`minimall up --supervise --replicas 2`: the store, two of
//! every service, two saga instances, two read models, the gateway) takes orders while its
//! parts — the store included — are killed with kill -9 at random and started again by the
//! supervisor. Customers place orders, cancel some and confirm receipt of what ships; the seller
//! confirms deposits and adds stock. Every call goes through the gateway and is repeated, as
//! the same call, until it gets an answer.
//!
//! Afterwards, with every part back and the saga settled, the books must balance: every order
//! is Closed, Cancelled with a reason, or waiting on a named step (the deposit, the receipt);
//! every product's stock is what was added less what was taken plus what was given back, never
//! below zero; every cancelled order whose money came has exactly one refund; every delivery is
//! of an order whose stock was taken; no effect happened twice; and the read model says what a
//! fresh rebuild of it says.
//!
//! Bounded: `CHAOS_S` seconds of load (default `RUN_S`, at most `RUN_S_MAX`), a kill every
//! `KILL_PAUSE_MS` (at most `KILLS_MAX`). `scripts/chaos` runs a long one and records its figures.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Seconds of load by default (the short run `scripts/test` makes), and at most.
const RUN_S: u64 = 25;
const RUN_S_MAX: u64 = 3_600;
/// Pause between two kills, in milliseconds (each a random one in this range), and most kills.
const KILL_PAUSE_MS: (u64, u64) = (1_000, 3_000);
const KILLS_MAX: usize = 2_000;
/// Products the run sells, and the stock each starts with (a long run sells out: then orders
/// are cancelled out of stock, and stock added brings some back).
const PRODUCTS: usize = 3;
const INITIAL_STOCK: i64 = 300;
/// Customer tasks (each as alice or bob) and the pause between two of their actions, in ms.
const CUSTOMER_TASKS: usize = 4;
const ACTION_PAUSE_MS: (u64, u64) = (50, 250);
/// How long one call is repeated while it gets no answer (a part down), in milliseconds.
const CALL_RETRY_MS_MAX: u64 = 60_000;
/// Longest wait for the fleet to come up, and to settle after the run, in milliseconds.
const UP_MS_MAX: u64 = 60_000;
const SETTLE_MS_MAX: u64 = 120_000;

/// A small xorshift generator: the run's choices, reproducible from the printed seed.
#[derive(Clone)]
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn between(&mut self, (low, high): (u64, u64)) -> u64 {
        low + self.below(high - low + 1)
    }
}

/// The gateway, called by logged-in users; every call repeated until it gets an answer.
#[derive(Clone)]
struct Gateway {
    http: reqwest::Client,
    url: String,
    /// Answers 500 and above other than the documented 502/503/504: each is a violation.
    errors: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// The answer to `method path` with `body`, repeated while there is none, or it is a 502,
    /// 503 or 504 (a part restarting); `None` if that lasted `CALL_RETRY_MS_MAX`.
    async fn call(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let deadline = Instant::now() + Duration::from_millis(CALL_RETRY_MS_MAX);
        while Instant::now() < deadline {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.url));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            if let Ok(answer) = request.send().await {
                let status = answer.status().as_u16();
                let body = answer.json().await.unwrap_or(Value::Null);
                match status {
                    502..=504 | 429 => {}
                    500.. => {
                        self.errors
                            .lock()
                            .unwrap()
                            .push(format!("{method} {path}: {status} {body}"));
                        return Some((status, body));
                    }
                    _ => return Some((status, body)),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    async fn login(&self, name: &str) -> String {
        let body = json!({ "name": name, "password": name });
        let (status, answer) = self
            .call(None, reqwest::Method::POST, "/api/login", Some(body))
            .await
            .expect("the gateway answers a login");
        assert_eq!(status, 200, "{answer}");
        answer["token"].as_str().unwrap().to_string()
    }
}

/// What the clients were told happened.
#[derive(Default)]
struct Told {
    /// Orders placed (201 or 200), with who placed them.
    orders: BTreeMap<String, String>,
    cancels: usize,
    receipts: usize,
    deposits: usize,
    stock_additions: usize,
}

type Shared<T> = Arc<Mutex<T>>;

/// A customer: places orders, cancels some of its own, confirms receipt of what ships.
async fn customer(
    gateway: Gateway,
    name: &'static str,
    products: Arc<Vec<String>>,
    told: Shared<Told>,
    mut dice: Dice,
    until: Instant,
) {
    use reqwest::Method;
    let token = gateway.login(name).await;
    while Instant::now() < until {
        let mine: Vec<String> = {
            let told = told.lock().unwrap();
            told.orders
                .iter()
                .filter(|(_, who)| *who == name)
                .map(|(o, _)| o.clone())
                .collect()
        };
        let roll = dice.below(100);
        if roll < 60 || mine.is_empty() {
            let order = uuid::Uuid::new_v4().to_string();
            let product = &products[dice.below(products.len() as u64) as usize];
            let body =
                json!({ "orderId": order, "productId": product, "quantity": dice.between((1, 3)) });
            if let Some((200 | 201, _)) = gateway
                .call(Some(&token), Method::POST, "/api/orders", Some(body))
                .await
            {
                told.lock().unwrap().orders.insert(order, name.to_string());
            }
        } else {
            let order = &mine[dice.below(mine.len() as u64) as usize];
            let (action, body) = if roll < 75 {
                ("cancel", json!({}))
            } else {
                ("receipt", json!({}))
            };
            let path = format!("/api/orders/{order}/{action}");
            if let Some((200 | 201, _)) = gateway
                .call(Some(&token), Method::POST, &path, Some(body))
                .await
            {
                let mut told = told.lock().unwrap();
                match action {
                    "cancel" => told.cancels += 1,
                    _ => told.receipts += 1,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(dice.between(ACTION_PAUSE_MS))).await;
    }
}

/// The seller: confirms the deposits in its queue (most of them) and now and then adds stock.
async fn seller(
    gateway: Gateway,
    products: Arc<Vec<String>>,
    told: Shared<Told>,
    mut dice: Dice,
    until: Instant,
) {
    use reqwest::Method;
    let token = gateway.login("seller").await;
    while Instant::now() < until {
        let queue = "/api/seller/orders?status=AwaitingDeposit";
        if let Some((200, Value::Array(waiting))) =
            gateway.call(Some(&token), Method::GET, queue, None).await
        {
            for order in waiting {
                if dice.below(100) >= 80 {
                    continue;
                }
                let path = format!(
                    "/api/payments/{}/deposit",
                    order["orderId"].as_str().unwrap_or("")
                );
                if let Some((200 | 201, _)) = gateway
                    .call(Some(&token), Method::POST, &path, Some(json!({})))
                    .await
                {
                    told.lock().unwrap().deposits += 1;
                }
            }
        }
        if dice.below(100) < 30 {
            let product = &products[dice.below(products.len() as u64) as usize];
            let body =
                json!({ "quantity": dice.between((1, 10)), "changeId": uuid::Uuid::new_v4() });
            let path = format!("/api/products/{product}/stock");
            if let Some((200 | 201, _)) = gateway
                .call(Some(&token), Method::POST, &path, Some(body))
                .await
            {
                told.lock().unwrap().stock_additions += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(dice.between((200, 600)))).await;
    }
}

fn fleet_state(data_dir: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(data_dir.join("supervisor.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn children(data_dir: &std::path::Path) -> Vec<Value> {
    fleet_state(data_dir)["children"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Kills a random part with SIGKILL every `KILL_PAUSE_MS` until `until` (the store at least
/// once); the kills, by part.
async fn kill_at_random(
    data_dir: std::path::PathBuf,
    mut dice: Dice,
    until: Instant,
) -> BTreeMap<String, usize> {
    let mut kills = BTreeMap::new();
    while Instant::now() < until && kills.values().sum::<usize>() < KILLS_MAX {
        tokio::time::sleep(Duration::from_millis(dice.between(KILL_PAUSE_MS))).await;
        let running: Vec<Value> = children(&data_dir)
            .into_iter()
            .filter(|c| c["pid"].is_u64())
            .collect();
        if running.is_empty() {
            continue;
        }
        // The store is one part among 15: it is also the third victim, and every tenth.
        let killed = kills.values().sum::<usize>();
        let store = running.iter().find(|c| c["name"] == "estore");
        let victim = match store {
            Some(store) if killed % 10 == 2 => store,
            _ => &running[dice.below(running.len() as u64) as usize],
        };
        let pid = victim["pid"].as_u64().unwrap() as libc::pid_t;
        // SAFETY: SIGKILL to a child of the supervisor this test started.
        if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
            *kills
                .entry(victim["name"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
    }
    kills
}

/// Every stream of the shop, read from the store: stream → (type, data) in order.
async fn all_streams(store_url: &str) -> BTreeMap<String, Vec<(String, Value)>> {
    let store = eventstore::Client::new(store_url.parse().unwrap()).unwrap();
    let mut read = store.read_all(&Default::default()).await.unwrap();
    let mut streams: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    while let Some(event) = read.next().await.unwrap() {
        let event = event.get_original_event();
        if event.stream_id.starts_with('$') || event.event_type.starts_with('$') {
            continue;
        }
        let data = serde_json::from_slice(&event.data).unwrap_or(Value::Null);
        streams
            .entry(event.stream_id.clone())
            .or_default()
            .push((event.event_type.clone(), data));
    }
    streams
}

/// What the books say is wrong; empty when they balance.
fn audit(
    streams: &BTreeMap<String, Vec<(String, Value)>>,
    stock_shown: &BTreeMap<String, i64>,
) -> (Vec<String>, BTreeMap<String, usize>) {
    let mut wrong = Vec::new();
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    let of = |stream: &str| streams.get(stream).cloned().unwrap_or_default();
    let count = |events: &[(String, Value)], t: &str| events.iter().filter(|(e, _)| e == t).count();
    // Stock moves per order, from every product's stream.
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    let mut given_back: BTreeMap<String, usize> = BTreeMap::new();
    for (stream, events) in streams.iter().filter(|(s, _)| s.starts_with("product-")) {
        let mut stock = 0i64;
        for (event_type, data) in events {
            let quantity = data["quantity"].as_i64().unwrap_or(0);
            match event_type.as_str() {
                "StockAdded" => stock += quantity,
                "QtyDecreased" => {
                    stock -= quantity;
                    *taken
                        .entry(data["orderId"].as_str().unwrap_or("").to_string())
                        .or_default() += 1;
                }
                "QtyIncreased" => {
                    stock += quantity;
                    *given_back
                        .entry(data["orderId"].as_str().unwrap_or("").to_string())
                        .or_default() += 1;
                }
                _ => continue,
            }
            if stock < 0 || data["stockAfter"].as_i64() != Some(stock) {
                wrong.push(format!(
                    "{stream}: {event_type} leaves {} by its own count, {stock} by the sum",
                    data["stockAfter"]
                ));
            }
        }
        let product = stream.trim_start_matches("product-");
        if stock_shown.get(product) != Some(&stock) {
            wrong.push(format!(
                "{stream}: added − taken + given back = {stock}, the shop shows {:?}",
                stock_shown.get(product)
            ));
        }
    }
    for stream in streams.keys().filter(|s| s.starts_with("order-")) {
        let order = stream.trim_start_matches("order-");
        let events = of(stream);
        let payment = of(&format!("payment-{order}"));
        let delivery = of(&format!("delivery-{order}"));
        let status = where_it_stands(&events, &payment);
        *ends.entry(status.clone()).or_default() += 1;
        match status.as_str() {
            "Closed" | "AwaitingDeposit" | "Shipping" => {}
            cancelled if cancelled.starts_with("Cancelled") => {
                let refunds = payment
                    .iter()
                    .filter(|(t, d)| t == "PayCanceled" && d["refund"] == true)
                    .count();
                let paid = count(&payment, "PayChecked") > 0;
                if paid && refunds != 1 {
                    wrong.push(format!(
                        "{order}: cancelled after its deposit with {refunds} refunds"
                    ));
                }
                if taken.get(order) != given_back.get(order) {
                    wrong.push(format!(
                        "{order}: cancelled with its stock taken {:?}, given back {:?}",
                        taken.get(order),
                        given_back.get(order)
                    ));
                }
            }
            other => {
                let saga = of(&format!("saga-{order}"));
                let steps: Vec<&str> = saga.iter().map(|(t, _)| t.as_str()).collect();
                wrong.push(format!(
                    "{order}: stuck ({other}; the saga recorded {steps:?})"
                ));
            }
        }
        for (events, once) in [
            (
                &events,
                [
                    "OrderPlaced",
                    "OrderShipped",
                    "OrderCanceled",
                    "OrderClosed",
                ]
                .as_slice(),
            ),
            (&payment, &["PayPlaced", "PayChecked", "PayCanceled"]),
            (&delivery, &["DeliveryStarted", "DeliveryCompleted"]),
        ] {
            for t in once {
                if count(events, t) > 1 {
                    wrong.push(format!("{order}: {t} {} times", count(events, t)));
                }
            }
        }
        if taken.get(order).copied().unwrap_or(0) > 1
            || given_back.get(order).copied().unwrap_or(0) > 1
        {
            wrong.push(format!(
                "{order}: stock taken {:?} and given back {:?} times",
                taken.get(order),
                given_back.get(order)
            ));
        }
        if count(&delivery, "DeliveryStarted") > 0 && !taken.contains_key(order) {
            wrong.push(format!("{order}: delivered without its stock taken"));
        }
        let mut steps: Vec<String> = of(&format!("saga-{order}"))
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        let recorded = steps.len();
        steps.sort();
        steps.dedup();
        if steps.len() != recorded {
            wrong.push(format!("{order}: a saga step recorded twice"));
        }
    }
    (wrong, ends)
}

/// Where an order stands by its streams: `Closed`, `Cancelled <reason>`, `Shipping` (waiting
/// for the receipt), `AwaitingDeposit` (waiting for the deposit), or the step it is stuck after.
fn where_it_stands(order: &[(String, Value)], payment: &[(String, Value)]) -> String {
    let has = |events: &[(String, Value)], t: &str| events.iter().any(|(e, _)| e == t);
    if let Some((_, cancelled)) = order.iter().find(|(t, _)| t == "OrderCanceled") {
        return format!(
            "Cancelled {}",
            cancelled["reason"].as_str().unwrap_or("(no reason)")
        );
    }
    if has(order, "OrderClosed") {
        return "Closed".into();
    }
    if has(order, "OrderShipped") {
        return "Shipping".into();
    }
    if has(payment, "PayPlaced") && !has(payment, "PayChecked") && !has(payment, "PayCanceled") {
        return "AwaitingDeposit".into();
    }
    let last = |events: &[(String, Value)]| {
        events
            .last()
            .map_or("nothing".to_string(), |(t, _)| t.clone())
    };
    format!("after {} and {}", last(order), last(payment))
}

/// Each told order as the read model shows it through the gateway: status and cancel reason.
async fn read_model(
    gateway: &Gateway,
    tokens: &BTreeMap<String, String>,
    told: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut shown = BTreeMap::new();
    for (order, who) in told {
        let path = format!("/api/orders/{order}");
        let answer = gateway
            .call(Some(&tokens[who]), reqwest::Method::GET, &path, None)
            .await;
        let (_, row) = answer.unwrap_or((0, Value::Null));
        let status = row["status"].as_str().unwrap_or("?");
        shown.insert(
            order.clone(),
            match row["cancelReason"].as_str() {
                Some(reason) => format!("{status} {reason}"),
                None => status.to_string(),
            },
        );
    }
    shown
}

/// Waits until every saga instance caught up and handles nothing, and the read model shows
/// each order as its stream ends.
async fn settle(gateway: &Gateway, data_dir: &std::path::Path, identity: &servicekit::IdentityKey) {
    let deadline = Instant::now() + Duration::from_millis(SETTLE_MS_MAX);
    let mut settled_in_a_row = 0;
    while Instant::now() < deadline && settled_in_a_row < 3 {
        let sagas: Vec<String> = children(data_dir)
            .into_iter()
            .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("saga")))
            .filter_map(|c| c["url"].as_str().map(str::to_string))
            .collect();
        let mut settled = !sagas.is_empty();
        let mut held = 0;
        for saga in &sagas {
            let answer = gateway
                .http
                .get(format!("{saga}/saga/status"))
                .header("x-actor", "system:chaos")
                .header(servicekit::PROOF_HEADER, identity.prove("system:chaos"))
                .send()
                .await;
            let status: Value = match answer {
                Ok(answer) => answer.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            held += status["partitions"].as_array().map_or(0, Vec::len);
            settled &= status["caughtUp"] == true && status["unfinishedEvents"] == 0;
        }
        settled &= held == saga::PARTITIONS;
        settled_in_a_row = if settled { settled_in_a_row + 1 } else { 0 };
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        settled_in_a_row >= 3,
        "the saga did not settle within {SETTLE_MS_MAX} ms: {}",
        fleet_state(data_dir)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn under_kill_9_at_random_the_books_balance() {
    let run_s: u64 = std::env::var("CHAOS_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(RUN_S)
        .clamp(1, RUN_S_MAX);
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("chaos: {run_s} s, seed {seed} (CHAOS_SEED={seed} repeats the choices)");
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Command::new(env!("CARGO_BIN_EXE_minimall"))
        .args([
            "up",
            "--supervise",
            "--any-port",
            "--replicas",
            "2",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let urls = common::urls_of(&mut supervisor, UP_MS_MAX);
    let _supervisor = common::KillOnDrop(supervisor);
    let gateway = Gateway {
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        url: urls["gateway"].clone(),
        errors: Arc::default(),
    };
    let identity = std::fs::read(dir.path().join("supervisor/identity-secret")).unwrap();
    let identity = servicekit::IdentityKey::new(&identity);

    // The seller's products, each with a little stock.
    let seller_token = gateway.login("seller").await;
    let mut products = Vec::new();
    for i in 0..PRODUCTS {
        let body = json!({ "productId": uuid::Uuid::new_v4(), "name": format!("Chaos tea {i}"), "price": 500, "stock": INITIAL_STOCK });
        let (status, product) = gateway
            .call(
                Some(&seller_token),
                reqwest::Method::POST,
                "/api/products",
                Some(body),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{product}");
        products.push(product["productId"].as_str().unwrap().to_string());
    }
    let products = Arc::new(products);

    let started = Instant::now();
    let until = started + Duration::from_secs(run_s);
    let told: Shared<Told> = Arc::default();
    let mut dice = Dice(seed);
    let mut actors = Vec::new();
    for i in 0..CUSTOMER_TASKS {
        let name = if i % 2 == 0 { "alice" } else { "bob" };
        let rolled = Dice(dice.next() | 1);
        actors.push(tokio::spawn(customer(
            gateway.clone(),
            name,
            Arc::clone(&products),
            Arc::clone(&told),
            rolled,
            until,
        )));
    }
    actors.push(tokio::spawn(seller(
        gateway.clone(),
        Arc::clone(&products),
        Arc::clone(&told),
        Dice(dice.next() | 1),
        until,
    )));
    let kills = kill_at_random(dir.path().to_path_buf(), Dice(dice.next() | 1), until).await;
    for actor in actors {
        actor.await.unwrap();
    }

    // Everything back: settled, then the books.
    settle(&gateway, dir.path(), &identity).await;
    let (_, catalogue) = gateway
        .call(None, reqwest::Method::GET, "/api/products", None)
        .await
        .unwrap();
    let stock_shown: BTreeMap<String, i64> = catalogue
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["productId"].as_str()?.to_string(), p["stock"].as_i64()?)))
        .collect();
    let store_url = children(dir.path())
        .into_iter()
        .find(|c| c["name"] == "estore")
        .and_then(|c| {
            c["url"]
                .as_str()
                .map(|url| url.replace("http://", "esdb://") + "?tls=false")
        })
        .expect("the fleet's store");
    let streams = all_streams(&store_url).await;
    let (mut wrong, ends) = audit(&streams, &stock_shown);
    let told = std::mem::take(&mut *told.lock().unwrap());
    for order in told.orders.keys() {
        if !streams.contains_key(&format!("order-{order}")) {
            wrong.push(format!("{order}: acknowledged but never stored"));
        }
    }
    wrong.extend(gateway.errors.lock().unwrap().iter().cloned());

    // The read model equals a fresh rebuild of it (each replica rebuilt), and the log.
    let tokens: BTreeMap<String, String> = [
        ("alice", gateway.login("alice").await),
        ("bob", gateway.login("bob").await),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t))
    .collect();
    let before = read_model(&gateway, &tokens, &told.orders).await;
    let secret = dir.path().join("supervisor/identity-secret");
    for replica in children(dir.path()).iter().filter(|c| {
        c["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("order-status"))
    }) {
        common::rebuild_read_model(
            replica["url"].as_str().unwrap(),
            &["--identity-secret-file".as_ref(), secret.as_os_str()],
        );
    }
    let after = read_model(&gateway, &tokens, &told.orders).await;
    for (order, shown) in &before {
        if after.get(order) != Some(shown) {
            wrong.push(format!(
                "{order}: the read model showed {shown}, rebuilt {:?}",
                after.get(order)
            ));
        }
        let of = |stream: String| streams.get(&stream).cloned().unwrap_or_default();
        let logged = where_it_stands(
            &of(format!("order-{order}")),
            &of(format!("payment-{order}")),
        );
        if *shown != logged {
            wrong.push(format!(
                "{order}: the read model shows {shown}, its streams say {logged}"
            ));
        }
    }

    let restarts: u64 = children(dir.path())
        .iter()
        .filter_map(|c| c["restarts"].as_u64())
        .sum();
    println!("| measure | figure |");
    println!("|---|---|");
    println!("| run | {run_s} s of load, seed {seed} |");
    println!(
        "| orders placed (acknowledged) | {} — where they ended: {ends:?} |",
        told.orders.len()
    );
    println!(
        "| other calls acknowledged | {} cancels, {} receipts, {} deposits confirmed, {} stock additions |",
        told.cancels, told.receipts, told.deposits, told.stock_additions
    );
    println!(
        "| parts killed with kill -9 | {} ({kills:?}); {restarts} restarts by the supervisor |",
        kills.values().sum::<usize>()
    );
    println!("| violations | {} |", wrong.len());
    assert!(
        !told.orders.is_empty(),
        "no order got through: the run proves nothing"
    );
    assert!(
        wrong.is_empty(),
        "the books do not balance:\n{}",
        wrong.join("\n")
    );
}
