//! Tests 5-6: stock that cannot cover an order.

use std::sync::Arc;

use crate::helpers::*;

/// Test 5.
#[tokio::test(flavor = "multi_thread")]
async fn out_of_stock_at_confirmation_refunds_and_cancels_the_order() {
    let t = spawn_shop().await;
    let product = t.product("Teapot", 6400, 1).await;
    let order = t.place("alice", &product, 2).await;
    t.payment_opened(&order).await;
    assert_eq!(t.confirm_deposit(&order).await.status, 201);

    let cancelled = t.order_reaches(&order, "Cancelled").await;
    assert_eq!(cancelled.body["cancelReason"], "OutOfStock");
    t.saga_settled().await;
    let payment = t.payment(&order).await.body;
    assert_eq!(payment["status"], "Cancelled");
    assert_eq!(payment["refund"], true);
    let pay_canceled = t.events(&format!("payment-{order}")).await.pop().unwrap();
    assert_eq!(pay_canceled.event_type, "PayCanceled");
    assert_eq!(pay_canceled.data["refund"], true);
    assert_eq!(pay_canceled.data["reason"], "OutOfStock");
    assert!(t.events(&format!("delivery-{order}")).await.is_empty());
    assert_eq!(t.stock(&product).await, 1);
    t.stop().await;
}

/// Test 6: a flash sale — many more orders than units, every deposit confirmed at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_flash_sale_never_oversells() {
    const ORDERS: usize = 200;
    const UNITS: i64 = 20;
    let t = Arc::new(spawn_shop().await);
    let product = t.product("Limited teapot", 9900, UNITS).await;
    let placing: Vec<_> = (0..ORDERS)
        .map(|i| {
            let (t, product) = (Arc::clone(&t), product.clone());
            tokio::spawn(async move { t.place(&format!("customer{i}"), &product, 1).await })
        })
        .collect();
    let mut orders = Vec::new();
    for placed in placing {
        orders.push(placed.await.unwrap());
    }
    for order in &orders {
        t.payment_opened(order).await;
    }
    let confirming: Vec<_> = orders
        .iter()
        .map(|order| {
            let (t, order) = (Arc::clone(&t), order.clone());
            tokio::spawn(async move { t.confirm_deposit(&order).await.status })
        })
        .collect();
    for confirmed in confirming {
        assert_eq!(confirmed.await.unwrap(), 201);
    }
    t.saga_settled().await;

    let mut shipped = 0;
    let mut cancelled = 0;
    for order in &orders {
        eventually("the order is shipped or cancelled", || async {
            let status = t.order(order).await.body["status"].clone();
            status == "Shipping" || status == "Cancelled"
        })
        .await;
        let view = t.order(order).await.body;
        let deliveries = t.events(&format!("delivery-{order}")).await.len();
        if view["status"] == "Shipping" {
            shipped += 1;
            assert_eq!(deliveries, 1);
        } else {
            cancelled += 1;
            assert_eq!(view["cancelReason"], "OutOfStock");
            assert_eq!(deliveries, 0);
            let payment = t.payment(order).await.body;
            assert_eq!(
                (payment["status"].as_str(), payment["refund"].as_bool()),
                (Some("Cancelled"), Some(true))
            );
        }
    }
    assert_eq!(shipped, UNITS);
    assert_eq!(cancelled as usize, ORDERS - UNITS as usize);
    assert_eq!(t.stock(&product).await, 0);
    // Every stock event's stock-after is within bounds: it never went negative.
    for event in t.events(&format!("product-{product}")).await {
        if let Some(after) = event.data.get("stockAfter") {
            assert!(after.as_i64().unwrap() >= 0);
        }
    }
    let t = Arc::into_inner(t).expect("no task holds the shop any more");
    t.stop().await;
}

/// The seller's retried stock delivery (same change id) is added once.
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_stock_delivery_is_added_once() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let path = format!("/products/{product}/stock");
    let change = serde_json::json!({ "quantity": 5, "changeId": uuid::Uuid::new_v4() });
    for status in [201, 200, 200] {
        let answer = t
            .post(
                shop::Service::Inventory,
                &path,
                "seller:shop",
                change.clone(),
            )
            .await;
        assert_eq!(answer.status, status, "{answer:?}");
        assert_eq!(answer.body["stock"], 15);
    }
    assert_eq!(t.stock(&product).await, 15);
    t.stop().await;
}

/// Registering a product again (a retried registration) adds nothing and answers the stock as it
/// stands.
#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_registration_answers_the_stock_as_it_stands() {
    let t = spawn_shop().await;
    let product_id = uuid::Uuid::new_v4();
    let register =
        serde_json::json!({ "productId": product_id, "name": "Tea", "price": 500, "stock": 5 });
    let path = format!("/products/{product_id}/stock");
    let seller = "seller:shop";
    let inventory = shop::Service::Inventory;
    assert_eq!(
        t.post(inventory, "/products", seller, register.clone())
            .await
            .status,
        201
    );
    let added = t
        .post(
            inventory,
            &path,
            seller,
            serde_json::json!({ "quantity": 3 }),
        )
        .await;
    assert_eq!(added.body["stock"], 8);
    let again = t.post(inventory, "/products", seller, register).await;
    assert_eq!(
        (again.status, again.body["stock"].as_u64()),
        (200, Some(8)),
        "{again:?}"
    );
    t.stop().await;
}
