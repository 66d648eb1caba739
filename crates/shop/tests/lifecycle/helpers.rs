//! A whole shop on 127.0.0.1 port 0 with a real embedded store in a temporary directory, and a
//! small typed client over its HTTP APIs.

use std::future::Future;
use std::time::Duration;

use serde_json::{json, Value};
use shop::{Ports, Service, Shop, ShopSettings};

/// Longest wait for the saga to bring an order somewhere.
pub const EVENTUALLY_MS_MAX: u64 = 20_000;
/// Longest wait for one HTTP answer (live streams included), in milliseconds.
pub const REQUEST_MS_MAX: u64 = 30_000;

pub struct TestShop {
    pub shop: Shop,
    pub http: reqwest::Client,
    pub store: eventstore::Client,
    _dir: tempfile::TempDir,
}

impl TestShop {
    /// Every event stored, oldest first, but the store's own (`$` streams).
    pub async fn all_events(&self) -> Vec<eventstore::RecordedEvent> {
        let options = eventstore::ReadAllOptions::default()
            .position(eventstore::StreamPosition::Start)
            .forwards();
        let mut reader = self.store.read_all(&options).await.unwrap();
        let mut events = Vec::new();
        while let Some(resolved) = reader.next().await.unwrap() {
            // The event as stored: a link itself where it is one.
            let Some(event) = resolved.link.or(resolved.event) else {
                continue;
            };
            if !event.stream_id.starts_with('$') {
                events.push(event);
            }
        }
        events
    }

    /// Stops the shop after checking every event it stored against the event contract
    /// (`contracts/`): a test that wrote an event its schema refuses fails.
    pub async fn stop(self) {
        let violations = self.contract_violations().await;
        self.shop.stop().await;
        assert!(
            violations.is_empty(),
            "{} events break the contract:\n{}",
            violations.len(),
            violations.join("\n")
        );
    }

    /// Every stored event (but the store's own `$` streams) that its schema refuses.
    async fn contract_violations(&self) -> Vec<String> {
        let contract = crate::contract::Contract::get();
        let mut violations = Vec::new();
        for event in self.all_events().await {
            let data = serde_json::from_slice(&event.data).unwrap_or(Value::Null);
            let metadata = serde_json::from_slice(&event.custom_metadata).unwrap_or(Value::Null);
            for violation in contract.violations(&event.event_type, &data, &metadata) {
                violations.push(format!(
                    "{} {} #{}: {violation}",
                    event.stream_id, event.event_type, event.revision
                ));
            }
        }
        violations
    }
}

pub async fn spawn_shop() -> TestShop {
    spawn_shop_with(|_| {}).await
}

pub async fn spawn_shop_with(configure: impl FnOnce(&mut ShopSettings)) -> TestShop {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("TEST_LOG"))
            .with_test_writer()
            .try_init();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut settings = ShopSettings::new(dir.path(), Ports::ANY);
    // Fast failure detection, so tests about services being down run in seconds.
    settings.parts.calls.timeout_ms = 1_000;
    settings.parts.calls.attempts_max = 2;
    settings.parts.calls.backoff_ms = 20;
    settings.parts.calls.breaker_failures_max = 3;
    settings.parts.calls.breaker_open_s = 2;
    settings.parts.calls.breaker_open_s_max = 2;
    settings.parts.saga_retry_pause = Duration::from_millis(100);
    configure(&mut settings);
    let shop = Shop::start(settings).await.unwrap();
    let store = eventstore::Client::new(shop.store_url().parse().unwrap()).unwrap();
    // A hung answer fails the test instead of holding CI until it is killed.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(REQUEST_MS_MAX))
        .build()
        .unwrap();
    TestShop {
        shop,
        http,
        store,
        _dir: dir,
    }
}

/// An HTTP answer: status and JSON body (Null if none).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub content_type: String,
    pub retry_after: Option<String>,
}

impl Answer {
    pub fn problem_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
}

impl TestShop {
    pub async fn send(
        &self,
        service: Service,
        method: reqwest::Method,
        path: &str,
        actor: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{}", self.shop.url(service), path));
        // Services answer only signed identities; reads go as the test itself.
        let actor = actor.unwrap_or("system:test");
        request = request
            .header("x-actor", actor)
            .header(servicekit::PROOF_HEADER, self.shop.identity().prove(actor));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        answer(response).await
    }

    pub async fn post(&self, service: Service, path: &str, actor: &str, body: Value) -> Answer {
        self.send(
            service,
            reqwest::Method::POST,
            path,
            Some(actor),
            Some(body),
        )
        .await
    }

    pub async fn get(&self, service: Service, path: &str) -> Answer {
        self.send(service, reqwest::Method::GET, path, None, None)
            .await
    }

    /// Registers a product with stock; returns its id.
    pub async fn product(&self, name: &str, price: i64, stock: i64) -> String {
        let answer = self
            .post(
                Service::Inventory,
                "/products",
                "seller:shop",
                json!({ "name": name, "price": price, "stock": stock }),
            )
            .await;
        assert_eq!(answer.status, 201, "{answer:?}");
        answer.body["productId"].as_str().unwrap().to_string()
    }

    /// Places an order as `customer`; returns its id.
    pub async fn place(&self, customer: &str, product_id: &str, quantity: i64) -> String {
        let answer = self
            .post(
                Service::Order,
                "/orders",
                &format!("customer:{customer}"),
                json!({ "productId": product_id, "quantity": quantity }),
            )
            .await;
        assert_eq!(answer.status, 201, "{answer:?}");
        answer.body["orderId"].as_str().unwrap().to_string()
    }

    pub async fn confirm_deposit(&self, order_id: &str) -> Answer {
        self.post(
            Service::Payment,
            &format!("/payments/{order_id}/deposit"),
            "seller:shop",
            json!({}),
        )
        .await
    }

    pub async fn receipt(&self, customer: &str, order_id: &str) -> Answer {
        self.post(
            Service::Order,
            &format!("/orders/{order_id}/receipt"),
            &format!("customer:{customer}"),
            json!({}),
        )
        .await
    }

    pub async fn cancel(&self, customer: &str, order_id: &str) -> Answer {
        self.post(
            Service::Order,
            &format!("/orders/{order_id}/cancel"),
            &format!("customer:{customer}"),
            json!({}),
        )
        .await
    }

    pub async fn order(&self, order_id: &str) -> Answer {
        self.get(Service::Order, &format!("/orders/{order_id}"))
            .await
    }

    pub async fn payment(&self, order_id: &str) -> Answer {
        self.get(Service::Payment, &format!("/payments/{order_id}"))
            .await
    }

    pub async fn delivery(&self, order_id: &str) -> Answer {
        self.get(Service::Delivery, &format!("/deliveries/{order_id}"))
            .await
    }

    pub async fn stock(&self, product_id: &str) -> u64 {
        let answer = self
            .get(Service::Inventory, &format!("/products/{product_id}"))
            .await;
        answer.body["stock"].as_u64().unwrap()
    }

    /// Waits until the payment for the order is open.
    pub async fn payment_opened(&self, order_id: &str) {
        eventually("the payment opens", || async {
            self.payment(order_id).await.status == 200
        })
        .await;
    }

    /// Waits until the order has `status`.
    pub async fn order_reaches(&self, order_id: &str, status: &str) -> Answer {
        eventually(&format!("order {order_id} reaches {status}"), || async {
            self.order(order_id).await.body["status"] == status
        })
        .await;
        self.order(order_id).await
    }

    /// Every event of a stream: type, data and metadata.
    pub async fn events(&self, stream: &str) -> Vec<Stored> {
        let options = eventstore::ReadStreamOptions::default();
        let mut reader = match self.store.read_stream(stream, &options).await {
            Ok(reader) => reader,
            Err(_) => return Vec::new(),
        };
        let mut events = Vec::new();
        while let Ok(Some(resolved)) = reader.next().await {
            let e = resolved.get_original_event();
            events.push(Stored {
                event_type: e.event_type.clone(),
                id: e.id.to_string(),
                data: serde_json::from_slice(&e.data).unwrap_or(Value::Null),
                metadata: serde_json::from_slice(&e.custom_metadata).unwrap_or(Value::Null),
            });
        }
        events
    }

    pub async fn event_types(&self, stream: &str) -> Vec<String> {
        self.events(stream)
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// Waits until the saga has handled everything it has read and recorded its timers.
    pub async fn saga_settled(&self) {
        let what = "the saga settles";
        eventually(what, || async {
            let status = self.get(Service::Saga, "/saga/status").await.body;
            let settled = status["caughtUp"] == true && status["unfinishedEvents"] == 0;
            if !settled {
                eprintln!("{what}: not yet, {status}");
            }
            settled
        })
        .await;
    }
}

impl TestShop {
    /// Waits until the saga's circuit breaker for `service` is open.
    pub async fn saga_breaker_opens(&self, service: &str) {
        eventually(
            &format!("the saga's breaker for {service} opens"),
            || async {
                let status = self.get(Service::Saga, "/saga/status").await.body;
                status["breakersOpen"]
                    .as_array()
                    .is_some_and(|open| open.iter().any(|s| s == service))
            },
        )
        .await;
    }
}

#[derive(Debug, Clone)]
pub struct Stored {
    pub event_type: String,
    pub id: String,
    pub data: Value,
    pub metadata: Value,
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = response.bytes().await.unwrap();
    Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        content_type,
        retry_after,
    }
}

/// Polls `check` until it holds, or fails the test after `EVENTUALLY_MS_MAX`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_millis(EVENTUALLY_MS_MAX);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}
