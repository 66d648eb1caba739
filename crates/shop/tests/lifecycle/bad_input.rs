//! Test 12: bad input of every kind gets a 4xx problem+json and appends nothing.
//!
//! Each test sets up what its bad requests aim at, lets the saga settle, then sends a table of
//! bad requests. Each must get its expected 4xx status as `application/problem+json` with a
//! string `type`, `title` and `detail` and a numeric `status` — a 422 also the `field` at fault,
//! named in its `detail` — and the store must keep exactly
//! the events it had: none appended by a request nor by the saga reacting to one. `$` streams
//! and the saga's checkpoint, which it stores on its own, are left out. Every mishandled request
//! is listed, with all it appended, so one run shows them all.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use servicekit::BODY_BYTES_MAX;
use shop::Service::{self, Delivery, Inventory, Order, Payment, Saga};

use crate::helpers::*;

const ALICE: &str = "customer:alice";
const BOB: &str = "customer:bob";
const SELLER: &str = "seller:shop";
const SAGA: &str = "system:saga";
/// No `x-actor` header at all.
const ANONYMOUS: &str = "";
const JSON: &str = "application/json";
/// Longest wait for the saga to react to a request wrongly accepted.
const SETTLE_MS_MAX: u64 = 10_000;

/// Malformed bodies, wrong content types and oversize bodies, on every route that takes a body.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_are_refused_by_every_service() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let order = t.place("alice", &product, 1).await;
    t.payment_opened(&order).await;

    let delivery = json!({ "orderId": nobody(), "customerId": "alice", "productId": product,
                           "quantity": 1 });
    let mut cases = Vec::new();
    // Each route with a body it would take: only the way the body is sent is wrong.
    for (route, valid) in [
        (
            post(Order, "/orders", ALICE),
            json!({ "productId": product, "quantity": 1 }),
        ),
        (
            post(Payment, format!("/payments/{order}"), SAGA),
            json!({ "amount": 1250 }),
        ),
        // Not due yet: refused even when sent right, but then without a side effect.
        (
            post(Payment, format!("/payments/{order}/cancel"), SAGA),
            json!({ "reason": "DepositOverdue" }),
        ),
        (
            post(Inventory, "/products", SELLER),
            json!({ "name": "Black tea", "price": 900, "stock": 5 }),
        ),
        (
            post(Inventory, format!("/products/{product}/stock"), SELLER),
            json!({ "quantity": 1 }),
        ),
        (
            post(Inventory, format!("/products/{product}/decrease"), SAGA),
            json!({ "orderId": nobody(), "quantity": 1 }),
        ),
        (post(Delivery, "/deliveries", SAGA), delivery),
    ] {
        cases.extend(badly_sent(&route, &valid));
    }
    // Heads over the limits, at every service and the gateway.
    for service in [
        Order,
        Payment,
        Inventory,
        Delivery,
        Saga,
        Service::OrderStatus,
    ] {
        cases.extend(oversized_heads(service));
    }
    cases.extend(oversized_heads(Service::Gateway));
    // A customer's cancel takes an optional body; a bad one is still bad. Each on an order of
    // its own, so that a cancel wrongly accepted does not hide the next.
    let cancels = [
        (Some(JSON), br#"{"reason":"#.to_vec(), 400, "truncated JSON"),
        (
            Some(JSON),
            b"{} {}".to_vec(),
            400,
            "a second document after the first",
        ),
        (None, b"{}".to_vec(), 415, "no content type"),
        (Some("text/plain"), b"{}".to_vec(), 415, "text/plain"),
        (
            Some(JSON),
            oversize(&json!({})),
            413,
            "one byte over the limit",
        ),
        (
            Some(JSON),
            br#"{"reason":"Bored"}"#.to_vec(),
            422,
            "an unknown reason",
        ),
    ];
    for (content_type, body, status, what) in cancels {
        let order = t.place("alice", &product, 1).await;
        t.payment_opened(&order).await;
        let cancel = post(Order, format!("/orders/{order}/cancel"), ALICE);
        cases.push(cancel.raw(content_type, body, status, what));
    }
    refuse_all(&t, cases).await;
    t.stop().await;
}

/// The body `valid` for `route`, sent in every wrong way.
fn badly_sent(route: &Route, valid: &Value) -> Vec<Case> {
    let text = valid.to_string();
    let json = |body: &[u8], status, what| route.raw(Some(JSON), body.to_vec(), status, what);
    vec![
        json(&text.as_bytes()[..text.len() - 1], 400, "truncated JSON").typed("malformed-json"),
        json(b"quantity=1", 400, "not JSON"),
        json(b"", 400, "an empty body"),
        json(b"\xff\xfe{}", 400, "not UTF-8"),
        json(
            format!("{text} {text}").as_bytes(),
            400,
            "a second document after the first",
        ),
        json(format!("[{text}]").as_bytes(), 422, "an array"),
        json(b"null", 422, "null"),
        route
            .raw(None, text.clone().into_bytes(), 415, "no content type")
            .typed("unsupported-media-type"),
        route.raw(Some("text/plain"), text.into_bytes(), 415, "text/plain"),
        json(&oversize(valid), 413, "one byte over the limit").typed("body-too-large"),
    ]
}

/// Fields that parse as JSON but hold values the shop does not take: 422 everywhere.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_fields_are_refused() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let pricey = t.product("Gold leaf", 100_000_000, 5).await;
    let full = t.product("Sand", 1, 1_000_000).await;
    let order = t.place("alice", &product, 1).await;
    t.payment_opened(&order).await;

    let new_order = nobody();
    let orders = post(Order, "/orders", ALICE);
    let quantity = |quantity: Value, what| {
        let body = json!({ "productId": product, "quantity": quantity });
        orders.json(body, 422, what).typed("invalid-fields")
    };
    let place = |body: Value, what| orders.json(body, 422, what).typed("invalid-fields");
    let opening = post(Payment, format!("/payments/{order}"), SAGA);
    let open = |amount: Value, what| opening.json(json!({ "amount": amount }), 422, what);
    let products = post(Inventory, "/products", SELLER);
    let register = |body: Value, what| products.json(body, 422, what);
    let add_stock = |product: &str, quantity: Value, what| {
        post(Inventory, format!("/products/{product}/stock"), SELLER).json(
            json!({ "quantity": quantity }),
            422,
            what,
        )
    };
    let decreasing = post(Inventory, format!("/products/{product}/decrease"), SAGA);
    let decrease = |body: Value, what| decreasing.json(body, 422, what);
    let deliveries = post(Delivery, "/deliveries", SAGA);
    let start = |changed: Value, what| {
        let mut body = json!({ "orderId": new_order, "customerId": "alice",
                               "productId": product, "quantity": 1 });
        for (field, value) in changed.as_object().unwrap() {
            match value {
                Value::Null => body.as_object_mut().unwrap().remove(field),
                value => body
                    .as_object_mut()
                    .unwrap()
                    .insert(field.clone(), value.clone()),
            };
        }
        deliveries.json(body, 422, what)
    };
    let cases = vec![
        quantity(json!(0), "quantity 0"),
        quantity(json!(-1), "quantity -1"),
        quantity(json!(101), "quantity 101"),
        quantity(json!(i64::MIN), "quantity i64::MIN"),
        quantity(json!(1e20), "quantity 1e20"),
        quantity(json!(1.5), "quantity 1.5"),
        quantity(json!("2"), "quantity as a string"),
        quantity(Value::Null, "quantity null"),
        place(json!({ "productId": product }), "no quantity"),
        place(json!({ "quantity": 1 }), "no product"),
        place(
            json!({ "productId": 42, "quantity": 1 }),
            "a product id as a number",
        ),
        place(
            json!({ "productId": "tea", "quantity": 1 }),
            "a product id not a UUID",
        ),
        place(
            json!({ "productId": nobody(), "quantity": 1 }),
            "an unknown product",
        ),
        place(
            json!({ "orderId": "o-1", "productId": product, "quantity": 1 }),
            "an order id not a UUID",
        ),
        place(
            json!({ "productId": product, "quantity": 1, "coupon": "FREE" }),
            "an unknown field",
        ),
        place(
            json!({ "productId": pricey, "quantity": 2 }),
            "an amount over the limit",
        ),
        post(Order, format!("/orders/{order}/cancel"), SAGA).json(
            json!({}),
            422,
            "the saga's cancel without a reason",
        ),
        open(json!(-1), "amount -1"),
        open(json!(100_000_001), "an amount over the limit"),
        open(json!("1250"), "an amount as a string"),
        open(Value::Null, "amount null"),
        post(Payment, format!("/payments/{order}/cancel"), SAGA).json(
            json!({ "reason": "Bored" }),
            422,
            "an unknown cancel reason",
        ),
        post(Payment, format!("/payments/{order}/cancel"), SAGA).json(
            json!({}),
            422,
            "no cancel reason",
        ),
        register(json!({ "name": "", "price": 900 }), "an empty name").at("name"),
        register(json!({ "name": "   ", "price": 900 }), "a blank name").at("name"),
        register(
            json!({ "name": "x".repeat(101), "price": 900 }),
            "a name of 101 characters",
        )
        .at("name"),
        register(
            json!({ "name": "tea\u{7}", "price": 900 }),
            "a control character in a name",
        )
        .at("name"),
        register(
            json!({ "name": "tea\u{0}", "price": 900 }),
            "a NUL in a name",
        )
        .at("name"),
        register(json!({ "price": 900 }), "no name"),
        register(json!({ "name": "Black tea", "price": -1 }), "price -1").at("price"),
        register(
            json!({ "name": "Black tea", "price": 100_000_001 }),
            "a price over the limit",
        ),
        register(json!({ "name": "Black tea", "price": 9.5 }), "price 9.5"),
        register(
            json!({ "name": "Black tea", "price": 900, "stock": -1 }),
            "stock -1",
        )
        .at("stock"),
        register(
            json!({ "name": "Black tea", "price": 900, "stock": 1_000_001 }),
            "stock over the limit",
        ),
        register(
            json!({ "productId": "tea", "name": "Black tea", "price": 900 }),
            "a product id not a UUID",
        ),
        register(
            json!({ "name": "Black tea", "price": 900, "colour": "black" }),
            "an unknown field",
        ),
        add_stock(&product, json!(0), "adding 0"),
        add_stock(&product, json!(-3), "adding -3"),
        add_stock(&product, json!(1_000_001), "adding over the limit"),
        add_stock(&full, json!(1), "stock over the limit once added"),
        decrease(json!({ "orderId": new_order, "quantity": 0 }), "taking 0"),
        decrease(
            json!({ "orderId": new_order, "quantity": 101 }),
            "taking 101",
        ),
        decrease(json!({ "orderId": new_order }), "taking without a quantity"),
        decrease(
            json!({ "orderId": "o-1", "quantity": 1 }),
            "taking for an order id not a UUID",
        ),
        post(Inventory, format!("/products/{product}/increase"), SAGA).json(
            json!({ "orderId": "o-1" }),
            422,
            "giving back for an order id not a UUID",
        ),
        start(json!({ "quantity": 0 }), "delivering 0"),
        start(json!({ "quantity": 101 }), "delivering 101"),
        start(
            json!({ "customerId": "alice smith" }),
            "a customer id with a space",
        ),
        start(
            json!({ "orderId": "o-1" }),
            "a delivery's order id not a UUID",
        ),
        start(
            json!({ "productId": "tea" }),
            "a delivery's product id not a UUID",
        ),
        start(json!({ "productId": null }), "a delivery without a product"),
    ];
    refuse_all(&t, cases).await;
    t.stop().await;
}

/// Unknown orders, payments, products, deliveries and routes; known routes with the wrong method.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_ids_and_routes_are_not_found_and_wrong_methods_not_allowed() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let order = t.place("alice", &product, 1).await;
    t.payment_opened(&order).await;

    let unknown = nobody();
    let not_found = |route: Route, body: Value, what| route.json(body, 404, what);
    let not_allowed = |method, service, path: &str, what| {
        call(method, service, path)
            .bare(405, what)
            .typed("method-not-allowed")
    };
    let cases = vec![
        get(Order, format!("/orders/{unknown}")).bare(404, "an unknown order"),
        get(Order, "/orders/o-1").bare(404, "an order id not a UUID"),
        not_found(
            post(Order, format!("/orders/{unknown}/receipt"), ALICE),
            json!({}),
            "receipt of an unknown order",
        ),
        not_found(
            post(Order, "/orders/o-1/receipt", ALICE),
            json!({}),
            "receipt of an order id not a UUID",
        ),
        not_found(
            post(Order, format!("/orders/{unknown}/cancel"), ALICE),
            json!({}),
            "the customer cancelling an unknown order",
        ),
        not_found(
            post(Order, "/orders/o-1/cancel", ALICE),
            json!({}),
            "cancelling an order id not a UUID",
        ),
        not_found(
            post(Order, format!("/orders/{unknown}/cancel"), SAGA),
            json!({ "reason": "OutOfStock" }),
            "the saga cancelling an unknown order",
        ),
        post(Order, format!("/orders/{unknown}/shipment"), SAGA)
            .bare(404, "shipment of an unknown order"),
        get(Payment, format!("/payments/{unknown}")).bare(404, "an unknown payment"),
        get(Payment, "/payments/p-1").bare(404, "a payment id not a UUID"),
        not_found(
            post(Payment, format!("/payments/{unknown}/deposit"), SELLER),
            json!({}),
            "the deposit of an unknown payment",
        ),
        not_found(
            post(Payment, "/payments/p-1/deposit", SELLER),
            json!({}),
            "the deposit of a payment id not a UUID",
        ),
        not_found(
            post(Payment, format!("/payments/{unknown}/cancel"), SAGA),
            json!({ "reason": "DepositOverdue" }),
            "expiring an unknown payment",
        ),
        get(Inventory, format!("/products/{unknown}")).bare(404, "an unknown product"),
        get(Inventory, "/products/tea").bare(404, "a product id not a UUID"),
        not_found(
            post(Inventory, format!("/products/{unknown}/stock"), SELLER),
            json!({ "quantity": 1 }),
            "stock for an unknown product",
        ),
        not_found(
            post(Inventory, "/products/tea/stock", SELLER),
            json!({ "quantity": 1 }),
            "stock for a product id not a UUID",
        ),
        not_found(
            post(Inventory, format!("/products/{unknown}/decrease"), SAGA),
            json!({ "orderId": order, "quantity": 1 }),
            "taking stock of an unknown product",
        ),
        not_found(
            post(Inventory, format!("/products/{unknown}/increase"), SAGA),
            json!({ "orderId": order }),
            "giving back stock of an unknown product",
        ),
        get(Delivery, format!("/deliveries/{unknown}")).bare(404, "an unknown delivery"),
        get(Delivery, "/deliveries/d-1").bare(404, "a delivery id not a UUID"),
        post(Delivery, format!("/deliveries/{unknown}/delivered"), SAGA)
            .bare(404, "delivering an unknown delivery"),
        get(Order, "/nothing").bare(404, "an unknown order route"),
        not_found(
            post(Order, format!("/orders/{order}/refund"), ALICE),
            json!({}),
            "an unknown order command",
        ),
        get(Payment, "/nothing").bare(404, "an unknown payment route"),
        get(Inventory, "/nothing").bare(404, "an unknown inventory route"),
        get(Delivery, "/nothing").bare(404, "an unknown delivery route"),
        get(Saga, "/nothing").bare(404, "an unknown saga route"),
        not_allowed(Method::GET, Order, "/orders", "listing orders"),
        not_allowed(
            Method::DELETE,
            Order,
            &format!("/orders/{order}"),
            "deleting an order",
        ),
        not_allowed(
            Method::GET,
            Order,
            &format!("/orders/{order}/cancel"),
            "GET on a command",
        ),
        not_allowed(
            Method::PUT,
            Payment,
            &format!("/payments/{order}/deposit"),
            "PUT on a command",
        ),
        not_allowed(
            Method::DELETE,
            Payment,
            &format!("/payments/{order}"),
            "deleting a payment",
        ),
        not_allowed(
            Method::PATCH,
            Inventory,
            &format!("/products/{product}"),
            "patching a product",
        ),
        not_allowed(
            Method::DELETE,
            Inventory,
            "/products",
            "deleting the catalogue",
        ),
        not_allowed(Method::GET, Delivery, "/deliveries", "listing deliveries"),
        not_allowed(
            Method::POST,
            Saga,
            "/saga/status",
            "POST on the saga's status",
        ),
    ];
    refuse_all(&t, cases).await;
    t.stop().await;
}

/// Commands without an `x-actor`, with a malformed one, or from the wrong kind of caller.
#[tokio::test(flavor = "multi_thread")]
async fn callers_must_say_who_they_are_and_may_do_only_their_part() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let order = t.place("alice", &product, 1).await;
    t.payment_opened(&order).await;

    let placing = json!({ "productId": product, "quantity": 1 });
    let delivery = json!({ "orderId": nobody(), "customerId": "alice", "productId": product,
                           "quantity": 1 });
    let place = |actor: &str, status, what| {
        post(Order, "/orders", actor).json(placing.clone(), status, what)
    };
    let forbidden =
        |route: Route, body: Value, what| route.json(body, 403, what).typed("forbidden");
    let mut cases = vec![
        place(ANONYMOUS, 401, "placing without x-actor").typed("unidentified"),
        post(Order, format!("/orders/{order}/cancel"), ANONYMOUS).json(
            json!({}),
            401,
            "cancelling without x-actor",
        ),
        post(Order, format!("/orders/{order}/receipt"), ANONYMOUS).json(
            json!({}),
            401,
            "receipt without x-actor",
        ),
        post(Payment, format!("/payments/{order}/deposit"), ANONYMOUS).json(
            json!({}),
            401,
            "confirming a deposit without x-actor",
        ),
        post(Inventory, "/products", ANONYMOUS).json(
            json!({ "name": "Black tea", "price": 900 }),
            401,
            "registering without x-actor",
        ),
        post(Delivery, "/deliveries", ANONYMOUS).json(
            delivery.clone(),
            401,
            "starting a delivery without x-actor",
        ),
    ];
    let long_name = format!("customer:{}", "a".repeat(65));
    for actor in [
        "alice",
        "admin:root",
        "Customer:alice",
        "customer:",
        ":alice",
        "customer:alice smith",
        "customer:alice:bob",
        "customer:al/ce",
        long_name.as_str(),
    ] {
        cases.push(place(actor, 400, "a malformed x-actor").typed("bad-request"));
    }
    cases.extend([
        post(Order, "/orders", ALICE)
            .header("x-causation-id", "cause-1")
            .json(placing.clone(), 400, "an x-causation-id not a UUID"),
        post(Order, "/orders", ALICE)
            .header("x-request-id", "r".repeat(129))
            .json(placing.clone(), 400, "an x-request-id over 128 bytes"),
        place(SELLER, 403, "a seller placing an order").typed("forbidden"),
        place(SAGA, 403, "the saga placing an order").typed("forbidden"),
        forbidden(
            post(Order, format!("/orders/{order}/cancel"), SELLER),
            json!({}),
            "a seller cancelling an order",
        ),
        forbidden(
            post(Order, format!("/orders/{order}/receipt"), SELLER),
            json!({}),
            "a seller confirming receipt",
        ),
        post(Order, format!("/orders/{order}/shipment"), ALICE)
            .bare(403, "a customer marking an order shipped"),
        forbidden(
            post(Payment, format!("/payments/{order}/deposit"), ALICE),
            json!({}),
            "a customer confirming a deposit",
        ),
        forbidden(
            post(Payment, format!("/payments/{order}/deposit"), SAGA),
            json!({}),
            "the saga confirming a deposit",
        ),
        forbidden(
            post(Payment, format!("/payments/{order}"), ALICE),
            json!({ "amount": 1250 }),
            "a customer opening a payment",
        ),
        forbidden(
            post(Payment, format!("/payments/{order}/cancel"), ALICE),
            json!({ "reason": "CustomerRequest" }),
            "a customer cancelling the payment directly",
        ),
        forbidden(
            post(Payment, format!("/payments/{order}/cancel"), SELLER),
            json!({ "reason": "CustomerRequest" }),
            "a seller cancelling the payment",
        ),
        forbidden(
            post(Inventory, "/products", ALICE),
            json!({ "name": "Black tea", "price": 900 }),
            "a customer registering a product",
        ),
        forbidden(
            post(Inventory, format!("/products/{product}/stock"), ALICE),
            json!({ "quantity": 5 }),
            "a customer adding stock",
        ),
        forbidden(
            post(Inventory, format!("/products/{product}/decrease"), ALICE),
            json!({ "orderId": nobody(), "quantity": 1 }),
            "a customer taking stock",
        ),
        forbidden(
            post(Inventory, format!("/products/{product}/decrease"), SELLER),
            json!({ "orderId": nobody(), "quantity": 1 }),
            "a seller taking stock for an order",
        ),
        forbidden(
            post(Inventory, format!("/products/{product}/increase"), ALICE),
            json!({ "orderId": order }),
            "a customer giving stock back",
        ),
        forbidden(
            post(Delivery, "/deliveries", SELLER),
            delivery,
            "a seller starting a delivery",
        ),
        post(Delivery, format!("/deliveries/{order}/delivered"), ALICE)
            .bare(403, "a customer marking a parcel delivered"),
        post(Delivery, format!("/deliveries/{order}/delivered"), SELLER).bare(
            403,
            "a seller marking a parcel delivered (the receipt does)",
        ),
        // Another customer's order is answered as if it did not exist.
        post(Order, format!("/orders/{order}/receipt"), BOB).json(
            json!({}),
            404,
            "receipt of another customer's order",
        ),
        post(Order, format!("/orders/{order}/cancel"), BOB).json(
            json!({}),
            404,
            "cancelling another customer's order",
        ),
    ]);
    refuse_all(&t, cases).await;
    t.stop().await;
}

/// Commands the order, payment or product is in the wrong state for.
#[tokio::test(flavor = "multi_thread")]
async fn commands_in_the_wrong_state_conflict() {
    let t = spawn_shop().await;
    let product = t.product("Green tea", 1250, 10).await;
    let scarce = t.product("Saffron", 5000, 1).await;
    let registered = nobody();
    let registering = json!({ "productId": registered, "name": "Oolong", "price": 800 });
    let answer = t.post(Inventory, "/products", SELLER, registering).await;
    assert_eq!(answer.status, 201, "{answer:?}");

    // Awaiting its deposit, placed with an id of the client's.
    let waiting = nobody();
    let placing = json!({ "orderId": waiting, "productId": product, "quantity": 2 });
    let answer = t.post(Order, "/orders", ALICE, placing).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    t.payment_opened(&waiting).await;
    // Cancelled by its customer.
    let cancelled = t.place("alice", &product, 1).await;
    t.payment_opened(&cancelled).await;
    assert_eq!(t.cancel("alice", &cancelled).await.status, 201);
    // Paid and shipped.
    let shipped = t.place("alice", &product, 1).await;
    t.payment_opened(&shipped).await;
    assert_eq!(t.confirm_deposit(&shipped).await.status, 201);
    t.order_reaches(&shipped, "Shipping").await;
    // Received: closed.
    let closed = t.place("alice", &product, 1).await;
    t.payment_opened(&closed).await;
    assert_eq!(t.confirm_deposit(&closed).await.status, 201);
    t.order_reaches(&closed, "Shipping").await;
    let receipt = format!("/orders/{closed}/receipt");
    assert_eq!(t.post(Order, &receipt, ALICE, json!({})).await.status, 201);

    let conflict = |route: Route, body: Value, what, slug| route.json(body, 409, what).typed(slug);
    let receipt = |order: &str| post(Order, format!("/orders/{order}/receipt"), ALICE);
    let cancel = |order: &str, actor| post(Order, format!("/orders/{order}/cancel"), actor);
    let deposit = |order: &str| post(Payment, format!("/payments/{order}/deposit"), SELLER);
    let open = |order: &str| post(Payment, format!("/payments/{order}"), SAGA);
    let cancel_payment = |order: &str| post(Payment, format!("/payments/{order}/cancel"), SAGA);
    let cases = vec![
        conflict(
            post(Order, "/orders", ALICE),
            json!({ "orderId": waiting, "productId": product, "quantity": 3 }),
            "placing an order id again with another quantity",
            "already-placed",
        ),
        conflict(
            post(Order, "/orders", BOB),
            json!({ "orderId": waiting, "productId": product, "quantity": 2 }),
            "placing an order id again for another customer",
            "already-placed",
        ),
        conflict(
            receipt(&waiting),
            json!({}),
            "receipt before shipping",
            "not-shipped-yet",
        ),
        conflict(
            open(&waiting),
            json!({ "amount": 1 }),
            "opening the payment again with another amount",
            "already-opened",
        ),
        conflict(
            cancel_payment(&waiting),
            json!({ "reason": "DepositOverdue" }),
            "expiring a payment before it is due",
            "not-due-yet",
        ),
        conflict(
            deposit(&cancelled),
            json!({}),
            "confirming the deposit after the cancel",
            "payment-cancelled",
        ),
        conflict(
            deposit(&cancelled),
            json!({}),
            "confirming the deposit after the cancel, twice",
            "payment-cancelled",
        ),
        conflict(
            open(&cancelled),
            json!({ "amount": 1250 }),
            "opening a cancelled payment again",
            "payment-cancelled",
        ),
        conflict(
            receipt(&cancelled),
            json!({}),
            "receipt of a cancelled order",
            "order-cancelled",
        ),
        post(Order, format!("/orders/{cancelled}/shipment"), SAGA)
            .bare(409, "shipping a cancelled order")
            .typed("order-cancelled"),
        conflict(
            cancel(&shipped, ALICE),
            json!({}),
            "the customer cancelling a shipped order",
            "already-shipped",
        ),
        conflict(
            cancel(&shipped, SAGA),
            json!({ "reason": "OutOfStock" }),
            "the saga cancelling a shipped order",
            "already-shipped",
        ),
        conflict(
            cancel_payment(&shipped),
            json!({ "reason": "CustomerRequest" }),
            "the customer's cancel of a confirmed payment",
            "deposit-confirmed",
        ),
        conflict(
            cancel_payment(&shipped),
            json!({ "reason": "DepositOverdue" }),
            "expiring a confirmed payment",
            "deposit-confirmed",
        ),
        conflict(
            cancel(&closed, ALICE),
            json!({}),
            "the customer cancelling a closed order",
            "order-closed",
        ),
        conflict(
            cancel(&closed, SAGA),
            json!({ "reason": "DeliveryFailed" }),
            "the saga cancelling a closed order",
            "order-closed",
        ),
        conflict(
            post(Inventory, format!("/products/{scarce}/decrease"), SAGA),
            json!({ "orderId": nobody(), "quantity": 2 }),
            "taking more stock than there is",
            "out-of-stock",
        ),
        conflict(
            post(Inventory, "/products", SELLER),
            json!({ "productId": registered, "name": "Sencha", "price": 800 }),
            "registering a product id again with another name",
            "already-registered",
        ),
    ];
    refuse_all(&t, cases).await;
    t.stop().await;
}

/// Where a request goes and who sends it.
#[derive(Clone)]
struct Route {
    service: Service,
    method: Method,
    path: String,
    actor: Option<String>,
    headers: Vec<(&'static str, String)>,
}

fn call(method: Method, service: Service, path: impl Into<String>) -> Route {
    Route {
        service,
        method,
        path: path.into(),
        actor: None,
        headers: Vec::new(),
    }
}

/// A read, by a signed caller (services answer nobody else).
fn get(service: Service, path: impl Into<String>) -> Route {
    let mut route = call(Method::GET, service, path);
    route.actor = Some("system:test".to_string());
    route
}

/// A POST by `actor` (`ANONYMOUS`: without `x-actor`).
fn post(service: Service, path: impl Into<String>, actor: &str) -> Route {
    let mut route = call(Method::POST, service, path);
    route.actor = (!actor.is_empty()).then(|| actor.to_string());
    route
}

impl Route {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Route {
        self.headers.push((name, value.into()));
        self
    }

    /// The request with a JSON body must get `status`; `what` names it in failures.
    fn json(&self, body: Value, status: u16, what: &'static str) -> Case {
        self.raw(Some(JSON), body.to_string().into_bytes(), status, what)
    }

    fn raw(
        &self,
        content_type: Option<&'static str>,
        body: Vec<u8>,
        status: u16,
        what: &'static str,
    ) -> Case {
        Case {
            body: Some((content_type, body)),
            ..self.bare(status, what)
        }
    }

    /// The request without a body.
    fn bare(&self, status: u16, what: &'static str) -> Case {
        Case {
            what,
            route: self.clone(),
            body: None,
            status,
            problem: None,
            field: None,
        }
    }
}

/// One bad request and the answer it must get.
struct Case {
    what: &'static str,
    route: Route,
    /// Content type (if any) and bytes.
    body: Option<(Option<&'static str>, Vec<u8>)>,
    status: u16,
    /// The last part of the expected problem `type`, where it matters.
    problem: Option<&'static str>,
    /// The field the problem must name, where it matters.
    field: Option<&'static str>,
}

impl Case {
    fn typed(mut self, slug: &'static str) -> Case {
        self.problem = Some(slug);
        self
    }

    fn at(mut self, field: &'static str) -> Case {
        self.field = Some(field);
        self
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Route {
            service,
            method,
            path,
            actor,
            ..
        } = &self.route;
        write!(f, "{} ({method} {service:?} {path}", self.what)?;
        if let Some(actor) = actor {
            write!(f, " as {actor}")?;
        }
        write!(f, ")")
    }
}

async fn send(t: &TestShop, case: &Case) -> Answer {
    let route = &case.route;
    let url = format!("{}{}", t.shop.url(route.service), route.path);
    let mut request = t.http.request(route.method.clone(), url);
    if let Some(actor) = &route.actor {
        request = request
            .header("x-actor", actor)
            .header(servicekit::PROOF_HEADER, t.shop.identity().prove(actor));
    }
    for (name, value) in &route.headers {
        request = request.header(*name, value);
    }
    if let Some((content_type, body)) = &case.body {
        if let Some(content_type) = content_type {
            request = request.header("content-type", *content_type);
        }
        request = request.body(body.clone());
    }
    answer(request.send().await.unwrap()).await
}

/// What is wrong with the answer to a bad request, if anything.
fn mishandled(case: &Case, answer: &Answer) -> Option<String> {
    if !(400..500).contains(&answer.status) {
        return Some(format!(
            "{case}: answered {} {} instead of {}",
            answer.status, answer.body, case.status
        ));
    }
    let body = &answer.body;
    let mut wrong = Vec::new();
    if answer.status != case.status {
        wrong.push(format!(
            "status {} instead of {}",
            answer.status, case.status
        ));
    }
    if answer.content_type != "application/problem+json" {
        wrong.push(format!("content type {:?}", answer.content_type));
    }
    for field in ["type", "title", "detail"] {
        if !body[field].is_string() {
            wrong.push(format!("no string `{field}`"));
        }
    }
    if body["status"].as_u64() != Some(u64::from(answer.status)) {
        wrong.push("`status` in the body is not the answer's".to_string());
    }
    // A body that is not a JSON object has no field to name.
    let sent_object = case.body.as_ref().is_none_or(|(_, bytes)| {
        serde_json::from_slice::<Value>(bytes).is_ok_and(|v| v.is_object())
    });
    if answer.status == 422 && sent_object {
        match body["field"].as_str() {
            None => wrong.push("no `field` named".to_string()),
            Some(field) => {
                let name = field.rsplit('.').next().unwrap_or(field);
                if !body["detail"].as_str().unwrap_or("").contains(name) {
                    wrong.push(format!("the detail does not name {field}"));
                }
                if case.field.is_some_and(|expected| expected != field) {
                    wrong.push(format!("field {field} instead of {:?}", case.field));
                }
            }
        }
    }
    if let Some(slug) = case.problem {
        if answer.problem_type() != format!("/problems/{slug}") {
            wrong.push(format!("type {} instead of /problems/{slug}", body["type"]));
        }
    }
    (!wrong.is_empty()).then(|| format!("{case}: {}; body {body}", wrong.join(", ")))
}

/// The store's events, oldest first, as `stream type`; without `$` streams and the saga's
/// bookkeeping and lease table, which it stores on its own.
async fn stored(t: &TestShop) -> Vec<String> {
    t.all_events()
        .await
        .into_iter()
        .filter(|event| {
            !event.stream_id.starts_with(saga::CHECKPOINT_STREAM)
                && event.stream_id != saga::LEASE_STREAM
        })
        .map(|event| format!("{} {}", event.stream_id, event.event_type))
        .collect()
}

/// Lets the saga react to what was appended; a saga that does not settle is one more failure.
async fn settle(t: &TestShop, failures: &mut Vec<String>) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let wait = Duration::from_millis(SETTLE_MS_MAX);
    if tokio::time::timeout(wait, t.saga_settled()).await.is_err() {
        let status = t.get(Saga, "/saga/status").await.body;
        failures.push(format!("the saga did not settle: {status}"));
    }
}

/// Sends every case, then fails listing each mishandled one: a wrong answer, or events appended
/// by the request or by the saga reacting to it.
async fn refuse_all(t: &TestShop, cases: Vec<Case>) {
    t.saga_settled().await;
    let before = stored(t).await;
    let mut seen = before.clone();
    let mut failures = Vec::new();
    for case in &cases {
        let answer = send(t, case).await;
        failures.extend(mishandled(case, &answer));
        if stored(t).await != seen {
            // All the saga makes of it too is put down to this request.
            settle(t, &mut failures).await;
            let now = stored(t).await;
            failures.push(format!("{case}: appended {:?}", &now[seen.len()..]));
            seen = now;
        }
    }
    settle(t, &mut failures).await;
    let after = stored(t).await;
    if after != seen {
        failures.push(format!("later appended {:?}", &after[seen.len()..]));
    }
    assert!(
        failures.is_empty(),
        "{} failures with {} bad requests:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(after, before);
}

/// A path, a header count and a header over the limits, each answered with a problem.
fn oversized_heads(service: Service) -> Vec<Case> {
    use servicekit::{HEADERS_MAX, HEADER_BYTES_MAX, URI_BYTES_MAX};
    let long = format!("/orders/{}", "x".repeat(URI_BYTES_MAX));
    let mut many = get(service, "/health/ready");
    for i in 0..HEADERS_MAX {
        let name: &'static str = Box::leak(format!("x-pad-{i}").into_boxed_str());
        many = many.header(name, "1");
    }
    let large = get(service, "/health/ready").header("x-pad", "x".repeat(HEADER_BYTES_MAX));
    vec![
        get(service, long)
            .bare(414, "a path over the limit")
            .typed("uri-too-long"),
        many.bare(431, "headers over the count limit")
            .typed("headers-too-large"),
        large
            .bare(431, "a header over the size limit")
            .typed("headers-too-large"),
    ]
}

/// A fresh id nothing has.
fn nobody() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `valid` padded with trailing spaces (still valid JSON) to one byte over the body limit.
fn oversize(valid: &Value) -> Vec<u8> {
    format!("{:<width$}", valid.to_string(), width = BODY_BYTES_MAX + 1).into_bytes()
}
