//! The shop as separate processes, as it runs when deployed: `minimall estore` and one
//! `minimall serve <name>` per service, wired by URL, each on 127.0.0.1 port 0. One order goes
//! from placement to receipt across them.

mod common;

use std::time::Duration;

use common::{serve, serve_part, start_store, until, IDENTITY_SECRET, WAIT_MS_MAX};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn an_order_goes_through_the_shop_run_as_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (_store, store_url) = start_store(data_dir);
    let (_inventory, inventory) = serve("inventory", &store_url, &[]);
    let (_payment, payment) = serve("payment", &store_url, &[]);
    let (_delivery, delivery) = serve("delivery", &store_url, &[]);
    let (_order, order) = serve("order", &store_url, &["--payment-url", &payment]);
    let (_saga, saga) = serve(
        "saga",
        &store_url,
        &[
            "--order-url",
            &order,
            "--payment-url",
            &payment,
            "--inventory-url",
            &inventory,
            "--delivery-url",
            &delivery,
        ],
    );

    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(WAIT_MS_MAX))
        .build()
        .unwrap();
    let post = |url: String, actor: &'static str, body: Value| {
        common::signed(&http, reqwest::Method::POST, url, actor, Some(body))
    };
    let get = |url: String| common::signed(&http, reqwest::Method::GET, url, "system:test", None);
    for url in [&inventory, &payment, &delivery, &order, &saga] {
        until("every service is ready", async || {
            get(format!("{url}/health/ready")).await.0 == 200
        })
        .await;
    }

    let product = json!({ "name": "Green tea", "price": 1250, "stock": 5 });
    let (status, product) = post(format!("{inventory}/products"), "seller:shop", product).await;
    assert_eq!(status, 201);
    let placing = json!({ "productId": product["productId"], "quantity": 2 });
    let (status, placed) = post(format!("{order}/orders"), "customer:alice", placing).await;
    assert_eq!(status, 201, "{placed}");
    let order_id = placed["orderId"].as_str().unwrap().to_string();
    until("the payment opens", async || {
        get(format!("{payment}/payments/{order_id}")).await.0 == 200
    })
    .await;
    let deposit = format!("{payment}/payments/{order_id}/deposit");
    assert_eq!(post(deposit, "seller:shop", json!({})).await.0, 201);
    until("the order ships", async || {
        get(format!("{order}/orders/{order_id}")).await.1["status"] == "Shipping"
    })
    .await;
    let receipt = format!("{order}/orders/{order_id}/receipt");
    let (status, closed) = post(receipt, "customer:alice", json!({})).await;
    assert_eq!((status, closed["status"].as_str()), (201, Some("Closed")));
    let (_, product) = get(format!(
        "{inventory}/products/{}",
        product["productId"].as_str().unwrap()
    ))
    .await;
    assert_eq!(product["stock"], 3);

    // The read model and the gateway, run alone too.
    let database = dir.path().join("order-status.sqlite");
    let database = database.to_str().unwrap();
    let (_order_status, order_status) =
        serve("order-status", &store_url, &["--database", database]);
    let (_gateway, gateway) = serve_part(
        "gateway",
        &[
            "--order-url",
            &order,
            "--payment-url",
            &payment,
            "--inventory-url",
            &inventory,
            "--order-status-url",
            &order_status,
            "--token-secret",
            "separate-processes-tokens",
            "--demo-accounts",
        ],
    );
    for url in [&order_status, &gateway] {
        until("the read model and the gateway are ready", async || {
            get(format!("{url}/health/ready")).await.0 == 200
        })
        .await;
    }
    let token = common::login(&http, &gateway, "alice").await;
    let read = |path: String| {
        let (http, token, url) = (http.clone(), token.clone(), format!("{gateway}{path}"));
        async move { http.get(url).bearer_auth(token).send().await.unwrap() }
    };
    // A read waiting for a position not reached: 503 + Retry-After saying what it awaited.
    let waited = read(format!("/api/orders/{order_id}?atLeast=999999999999")).await;
    assert_eq!(waited.status(), 503);
    assert_eq!(waited.headers()["retry-after"], "1");
    let problem: Value = waited.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("999999999999"),
        "{problem}"
    );
    // The receipt marked the delivery delivered.
    until("the read model shows the delivery delivered", async || {
        let view: Value = read(format!("/api/orders/{order_id}"))
            .await
            .json()
            .await
            .unwrap();
        view["delivery"]["deliveredAt"].is_string()
    })
    .await;
    // The documented rebuild runs against the read model, signing with the shared secret.
    common::rebuild_read_model(
        &order_status,
        &["--identity-secret".as_ref(), IDENTITY_SECRET.as_ref()],
    );
}
