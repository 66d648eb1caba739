use std::collections::HashSet;

use eventstore::{
    ExpectedRevision, Position, StreamPosition, SubscribeToAllOptions, SubscribeToStreamOptions,
    SubscriptionEvent, SubscriptionFilter,
};

use crate::helpers::*;

/// The next event of a subscription, skipping protocol notices.
async fn next_event(subscription: &mut eventstore::Subscription) -> eventstore::ResolvedEvent {
    within("next subscription event", subscription.next())
        .await
        .expect("subscription event")
}

/// Reads notices and events until `caught_up`; returns the events seen before it.
async fn until_caught_up(
    subscription: &mut eventstore::Subscription,
) -> Vec<eventstore::ResolvedEvent> {
    let mut events = Vec::new();
    loop {
        match within("subscription", subscription.next_subscription_event())
            .await
            .expect("event")
        {
            SubscriptionEvent::EventAppeared(event) => events.push(event),
            SubscriptionEvent::CaughtUp => return events,
            _ => {}
        }
    }
}

fn n(event: &eventstore::ResolvedEvent) -> u64 {
    n_of(event)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_subscription_moves_from_history_to_live() {
    let store = spawn_store().await;
    let stream = stream_with(&store, "order", 0..5).await;
    let mut subscription = store
        .client
        .subscribe_to_stream(
            stream.as_str(),
            &SubscribeToStreamOptions::default().start_from(StreamPosition::Start),
        )
        .await;
    let history = until_caught_up(&mut subscription).await;
    assert_eq!(history.iter().map(n).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    append(
        &store.client,
        &stream,
        ExpectedRevision::Exact(4),
        (5..8).map(|n| event("OrderPlaced", n)).collect(),
    )
    .await
    .unwrap();
    for expected in 5..8 {
        assert_eq!(n(&next_event(&mut subscription).await), expected);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_from_a_revision_starts_after_it() {
    let store = spawn_store().await;
    let stream = stream_with(&store, "order", 0..5).await;
    let mut subscription = store
        .client
        .subscribe_to_stream(
            stream.as_str(),
            &SubscribeToStreamOptions::default().start_from(StreamPosition::Position(2)),
        )
        .await;
    assert_eq!(
        until_caught_up(&mut subscription)
            .await
            .iter()
            .map(n)
            .collect::<Vec<_>>(),
        [3, 4]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_to_a_stream_not_yet_written_waits_for_it() {
    let store = spawn_store().await;
    let stream = unique_stream("later");
    let mut subscription = store
        .client
        .subscribe_to_stream(
            stream.as_str(),
            &SubscribeToStreamOptions::default().start_from(StreamPosition::Start),
        )
        .await;
    assert!(until_caught_up(&mut subscription).await.is_empty());
    append(
        &store.client,
        &stream,
        ExpectedRevision::NoStream,
        vec![event("OrderPlaced", 0)],
    )
    .await
    .unwrap();
    assert_eq!(n(&next_event(&mut subscription).await), 0);
}

/// Writers keep appending while the subscription catches up: every event arrives once, in
/// order, across the switch from disk to live.
#[tokio::test(flavor = "multi_thread")]
async fn no_gap_and_no_duplicate_while_writers_race_the_catch_up() {
    let store = spawn_store().await;
    let prefix = unique_stream("race");
    let writers = 16u64;
    let per_writer = 50u64;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let client = store.client.clone();
        let stream = format!("{prefix}-{writer}");
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                append(
                    &client,
                    &stream,
                    ExpectedRevision::Any,
                    vec![event("OrderPlaced", writer * 1000 + i)],
                )
                .await
                .unwrap();
            }
        }));
    }
    // Subscribe while the writers are going.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let filter = SubscriptionFilter::on_stream_name().add_prefix(&prefix);
    let mut subscription = store
        .client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(StreamPosition::Start)
                .filter(filter),
        )
        .await;
    let mut seen = HashSet::new();
    let mut last_position = 0;
    while (seen.len() as u64) < writers * per_writer {
        let event = next_event(&mut subscription).await;
        let position = event.get_original_event().position;
        assert!(position.commit > last_position, "in log order");
        last_position = position.commit;
        assert!(seen.insert(n(&event)), "duplicate {}", n(&event));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn all_filters_match_stream_prefixes_or_regexes_with_look_around_and_send_checkpoints() {
    let store = spawn_store().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let orders = format!("order{tag}");
    let payments = format!("payment{tag}");
    for i in 0..6u64 {
        append(
            &store.client,
            &format!("{orders}-{i}"),
            ExpectedRevision::Any,
            vec![event("OrderPlaced", i)],
        )
        .await
        .unwrap();
        append(
            &store.client,
            &format!("{payments}-{i}"),
            ExpectedRevision::Any,
            vec![event(&format!("PayPlaced{tag}"), 100 + i)],
        )
        .await
        .unwrap();
    }
    // Stream-name prefix, with a checkpoint every 2 considered events.
    let by_stream = SubscriptionFilter::on_stream_name()
        .add_prefix(&orders)
        .max(2);
    let mut subscription = store
        .client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(StreamPosition::Start)
                .filter(by_stream),
        )
        .await;
    let mut events = Vec::new();
    let mut checkpoints: Vec<Position> = Vec::new();
    while events.len() < 6 {
        match within("filtered", subscription.next_subscription_event())
            .await
            .unwrap()
        {
            SubscriptionEvent::EventAppeared(e) => events.push(n(&e)),
            SubscriptionEvent::Checkpoint(p) => checkpoints.push(p),
            _ => {}
        }
    }
    assert_eq!(events, [0, 1, 2, 3, 4, 5]);
    // 11 events considered before the 6th order event: at least 5 checkpoints, increasing.
    assert!(checkpoints.len() >= 5, "checkpoints: {checkpoints:?}");
    assert!(checkpoints.windows(2).all(|w| w[0].commit < w[1].commit));

    // Event-type regex.
    let by_type = SubscriptionFilter::on_event_type().regex(format!("^PayPlaced{tag}$"));
    let mut subscription = store
        .client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(StreamPosition::Start)
                .filter(by_type),
        )
        .await;
    let mut payments_seen = Vec::new();
    while payments_seen.len() < 6 {
        payments_seen.push(n(&next_event(&mut subscription).await));
    }
    assert_eq!(payments_seen, [100, 101, 102, 103, 104, 105]);

    // A stream-name regex with look-ahead, as the official clients' default filters have
    // (evaluated as KurrentDB does): every stream of this test but the payments.
    let not_payments = SubscriptionFilter::on_stream_name()
        .regex(format!("^(?!payment{tag})(order|payment){tag}-"));
    let mut subscription = store
        .client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(StreamPosition::Start)
                .filter(not_payments),
        )
        .await;
    let mut orders_seen = Vec::new();
    while orders_seen.len() < 6 {
        orders_seen.push(n(&next_event(&mut subscription).await));
    }
    assert_eq!(orders_seen, [0, 1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_all_subscription_from_a_position_starts_after_it_and_from_end_sees_only_new_events() {
    let store = spawn_store().await;
    let stream = unique_stream("order");
    let written = append(
        &store.client,
        &stream,
        ExpectedRevision::NoStream,
        (0..3).map(|n| event("OrderPlaced", n)).collect(),
    )
    .await
    .unwrap();
    let filter = || SubscriptionFilter::on_stream_name().add_prefix(&stream);
    let mut from_end = store
        .client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(StreamPosition::End)
                .filter(filter()),
        )
        .await;
    assert!(until_caught_up(&mut from_end).await.is_empty());
    let mut after_last = store
        .client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(StreamPosition::Position(written.position))
                .filter(filter()),
        )
        .await;
    assert!(
        until_caught_up(&mut after_last).await.is_empty(),
        "exclusive start"
    );
    append(
        &store.client,
        &stream,
        ExpectedRevision::Exact(2),
        vec![event("OrderClosed", 3)],
    )
    .await
    .unwrap();
    assert_eq!(n(&next_event(&mut from_end).await), 3);
    assert_eq!(n(&next_event(&mut after_last).await), 3);
}

/// A subscriber that stops reading while thousands of commits go by: the bounded live feed
/// overflows, the server goes back to disk for it, and it still gets every event once, in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_subscriber_falls_back_to_disk_and_misses_nothing() {
    let limits = estore::Limits {
        live_feed_commits_max: 4,
        ..estore::Limits::default()
    };
    let store = spawn_store_with(limits).await;
    let stream = unique_stream("slow");
    let mut subscription = store
        .client
        .subscribe_to_stream(
            stream.as_str(),
            &SubscribeToStreamOptions::default().start_from(StreamPosition::Start),
        )
        .await;
    assert!(until_caught_up(&mut subscription).await.is_empty());
    // ~30 MB in 300 commits: far more than the HTTP/2 windows and the server's buffer hold, so
    // the server-side subscription stalls while the feed moves on.
    let big = "y".repeat(10_000);
    let total = 3000u64;
    for chunk in 0..300u64 {
        let events = (0..10u64)
            .map(|i| {
                eventstore::EventData::json(
                    "StockAdded",
                    &serde_json::json!({"n": chunk * 10 + i, "pad": big}),
                )
                .unwrap()
            })
            .collect();
        append(&store.client, &stream, ExpectedRevision::Any, events)
            .await
            .unwrap();
    }
    for expected in 0..total {
        let event = next_event(&mut subscription).await;
        assert_eq!(n(&event), expected);
        assert_eq!(event.get_original_event().revision, expected);
    }
    let fell_behind = store
        .server
        .as_ref()
        .unwrap()
        .stats()
        .subscriptions_fell_behind();
    assert!(
        fell_behind > 0,
        "the test must exercise the fall-back to disk"
    );
}

/// Stopping the server must not wait forever for subscriptions that never end by themselves.
#[tokio::test(flavor = "multi_thread")]
async fn stop_ends_even_with_an_open_subscription() {
    let mut store = spawn_store().await;
    let stream = unique_stream("open");
    let mut subscription = store
        .client
        .subscribe_to_stream(
            stream.as_str(),
            &SubscribeToStreamOptions::default().start_from(StreamPosition::Start),
        )
        .await;
    assert!(until_caught_up(&mut subscription).await.is_empty());
    let server = store.server.take().unwrap();
    let started = std::time::Instant::now();
    within("stop", server.stop()).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// A commit too large for the live feed reaches subscribers from disk.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_too_large_for_the_live_feed_still_reaches_subscribers() {
    let store = spawn_store().await;
    let stream = unique_stream("large");
    let mut subscription = store
        .client
        .subscribe_to_stream(
            stream.as_str(),
            &SubscribeToStreamOptions::default().start_from(StreamPosition::Start),
        )
        .await;
    assert!(until_caught_up(&mut subscription).await.is_empty());
    let big = "b".repeat(estore::storage::LIVE_FEED_COMMIT_BYTES_MAX / 2 + 1);
    let events = (0..3u64)
        .map(|n| {
            eventstore::EventData::json("StockAdded", &serde_json::json!({"n": n, "pad": big}))
                .unwrap()
        })
        .collect();
    append(&store.client, &stream, ExpectedRevision::NoStream, events)
        .await
        .unwrap();
    append(
        &store.client,
        &stream,
        ExpectedRevision::Exact(2),
        vec![event("StockAdded", 3)],
    )
    .await
    .unwrap();
    for expected in 0..4 {
        assert_eq!(n(&next_event(&mut subscription).await), expected);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_all_subscription_from_the_end_position_sees_only_new_events() {
    let store = spawn_store().await;
    let stream = stream_with(&store, "end", 0..1).await;
    let filter = SubscriptionFilter::on_stream_name().add_prefix(&stream);
    let end = Position {
        commit: u64::MAX,
        prepare: u64::MAX,
    };
    let mut subscription = store
        .client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(StreamPosition::Position(end))
                .filter(filter),
        )
        .await;
    assert!(until_caught_up(&mut subscription).await.is_empty());
    append(
        &store.client,
        &stream,
        ExpectedRevision::Exact(0),
        vec![event("OrderPlaced", 1)],
    )
    .await
    .unwrap();
    assert_eq!(n(&next_event(&mut subscription).await), 1);
}
