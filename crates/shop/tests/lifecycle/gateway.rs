//! The gateway: who may call what, load shedding, rate limits, circuit
//! breakers, request ids, and bad input refused before anything is forwarded.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shop::Service;

use crate::helpers::*;

/// A gateway's local settings with the demo accounts and test secrets: to start one alone.
fn alone() -> gateway::Settings {
    alone_signing(servicekit::IdentityKey::new(b"test"))
}

/// The same, signing identities as `identity` (to reach a test shop's services).
fn alone_signing(identity: servicekit::IdentityKey) -> gateway::Settings {
    gateway::Settings::local(
        "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap(),
        shop::demo_accounts(),
        gateway::Secret::new("test"),
        identity,
    )
}

impl TestShop {
    /// A token for a demo account.
    pub async fn login(&self, name: &str) -> String {
        let answer = self
            .send(
                Service::Gateway,
                reqwest::Method::POST,
                "/api/login",
                None,
                Some(json!({ "name": name, "password": name })),
            )
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body["token"].as_str().unwrap().to_string()
    }

    /// A call through the gateway with an optional token.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.http.request(
            method,
            format!("{}{}", self.shop.url(Service::Gateway), path),
        );
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request.send().await.unwrap()).await
    }
}

/// Test 2 of issue 4: anonymous, customer A, customer B and the seller against every route.
#[tokio::test(flavor = "multi_thread")]
async fn every_route_admits_exactly_who_it_should() {
    let t = spawn_shop().await;
    let seller = t.login("seller").await;
    let alice = t.login("alice").await;
    let bob = t.login("bob").await;
    use reqwest::Method as M;
    let product = t
        .api(
            M::POST,
            "/api/products",
            Some(&seller),
            Some(json!({ "name": "Tea", "price": 500, "stock": 50 })),
        )
        .await;
    assert_eq!(product.status, 201, "{product:?}");
    let product = product.body["productId"].as_str().unwrap().to_string();
    let placed = t
        .api(
            M::POST,
            "/api/orders",
            Some(&alice),
            Some(json!({ "productId": product, "quantity": 1 })),
        )
        .await;
    assert_eq!(placed.status, 201, "{placed:?}");
    let order = placed.body["orderId"].as_str().unwrap().to_string();
    t.payment_opened(&order).await;
    let seen = format!("/api/orders/{order}?atLeast={}", placed.body["position"]);
    assert_eq!(t.api(M::GET, &seen, Some(&alice), None).await.status, 200);

    let callers = [
        ("anonymous", None),
        ("alice", Some(&alice)),
        ("bob", Some(&bob)),
        ("seller", Some(&seller)),
    ];
    // (method, path, body, expected status for anonymous, alice, bob, seller)
    let matrix: Vec<(M, String, Option<Value>, [u16; 4])> = vec![
        (M::GET, "/api/me".into(), None, [401, 200, 200, 200]),
        (M::GET, "/api/products".into(), None, [200, 200, 200, 200]),
        (
            M::POST,
            "/api/products".into(),
            Some(json!({ "name": "Cup", "price": 900 })),
            [401, 403, 403, 201],
        ),
        (
            M::POST,
            format!("/api/products/{product}/stock"),
            Some(json!({ "quantity": 1 })),
            [401, 403, 403, 201],
        ),
        (
            M::POST,
            "/api/orders".into(),
            Some(json!({ "productId": product, "quantity": 1 })),
            [401, 201, 201, 403],
        ),
        (
            M::GET,
            format!("/api/orders/{order}"),
            None,
            [401, 200, 404, 200],
        ),
        (
            M::POST,
            format!("/api/orders/{order}/receipt"),
            None,
            [401, 409, 404, 403],
        ),
        (M::GET, "/api/my/orders".into(), None, [401, 200, 200, 403]),
        (
            M::GET,
            "/api/seller/orders?status=AwaitingDeposit".into(),
            None,
            [401, 403, 403, 200],
        ),
        (M::GET, "/api/operator".into(), None, [401, 403, 403, 200]),
        (
            M::POST,
            format!("/api/operator/orders/{order}/retry"),
            None,
            [401, 403, 403, 404],
        ),
        (
            M::POST,
            format!("/api/payments/{order}/deposit"),
            None,
            [401, 403, 403, 201],
        ),
        // After the deposit: the customer can no longer cancel.
        (
            M::POST,
            format!("/api/orders/{order}/cancel"),
            None,
            [401, 409, 404, 403],
        ),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, expected) in &matrix {
        for ((who, token), want) in callers.iter().zip(expected) {
            let got = t
                .api(
                    method.clone(),
                    path,
                    token.map(String::as_str),
                    body.clone(),
                )
                .await;
            if got.status != *want {
                wrong.push(format!(
                    "{who} {method} {path}: {} instead of {want} ({})",
                    got.status, got.body
                ));
            }
            if got.status >= 400 {
                assert_eq!(
                    got.content_type, "application/problem+json",
                    "{who} {method} {path}"
                );
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Nothing of Alice's leaks into Bob's list.
    let bobs = t.api(M::GET, "/api/my/orders", Some(&bob), None).await.body;
    assert!(!bobs.to_string().contains(&order), "{bobs}");
    let alices = t
        .api(M::GET, "/api/my/orders", Some(&alice), None)
        .await
        .body;
    assert!(alices.to_string().contains(&order));

    // Live streams: only the owner (or the seller) opens an order's; Bob's hears nothing of
    // Alice's orders.
    let live = |path: String, token: Option<String>| {
        let request = t
            .http
            .get(format!("{}{path}", t.shop.url(Service::Gateway)));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { request.send().await.unwrap() }
    };
    assert_eq!(
        live(format!("/api/orders/{order}/live"), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        live(format!("/api/orders/{order}/live"), Some(bob.clone()))
            .await
            .status(),
        404
    );
    assert_eq!(
        live("/api/my/orders/live".into(), Some(seller.clone()))
            .await
            .status(),
        403
    );
    let mut bobs_live = live("/api/my/orders/live".into(), Some(bob.clone())).await;
    assert_eq!(bobs_live.status(), 200);
    let alices_order_live = live(format!("/api/orders/{order}/live"), Some(alice.clone())).await;
    assert_eq!(alices_order_live.status(), 200);
    let other = t
        .api(
            M::POST,
            "/api/orders",
            Some(&alice),
            Some(json!({ "productId": product, "quantity": 1 })),
        )
        .await;
    let other = other.body["orderId"].as_str().unwrap().to_string();
    let heard = tokio::time::timeout(Duration::from_millis(500), bobs_live.chunk()).await;
    if let Ok(Ok(Some(chunk))) = heard {
        let text = String::from_utf8_lossy(&chunk);
        assert!(!text.contains(&other) && !text.contains(&order), "{text}");
    }
    drop((bobs_live, alices_order_live));
    t.stop().await;
}

/// The request id a client sends reaches the service and the event's metadata.
#[tokio::test(flavor = "multi_thread")]
async fn the_request_id_reaches_the_events() {
    let t = spawn_shop().await;
    let product = t.product("Tea", 500, 5).await;
    let alice = t.login("alice").await;
    let response = t
        .http
        .post(format!("{}/api/orders", t.shop.url(Service::Gateway)))
        .bearer_auth(&alice)
        .header("x-request-id", "checkout-42")
        .json(&json!({ "productId": product, "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "checkout-42");
    let placed = answer(response).await;
    let order = placed.body["orderId"].as_str().unwrap();
    let events = t.events(&format!("order-{order}")).await;
    assert_eq!(events[0].metadata["requestId"], "checkout-42");
    assert_eq!(events[0].metadata["actor"]["id"], "alice");
    // Without one, the gateway makes one up and says which.
    let response = t
        .http
        .get(format!("{}/api/products", t.shop.url(Service::Gateway)))
        .send()
        .await
        .unwrap();
    assert!(!response.headers()["x-request-id"].is_empty());
    t.stop().await;
}

/// Test 3 of issue 4, first half: past the concurrency limit, 503 + Retry-After at once; past a
/// client's rate, 429 + Retry-After.
#[tokio::test(flavor = "multi_thread")]
async fn overload_is_shed_at_once_with_a_clear_answer() {
    // An upstream that accepts connections and never answers holds requests in flight.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole = format!("http://{}", black_hole.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = black_hole.accept().await {
            open.push(socket);
        }
    });
    let pool = |url: &str| gateway::PoolSettings {
        replicas: vec![url.to_string()],
        timeout_ms: 3_000,
        breaker_failures_max: 100,
        breaker_open_s: 2,
    };
    const LIMIT: usize = 4;
    const BURST: usize = 24;
    let gateway = gateway::build(gateway::Settings {
        inventory: pool(&hole),
        concurrent_requests_max: LIMIT,
        client_requests_per_s: 1_000,
        client_burst: 1_000,
        ..alone()
    })
    .await
    .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/api/products", gateway.url());
    let burst: Vec<_> = (0..BURST)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let start = Instant::now();
                let response = http.get(url).send().await.unwrap();
                let retry_after = response.headers().get("retry-after").cloned();
                (start.elapsed(), answer(response).await, retry_after)
            })
        })
        .collect();
    let mut shed = 0;
    for request in burst {
        let (took, answer, retry_after) = request.await.unwrap();
        if answer.status == 503 {
            shed += 1;
            assert!(retry_after.is_some(), "{answer:?}");
            assert_eq!(answer.content_type, "application/problem+json");
            assert!(answer.body["detail"].as_str().unwrap().contains("busy"));
            // Shed at once: far quicker than the held requests' timeout.
            assert!(took < Duration::from_millis(2_500), "{took:?}");
        } else {
            // The ones let through waited for the silent upstream and timed out.
            assert_eq!(answer.status, 504, "{answer:?}");
        }
    }
    assert!(
        shed >= BURST - LIMIT,
        "only {shed} of {BURST} shed past a limit of {LIMIT}"
    );
    gateway.stop().await;

    // A client over its rate gets 429 with Retry-After.
    let gateway = gateway::build(gateway::Settings {
        client_requests_per_s: 1,
        client_burst: 3,
        ..alone()
    })
    .await
    .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = http
            .get(format!("{}/api/me", gateway.url()))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );
    gateway.stop().await;
    held.abort();
}

/// Test 3 of issue 4, second half: an upstream killed mid-test trips its breaker, the gateway
/// answers fast meanwhile, and recovers when the upstream is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_upstream_trips_the_breaker_and_recovers() {
    let mut t = spawn_shop().await;
    t.product("Tea", 500, 5).await;
    assert_eq!(
        t.api(reqwest::Method::GET, "/api/products", None, None)
            .await
            .status,
        200
    );
    t.shop.stop_service(Service::Inventory).await;
    eventually("the gateway's breaker for inventory opens", || async {
        t.api(reqwest::Method::GET, "/api/products", None, None)
            .await;
        let status = t.get(Service::Gateway, "/gateway/status").await.body;
        status["breakersOpen"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "inventory")
    })
    .await;
    let start = Instant::now();
    let refused = t
        .api(reqwest::Method::GET, "/api/products", None, None)
        .await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    // Other upstreams are not affected.
    assert_eq!(
        t.api(reqwest::Method::GET, "/api/me", None, None)
            .await
            .status,
        401
    );

    t.shop.start_service(Service::Inventory).await.unwrap();
    eventually("the gateway reaches inventory again", || async {
        t.api(reqwest::Method::GET, "/api/products", None, None)
            .await
            .status
            == 200
    })
    .await;
    t.stop().await;
}

/// Test 5 of issue 4: bad tokens, oversize bodies, unknown routes and malformed JSON are refused
/// at the gateway with a clear 4xx, and nothing is forwarded.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_at_the_gateway() {
    let t = spawn_shop().await;
    let other_shop = spawn_shop().await;
    let product = t.product("Tea", 500, 5).await;
    let alice = t.login("alice").await;
    let foreign = other_shop.login("alice").await;
    let seller = t.login("seller").await;
    let before = t.event_types(&format!("product-{product}")).await.len();
    let gateway = t.shop.url(Service::Gateway);
    let orders = format!("{gateway}/api/orders");
    let order_body = json!({ "productId": product, "quantity": 1 }).to_string();
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "garbage token",
            t.http
                .post(&orders)
                .bearer_auth("not-a-token")
                .header("content-type", "application/json")
                .body(order_body.clone()),
            401,
        ),
        (
            "another gateway's token",
            t.http
                .post(&orders)
                .bearer_auth(&foreign)
                .header("content-type", "application/json")
                .body(order_body.clone()),
            401,
        ),
        (
            "not a bearer token",
            t.http
                .post(&orders)
                .header("authorization", "Basic YWxpY2U6YWxpY2U=")
                .header("content-type", "application/json")
                .body(order_body.clone()),
            401,
        ),
        (
            "malformed JSON",
            t.http
                .post(&orders)
                .bearer_auth(&alice)
                .header("content-type", "application/json")
                .body("{\"productId\":"),
            400,
        ),
        (
            "not JSON",
            t.http
                .post(&orders)
                .bearer_auth(&alice)
                .header("content-type", "text/plain")
                .body(order_body.clone()),
            415,
        ),
        (
            "oversize body",
            t.http
                .post(&orders)
                .bearer_auth(&alice)
                .header("content-type", "application/json")
                .body(format!(
                    "{{\"pad\":\"{}\"}}",
                    "x".repeat(servicekit::BODY_BYTES_MAX)
                )),
            413,
        ),
        (
            "unknown route",
            t.http
                .get(format!("{gateway}/api/nothing-here"))
                .bearer_auth(&alice),
            404,
        ),
        (
            "a bad order id",
            t.http
                .get(format!("{gateway}/api/orders/not-a-uuid"))
                .bearer_auth(&alice),
            404,
        ),
        (
            "wrong login",
            t.http
                .post(format!("{gateway}/api/login"))
                .json(&json!({ "name": "alice", "password": "bob" })),
            401,
        ),
        (
            "unknown account",
            t.http
                .post(format!("{gateway}/api/login"))
                .json(&json!({ "name": "mallory", "password": "x" })),
            401,
        ),
        (
            "an unknown status in a query",
            t.http
                .get(format!("{gateway}/api/seller/orders?status=Lost"))
                .bearer_auth(&seller),
            400,
        ),
        (
            "a position that is not a number",
            t.http
                .get(format!("{gateway}/api/my/orders?atLeast=soon"))
                .bearer_auth(&alice),
            400,
        ),
    ];
    for (what, request, expected) in cases {
        let answer = answer(request.send().await.unwrap()).await;
        assert_eq!(answer.status, expected, "{what}: {answer:?}");
        assert_eq!(answer.content_type, "application/problem+json", "{what}");
        assert!(answer.body["detail"].is_string(), "{what}: {answer:?}");
    }
    let mine = t
        .api(reqwest::Method::GET, "/api/my/orders", Some(&alice), None)
        .await;
    assert_eq!(
        mine.body.as_array().map(Vec::len),
        Some(0),
        "nothing was ordered: {mine:?}"
    );
    assert_eq!(
        t.event_types(&format!("product-{product}")).await.len(),
        before
    );
    other_shop.stop().await;
    t.stop().await;
}

/// Services answer only signed identities: reaching a service's port directly with a made-up
/// `x-actor` — no proof, a forged one, one for someone else, or an expired one — gets 401, and
/// nothing is read or written.
#[tokio::test(flavor = "multi_thread")]
async fn services_refuse_callers_that_did_not_come_through_the_gateway() {
    let t = spawn_shop().await;
    let product = t.product("Tea", 500, 5).await;
    let order = t.place("alice", &product, 1).await;
    let forged = servicekit::IdentityKey::new(b"not the shop's secret").prove("customer:mallory");
    let someone_else = t.shop.identity().prove("customer:bob");
    let expired = format!("{}.{}", chrono::Utc::now().timestamp() - 1, "00".repeat(32));
    let calls = [
        (Service::Order, reqwest::Method::POST, "/orders".to_string()),
        (
            Service::OrderStatus,
            reqwest::Method::GET,
            format!("/orders/{order}"),
        ),
        (
            Service::OrderStatus,
            reqwest::Method::GET,
            "/customers/alice/orders".to_string(),
        ),
        (
            Service::Payment,
            reqwest::Method::POST,
            format!("/payments/{order}/deposit"),
        ),
        (
            Service::Inventory,
            reqwest::Method::POST,
            "/products".to_string(),
        ),
    ];
    for (service, method, path) in calls {
        for proof in [
            None,
            Some(forged.clone()),
            Some(someone_else.clone()),
            Some(expired.clone()),
        ] {
            let mut request = t
                .http
                .request(method.clone(), format!("{}{path}", t.shop.url(service)))
                .header("x-actor", "customer:alice")
                .json(&json!({ "productId": product, "quantity": 1, "name": "Fake", "price": 1 }));
            if let Some(proof) = &proof {
                request = request.header(servicekit::PROOF_HEADER, proof);
            }
            let answer = answer(request.send().await.unwrap()).await;
            assert_eq!(
                answer.status, 401,
                "{service:?} {path} with {proof:?}: {answer:?}"
            );
            assert_eq!(answer.problem_type(), "/problems/unidentified");
        }
    }
    // Health and metrics stay open for probes and scrapers.
    assert_eq!(
        t.http
            .get(format!("{}/health/ready", t.shop.url(Service::Order)))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    t.saga_settled().await;
    let deposits = t.event_types(&format!("payment-{order}")).await;
    assert!(
        !deposits.contains(&"PayChecked".to_string()),
        "{deposits:?}"
    );
    assert_eq!(
        t.event_types(&format!("order-{order}")).await,
        ["OrderPlaced"]
    );
    t.stop().await;
}

/// Requests to an upstream with several replicas go round robin over the ready ones; a replica
/// that stops is left out once its readiness check fails, and nothing is refused meanwhile but
/// what the breaker or the timeout must.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_the_load_and_a_stopped_one_is_left_out() {
    let t = spawn_shop().await;
    t.product("Tea", 500, 5).await;
    let second = inventory::build(inventory::Settings {
        listen: "127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
        store_url: t.shop.store_url().to_string(),
        identity: t.shop.identity().clone(),
    })
    .await
    .unwrap();
    let replicas = vec![t.shop.url(Service::Inventory), second.url()];
    let pool = |replicas: Vec<String>| gateway::PoolSettings {
        replicas,
        timeout_ms: 2_000,
        breaker_failures_max: 5,
        breaker_open_s: 2,
    };
    let gateway = gateway::build(gateway::Settings {
        inventory: pool(replicas.clone()),
        ..alone_signing(t.shop.identity().clone())
    })
    .await
    .unwrap();
    let products = format!("{}/api/products", gateway.url());
    for _ in 0..10 {
        let answer = answer(t.http.get(&products).send().await.unwrap()).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    for replica in &replicas {
        let metrics = t
            .http
            .get(format!("{replica}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let served: u64 = metrics
            .lines()
            .filter(|l| l.contains("route=\"/products\"") && l.contains("status=\"200\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert!(served >= 4, "{replica} served {served} of 10:\n{metrics}");
    }
    second.stop().await;
    // Within a readiness check or two the stopped replica is out; until then the breaker may
    // refuse a few with 502/503, never with a hang.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for _ in 0..10 {
        let answer = answer(t.http.get(&products).send().await.unwrap()).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    gateway.stop().await;
    t.stop().await;
}

/// Each password check holds its hash's memory (argon2id, 19 MiB): a burst of logins runs a
/// bounded number of checks at once and sheds the rest with 503 + Retry-After, so the gateway's
/// memory stays bounded; nothing is stuck afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_logins_runs_a_bounded_number_of_password_checks() {
    const LOGINS: usize = 12;
    let gateway = gateway::build(gateway::Settings {
        password_checks_max: 1,
        password_check_wait_ms: 0,
        client_requests_per_s: 1_000,
        client_burst: 1_000,
        ..alone()
    })
    .await
    .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/api/login", gateway.url());
    let login = |http: reqwest::Client, url: String| async move {
        let response = http
            .post(url)
            .json(&json!({"name": "alice", "password": "alice"}))
            .send()
            .await
            .unwrap();
        let retry_after = response.headers().get("retry-after").cloned();
        (answer(response).await, retry_after)
    };
    let burst: Vec<_> = (0..LOGINS)
        .map(|_| tokio::spawn(login(http.clone(), url.clone())))
        .collect();
    let (mut shed, mut logged_in) = (0, 0);
    for request in burst {
        let (answer, retry_after) = request.await.unwrap();
        match answer.status {
            200 => logged_in += 1,
            503 => {
                shed += 1;
                assert!(retry_after.is_some(), "{answer:?}");
                assert_eq!(answer.content_type, "application/problem+json");
                assert!(answer.body["detail"].as_str().unwrap().contains("logins"));
            }
            _ => panic!("a login answered {answer:?}"),
        }
    }
    // One check at a time and no waiting: the twelve arrive together, most find it taken.
    assert!(
        (1..=LOGINS / 2).contains(&logged_in),
        "{logged_in} logged in, {shed} shed"
    );
    let (after, _) = login(http.clone(), url.clone()).await;
    assert_eq!(after.status, 200, "{after:?}");
    gateway.stop().await;
}

/// Behind an Ingress every anonymous request comes from the Ingress's address: with one trusted
/// proxy the rate limit tells clients apart by the address that proxy saw (the last
/// X-Forwarded-For entry), and a client cannot pick its own by sending the header; without a
/// trusted proxy the header is ignored.
#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_anonymous_clients_get_their_own_rate() {
    let start = |trusted_proxies| {
        gateway::build(gateway::Settings {
            trusted_proxies,
            client_requests_per_s: 1,
            client_burst: 2,
            ..alone()
        })
    };
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let status = |url: String, forwarded: &'static str| {
        let http = http.clone();
        async move {
            let response = http
                .get(format!("{url}/api/me"))
                .header("x-forwarded-for", forwarded)
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }
    };
    let behind = start(1).await.unwrap();
    let url = behind.url();
    assert_ne!(status(url.clone(), "203.0.113.7").await, 429);
    assert_ne!(status(url.clone(), "203.0.113.7").await, 429);
    assert_eq!(status(url.clone(), "203.0.113.7").await, 429);
    // A claim of its own before the proxy's entry does not give a client a new budget...
    assert_eq!(status(url.clone(), "198.51.100.1, 203.0.113.7").await, 429);
    // ...while another client, as the proxy saw it, has its own.
    assert_ne!(status(url.clone(), "203.0.113.8").await, 429);
    behind.stop().await;

    let direct = start(0).await.unwrap();
    let url = direct.url();
    assert_ne!(status(url.clone(), "203.0.113.1").await, 429);
    assert_ne!(status(url.clone(), "203.0.113.2").await, 429);
    assert_eq!(status(url.clone(), "203.0.113.3").await, 429);
    direct.stop().await;
}

/// A replica that passes its readiness checks but drops every other request unanswered (closes
/// the connection), as a replica does that is cut off mid-request.
async fn dropping_replica() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = vec![0; 4096];
                let read = socket.read(&mut head).await.unwrap_or(0);
                if head[..read].starts_with(b"GET /health/ready ") {
                    let ready =
                        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nready";
                    let _ = socket.write_all(ready.as_bytes()).await;
                }
            });
        }
    });
    url
}

/// A request a replica dropped is sent once more, to another replica, when that is safe (a read,
/// a command with its idempotency key); a plain command is not sent twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_request_is_retried_on_another_replica_only_when_it_is_safe() {
    let t = spawn_shop().await;
    let pool = |replicas: Vec<String>| gateway::PoolSettings {
        replicas,
        timeout_ms: 2_000,
        breaker_failures_max: 100,
        breaker_open_s: 2,
    };
    let replicas = vec![dropping_replica().await, t.shop.url(Service::Inventory)];
    let gateway = gateway::build(gateway::Settings {
        inventory: pool(replicas),
        ..alone_signing(t.shop.identity().clone())
    })
    .await
    .unwrap();
    let url = gateway.url();
    for _ in 0..6 {
        let answer = answer(
            t.http
                .get(format!("{url}/api/products"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, 200, "a read failed: {answer:?}");
    }
    let login = t
        .http
        .post(format!("{url}/api/login"))
        .json(&json!({"name": "seller", "password": "seller"}))
        .send()
        .await
        .unwrap();
    let token = answer(login).await.body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let register = |body: Value| {
        let request = t
            .http
            .post(format!("{url}/api/products"))
            .bearer_auth(&token)
            .json(&body);
        async move { answer(request.send().await.unwrap()).await.status }
    };
    // Round robin: plain commands in a row alternate between the two replicas.
    let mut plain = Vec::new();
    for n in 0..4 {
        plain.push(register(json!({"name": format!("Plain {n}"), "price": 100, "stock": 1})).await);
    }
    for _ in 0..4 {
        let keyed =
            json!({"productId": uuid::Uuid::new_v4(), "name": "Keyed", "price": 100, "stock": 1});
        assert_eq!(register(keyed).await, 201, "a command with its key failed");
    }
    assert!(
        plain.contains(&502),
        "a plain command was sent twice: {plain:?}"
    );
    assert!(plain.contains(&201), "{plain:?}");
    gateway.stop().await;
}

/// The API is described where the README says: the gateway's OpenAPI document and its page,
/// and each service's own document, every one OpenAPI 3.1 with the problem catalogue.
#[tokio::test(flavor = "multi_thread")]
async fn every_part_serves_its_openapi_document() {
    let t = spawn_shop().await;
    let gateway = t.shop.url(Service::Gateway);
    let document: Value = t
        .http
        .get(format!("{gateway}/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/api/orders"]["post"]["responses"]["201"].is_object());
    assert!(document["components"]["schemas"]["Problem"].is_object());
    let kinds = document["x-problems"].as_array().unwrap();
    assert_eq!(kinds.len(), servicekit::ProblemKind::ALL.len());
    let page = t
        .http
        .get(format!("{gateway}/api/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/api/openapi.json"));
    for (service, path) in [
        (Service::Order, "/orders"),
        (Service::Payment, "/payments/{order_id}"),
        (Service::Inventory, "/products"),
        (Service::Delivery, "/deliveries"),
        (Service::Saga, "/saga/status"),
        (Service::OrderStatus, "/orders/{order_id}"),
    ] {
        let url = format!("{}/openapi.json", t.shop.url(service));
        let document: Value = t.http.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(document["openapi"], "3.1.0", "{service:?}");
        assert!(document["paths"][path].is_object(), "{service:?} {path}");
        assert!(
            document["paths"]["/health/ready"].is_object(),
            "{service:?}"
        );
    }
    t.stop().await;
}
