//! The typed layer against the real embedded store on 127.0.0.1, with races that really race.

use std::sync::Arc;

use chrono::Utc;
use domain::order::{Order, OrderCommand, OrderEvent};
use domain::payment::{Payment, PaymentCommand, PaymentError, PaymentEvent};
use domain::product::{Product, ProductCommand, ProductError, ProductEvent, ProductState};
use domain::{
    CancelReason, CustomerId, Decider, Money, OrderId, OrderStatus, ProductId, ProductName,
    Quantity,
};
use eventlog::{
    Actor, ActorKind, Appended, EventLog, ExecuteError, Metadata, SNAPSHOT_EVERY_EVENTS,
};
use uuid::Uuid;

struct Harness {
    _server: estore::RunningStore,
    _dir: tempfile::TempDir,
    log: EventLog,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let server = estore::start(estore::Settings::ephemeral(dir.path()))
        .await
        .unwrap();
    let log = EventLog::connect(&server.connection_string()).unwrap();
    Harness {
        _server: server,
        _dir: dir,
        log,
    }
}

fn metadata(correlation: Uuid, kind: ActorKind, id: &str) -> Metadata {
    Metadata {
        correlation_id: correlation,
        causation_id: Uuid::new_v4(),
        actor: Actor {
            kind,
            id: id.into(),
        },
        at: Utc::now(),
        request_id: Some("req-1".into()),
        trace_parent: None,
    }
}

/// Places `count` orders, each in its own stream.
async fn place_orders(h: &Harness, count: usize) {
    for _ in 0..count {
        let order_id = OrderId::new();
        let meta = metadata(order_id.as_uuid(), ActorKind::Customer, "alice");
        h.log
            .execute::<Order>(&format!("order-{order_id}"), place(order_id), &meta)
            .await
            .unwrap();
    }
}

fn place(order_id: OrderId) -> OrderCommand {
    OrderCommand::Place {
        order_id,
        customer_id: CustomerId::parse("alice").unwrap(),
        // One product per order id, so a repeated placement is the same placement.
        product_id: ProductId::from(order_id.as_uuid()),
        quantity: Quantity::parse(2).unwrap(),
        unit_price: Money::cents(1250).unwrap(),
        at: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_appends_its_events_with_data_and_metadata_and_a_repeat_appends_nothing() {
    let h = harness().await;
    let order_id = OrderId::new();
    let stream = format!("order-{order_id}");
    let meta = metadata(order_id.as_uuid(), ActorKind::Customer, "alice");
    let first = h
        .log
        .execute::<Order>(&stream, place(order_id), &meta)
        .await
        .unwrap();
    assert_eq!(first.events.len(), 1);
    assert_eq!(first.revision, Some(0));
    let again = h
        .log
        .execute::<Order>(&stream, place(order_id), &meta)
        .await
        .unwrap();
    assert!(
        again.events.is_empty(),
        "a repeated command appends nothing"
    );
    assert_eq!(again.revision, Some(0));
    // Placing starts the stream: tried first as if there were none, then read and decided on
    // what is there.
    assert_eq!(again.state, first.state);
    assert_eq!(again.position, first.position);

    let stored = h.log.read::<OrderEvent>(&stream).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].metadata.as_ref(), Some(&meta));
    let raw = h
        .log
        .client()
        .read_stream(stream.as_str(), &Default::default())
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    let data: serde_json::Value = raw.get_original_event().as_json().unwrap();
    assert_eq!(data["orderId"], order_id.to_string());
    assert_eq!(data["orderStatus"], "OrderPlaced");
    let metadata_json: serde_json::Value =
        serde_json::from_slice(&raw.get_original_event().custom_metadata).unwrap();
    assert_eq!(metadata_json["$correlationId"], order_id.to_string());
    assert_eq!(metadata_json["$causationId"], meta.causation_id.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_the_domains_errors_and_write_nothing() {
    let h = harness().await;
    let stream = format!("order-{}", OrderId::new());
    let meta = metadata(Uuid::new_v4(), ActorKind::Customer, "alice");
    let receipt = OrderCommand::ConfirmReceipt {
        customer_id: CustomerId::parse("alice").unwrap(),
        at: Utc::now(),
    };
    let refused = h.log.execute::<Order>(&stream, receipt, &meta).await;
    assert!(matches!(
        refused,
        Err(ExecuteError::Rejected(domain::order::OrderError::NotPlaced))
    ));
    assert!(h.log.read::<OrderEvent>(&stream).await.unwrap().is_empty());
}

/// A new product without stock: its stream and the seller's metadata.
async fn registered_product(log: &EventLog) -> (String, Metadata) {
    let product_id = ProductId::new();
    let stream = format!("product-{product_id}");
    let seller = metadata(product_id.as_uuid(), ActorKind::Seller, "seller");
    let register = ProductCommand::Register {
        product_id,
        name: ProductName::parse("Tea").unwrap(),
        price: Money::cents(500).unwrap(),
        initial_stock: None,
        at: Utc::now(),
    };
    log.execute::<Product>(&stream, register, &seller)
        .await
        .unwrap();
    (stream, seller)
}

/// 30 orders race for 20 units on one product stream: exactly 20 take one unit each, the rest
/// are told the stock is out, and the stock ends at zero — never below.
#[tokio::test(flavor = "multi_thread")]
async fn racing_orders_never_oversell_a_product() {
    let h = harness().await;
    let (stream, seller) = registered_product(&h.log).await;
    let add = ProductCommand::AddStock {
        quantity: Quantity::parse_stock(20).unwrap(),
        change_id: None,
        at: Utc::now(),
    };
    h.log
        .execute::<Product>(&stream, add, &seller)
        .await
        .unwrap();

    let log = Arc::new(h.log.clone());
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let log = Arc::clone(&log);
            let stream = stream.clone();
            tokio::spawn(async move {
                let order_id = OrderId::new();
                let take = ProductCommand::DecreaseForOrder {
                    order_id,
                    quantity: Quantity::parse(1).unwrap(),
                    // Each order is new: it holds nothing yet.
                    held: domain::reservation::Held::Nothing,
                    at: Utc::now(),
                };
                log.execute::<Product>(
                    &stream,
                    take,
                    &metadata(order_id.as_uuid(), ActorKind::System, "saga"),
                )
                .await
            })
        })
        .collect();
    let (mut taken, mut out_of_stock) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(executed) => {
                assert_eq!(executed.events.len(), 1);
                taken += 1;
            }
            Err(ExecuteError::Rejected(ProductError::OutOfStock { .. })) => out_of_stock += 1,
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!((taken, out_of_stock), (20, 10));
    let ProductState::Registered(product) = h.log.load::<Product>(&stream).await.unwrap().state
    else {
        panic!("registered")
    };
    assert_eq!(product.stock, 0);
    let decreases = h
        .log
        .read::<ProductEvent>(&stream)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r.event, ProductEvent::QtyDecreased(_)))
        .count();
    assert_eq!(decreases, 20);
}

/// The seller adds one unit of stock.
fn one_more_unit() -> ProductCommand {
    ProductCommand::AddStock {
        quantity: Quantity::parse_stock(1).unwrap(),
        change_id: Some(Uuid::new_v4()),
        at: Utc::now(),
    }
}

/// An aggregate that keeps snapshots gets one when its stream is created and one every
/// `SNAPSHOT_EVERY_EVENTS` after; loading reads back to the latest only, and folds to the same
/// state as the whole stream.
#[tokio::test(flavor = "multi_thread")]
async fn loading_reads_back_to_the_latest_snapshot_only() {
    let h = harness().await;
    let (stream, seller) = registered_product(&h.log).await;
    let fresh = h.log.load::<Product>(&stream).await.unwrap();
    assert_eq!(
        fresh.since_snapshot,
        Some(0),
        "a count is written at creation"
    );
    let adds = 2 * SNAPSHOT_EVERY_EVENTS + 10;
    for _ in 0..adds {
        let add = one_more_unit();
        h.log
            .execute::<Product>(&stream, add, &seller)
            .await
            .unwrap();
    }
    let all = h.log.read::<ProductEvent>(&stream).await.unwrap();
    let counts: Vec<u64> = all
        .iter()
        .filter(|r| matches!(r.event, ProductEvent::StockCounted(_)))
        .map(|r| r.revision)
        .collect();
    assert_eq!(
        counts.len(),
        3,
        "at creation, then every {SNAPSHOT_EVERY_EVENTS}: {counts:?}"
    );
    let loaded = h.log.load::<Product>(&stream).await.unwrap();
    let since = loaded.since_snapshot.unwrap();
    assert!(
        since < SNAPSHOT_EVERY_EVENTS,
        "{since} events past the latest count"
    );
    assert_eq!(loaded.revision, all.last().map(|r| r.revision));
    assert_eq!(loaded.state, Product::fold(all.iter().map(|r| &r.event)));
    let ProductState::Registered(product) = loaded.state else {
        panic!("registered")
    };
    assert_eq!(product.stock as usize, adds);
}

/// A writer that keeps its aggregate loaded (`append_decided_in_place`) holds, after every
/// append — snapshots written on the way included —, exactly what loading the stream gives;
/// a conflict leaves it as it was.
#[tokio::test(flavor = "multi_thread")]
async fn appending_in_place_keeps_what_a_load_would_give() {
    let h = harness().await;
    let (stream, seller) = registered_product(&h.log).await;
    let mut kept = h.log.load::<Product>(&stream).await.unwrap();
    for i in 0..SNAPSHOT_EVERY_EVENTS + 5 {
        let appended = add_in_place(&h.log, &stream, &mut kept, &seller).await;
        assert!(matches!(appended, Appended::Written { .. }), "append {i}");
        let loaded = h.log.load::<Product>(&stream).await.unwrap();
        assert_eq!(
            (
                &kept.state,
                kept.revision,
                kept.position,
                kept.since_snapshot
            ),
            (
                &loaded.state,
                loaded.revision,
                loaded.position,
                loaded.since_snapshot
            ),
            "after append {i}"
        );
    }
    let mut stale = h.log.load::<Product>(&stream).await.unwrap();
    stale.revision = stale.revision.map(|r| r - 1);
    let before = (stale.state.clone(), stale.revision, stale.position);
    let appended = add_in_place(&h.log, &stream, &mut stale, &seller).await;
    assert!(matches!(appended, Appended::Conflict));
    assert_eq!((stale.state, stale.revision, stale.position), before);
}

async fn add_in_place(
    log: &EventLog,
    stream: &str,
    product: &mut eventlog::Loaded<ProductState>,
    seller: &Metadata,
) -> Appended {
    let events = Product::decide(&product.state, one_more_unit()).unwrap();
    log.append_decided_in_place::<Product>(stream, product, &events, seller)
        .await
        .unwrap()
}

/// A follower that hands nothing out is counted behind by every event of its streams appended
/// since (other streams not counted), within one count's interval.
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_is_counted_behind_by_the_events_of_its_streams_it_did_not_hand_out() {
    let h = harness().await;
    let _idle = h.log.follow("behind-probe", &["order-"], None);
    place_orders(&h, 3).await;
    registered_product(&h.log).await;
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_secs(2 * eventlog::LAG_MEASURE_S);
    while eventlog::events_behind("behind-probe") != Some(3) {
        assert!(
            std::time::Instant::now() < deadline,
            "counted {:?} behind, not 3",
            eventlog::events_behind("behind-probe")
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The customer's cancel and the seller's confirmation race on the payment: exactly one wins,
/// every time.
#[tokio::test(flavor = "multi_thread")]
async fn cancel_and_deposit_confirmation_race_with_exactly_one_winner() {
    let h = harness().await;
    let log = Arc::new(h.log.clone());
    for _ in 0..50 {
        let order_id = OrderId::new();
        let stream = format!("payment-{order_id}");
        let open = PaymentCommand::Open {
            order_id,
            amount: Money::cents(2500).unwrap(),
            deposit_reference: "MM-1".into(),
            account: "DE89".into(),
            due_at: Utc::now() + chrono::Duration::days(3),
            at: Utc::now(),
        };
        log.execute::<Payment>(
            &stream,
            open,
            &metadata(order_id.as_uuid(), ActorKind::System, "saga"),
        )
        .await
        .unwrap();
        let cancel = {
            let (log, stream) = (Arc::clone(&log), stream.clone());
            tokio::spawn(async move {
                log.execute::<Payment>(
                    &stream,
                    PaymentCommand::CancelByCustomer {
                        order_id,
                        at: Utc::now(),
                    },
                    &metadata(order_id.as_uuid(), ActorKind::Customer, "alice"),
                )
                .await
            })
        };
        let confirm = {
            let (log, stream) = (Arc::clone(&log), stream.clone());
            tokio::spawn(async move {
                log.execute::<Payment>(
                    &stream,
                    PaymentCommand::ConfirmDeposit { at: Utc::now() },
                    &metadata(order_id.as_uuid(), ActorKind::Seller, "seller"),
                )
                .await
            })
        };
        let (cancel, confirm) = (cancel.await.unwrap(), confirm.await.unwrap());
        let events: Vec<_> = log
            .read::<PaymentEvent>(&stream)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect();
        let cancelled = events.iter().any(|e| matches!(e, PaymentEvent::PayCanceled(c) if c.reason == CancelReason::CustomerRequest && c.order_status == OrderStatus::Cancelled));
        let checked = events
            .iter()
            .any(|e| matches!(e, PaymentEvent::PayChecked(_)));
        assert!(cancelled ^ checked, "exactly one wins: {events:?}");
        if cancelled {
            assert!(cancel.is_ok());
            assert!(
                matches!(
                    confirm,
                    Err(ExecuteError::Rejected(PaymentError::Cancelled))
                ),
                "{confirm:?}"
            );
        } else {
            assert!(confirm.is_ok());
            assert!(
                matches!(
                    cancel,
                    Err(ExecuteError::Rejected(
                        PaymentError::DepositAlreadyConfirmed
                    ))
                ),
                "{cancel:?}"
            );
        }
    }
}

/// Skipping a type the aggregate does not know would make history vanish (a renamed event
/// type): loading the stream fails, naming it, and a command on it writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_event_type_on_an_aggregates_stream_is_an_error() {
    let h = harness().await;
    let order_id = OrderId::new();
    let stream = format!("order-{order_id}");
    let meta = metadata(order_id.as_uuid(), ActorKind::Customer, "alice");
    h.log
        .execute::<Order>(&stream, place(order_id), &meta)
        .await
        .unwrap();
    let renamed =
        eventstore::EventData::json("OrderWasShipped", &serde_json::json!({"x": 1})).unwrap();
    h.log
        .client()
        .append_to_stream(stream.as_str(), &Default::default(), renamed)
        .await
        .unwrap();
    let error = h.log.load::<Order>(&stream).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unknown event type OrderWasShipped"),
        "{error}"
    );
    let shipped = h
        .log
        .execute::<Order>(&stream, OrderCommand::MarkShipped { at: Utc::now() }, &meta)
        .await;
    assert!(matches!(shipped, Err(ExecuteError::Log(_))), "{shipped:?}");
    assert_eq!(
        h.log
            .read::<OrderEvent>(&stream)
            .await
            .map(|e| e.len())
            .ok(),
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_catching_up_that_hands_out_nothing_is_stalled_and_a_live_one_is_not() {
    let h = harness().await;
    let stall = std::time::Duration::from_millis(200);
    place_orders(&h, 3).await;
    let stalled = || {
        eventlog::stalled_followers(stall)
            .iter()
            .any(|(name, _)| *name == "test-stall")
    };
    let mut follower = h.log.follow("test-stall", &["order-"], None);
    // One event handed out, then its owner stops asking while two more wait.
    assert!(matches!(
        follower.next().await,
        eventlog::Followed::Event(_)
    ));
    tokio::time::sleep(stall * 2).await;
    assert!(stalled(), "a follower that stopped catching up is not seen");
    // Caught up and live: waiting for new events is not being stuck.
    while !matches!(follower.next().await, eventlog::Followed::CaughtUp) {}
    tokio::time::sleep(stall * 2).await;
    assert!(!stalled(), "a live follower is taken for stuck");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_followers_lag_in_events_counts_its_streams_stored_after_it() {
    let h = harness().await;
    place_orders(&h, 3).await;
    let prefixes = ["order-".to_string()];
    assert_eq!(h.log.events_after(&prefixes, None).await.unwrap(), 3);
    let mut follower = h.log.follow("test-lag", &["order-"], None);
    let eventlog::Followed::Event(first) = follower.next().await else {
        panic!("no first event");
    };
    assert_eq!(
        h.log
            .events_after(&prefixes, Some(first.position))
            .await
            .unwrap(),
        2
    );
    let others = ["product-".to_string()];
    assert_eq!(h.log.events_after(&others, None).await.unwrap(), 0);
}

/// Loads that stop at a snapshot, many at once on one connection, all succeed: a read left
/// before its end has the server's frames for it still in flight, and the client's HTTP/2
/// closes a connection on which more than 1,024 of those arrive for streams it has forgotten
/// (GOAWAY "too_many_internal_resets": every call on it fails), so every read is read to its end.
#[tokio::test(flavor = "multi_thread")]
async fn many_loads_at_once_that_stop_at_a_snapshot_keep_the_connection() {
    const LOADERS: usize = 64;
    const LOADS_EACH: usize = 60;
    let h = harness().await;
    let (stream, seller) = registered_product(&h.log).await;
    for _ in 0..SNAPSHOT_EVERY_EVENTS + 5 {
        h.log
            .execute::<Product>(&stream, one_more_unit(), &seller)
            .await
            .unwrap();
    }
    let loaded = h.log.load::<Product>(&stream).await.unwrap();
    assert!(
        loaded.since_snapshot.unwrap() + 10 < SNAPSHOT_EVERY_EVENTS,
        "the load stops well before the read's end"
    );
    let loaders: Vec<_> = (0..LOADERS)
        .map(|_| {
            let (log, stream) = (h.log.clone(), stream.clone());
            tokio::spawn(async move {
                for _ in 0..LOADS_EACH {
                    log.load::<Product>(&stream).await?;
                }
                Ok::<_, eventlog::LogError>(())
            })
        })
        .collect();
    for loader in loaders {
        loader.await.unwrap().unwrap();
    }
}
