//! Persistent subscriptions through the official client: groups created, updated, listed and
//! deleted; events shared by competing consumers under each strategy, acknowledged, retried,
//! timed out, parked and replayed; checkpoints that survive a restart.

use std::collections::HashSet;
use std::time::Duration;

use eventstore::{
    Client, Error, ExpectedRevision, NakAction, PersistentSubscription,
    PersistentSubscriptionEvent, PersistentSubscriptionOptions, PersistentSubscriptionToAllOptions,
    ReplayParkedMessagesOptions, StreamPosition, SubscribeToPersistentSubscriptionOptions,
    SubscriptionFilter, SystemConsumerStrategy,
};

use crate::helpers::*;

fn from_start() -> PersistentSubscriptionOptions {
    PersistentSubscriptionOptions::default().start_from(StreamPosition::Start)
}

async fn consumer(
    client: &Client,
    stream: &str,
    group: &str,
    buffer: usize,
) -> PersistentSubscription {
    client
        .subscribe_to_persistent_subscription(
            stream,
            group,
            &SubscribeToPersistentSubscriptionOptions::default().buffer_size(buffer),
        )
        .await
        .expect("subscribed")
}

/// The next event and its retry count.
async fn next(subscription: &mut PersistentSubscription) -> (eventstore::ResolvedEvent, usize) {
    loop {
        let event = within("the next event", subscription.next_subscription_event())
            .await
            .expect("an event");
        if let PersistentSubscriptionEvent::EventAppeared { retry_count, event } = event {
            return (event, retry_count);
        }
    }
}

async fn numbers(client: &Client, stream: &str, count: u64) {
    let events = (0..count).map(|n| event("OrderPlaced", n)).collect();
    append(client, stream, ExpectedRevision::Any, events)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_hands_out_events_and_they_are_acknowledged() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = unique_stream("order");
    numbers(client, &stream, 3).await;
    client
        .create_persistent_subscription(stream.as_str(), "billing", &from_start())
        .await
        .unwrap();
    let again = client
        .create_persistent_subscription(stream.as_str(), "billing", &from_start())
        .await;
    assert!(
        matches!(again, Err(Error::ResourceAlreadyExists)),
        "{again:?}"
    );

    let mut subscription = consumer(client, &stream, "billing", 10).await;
    for n in 0..3 {
        let (event, retry_count) = next(&mut subscription).await;
        assert_eq!((n_of(&event), retry_count), (n, 0));
        subscription.ack(event).await.unwrap();
    }
    numbers(client, &stream, 1).await;
    let (live, _) = next(&mut subscription).await;
    assert_eq!(live.get_original_event().revision, 3);
    subscription.ack(live).await.unwrap();

    let info = client
        .get_persistent_subscription_info(stream.as_str(), "billing", &Default::default())
        .await
        .unwrap();
    assert_eq!(info.group_name, "billing");
    assert_eq!(info.connections.len(), 1);
    assert_eq!(info.stats.total_items, 4);
    let listed = client
        .list_persistent_subscriptions_for_stream(stream.as_str(), &Default::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);

    client
        .delete_persistent_subscription(stream.as_str(), "billing", &Default::default())
        .await
        .unwrap();
    let gone = client
        .delete_persistent_subscription(stream.as_str(), "billing", &Default::default())
        .await;
    assert!(matches!(gone, Err(Error::ResourceNotFound)), "{gone:?}");
    let ended = within("the consumer is dropped", subscription.next()).await;
    assert!(ended.is_err(), "a deleted group's consumers are dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_shares_events_between_competing_consumers_once_each() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = unique_stream("order");
    client
        .create_persistent_subscription(stream.as_str(), "workers", &from_start())
        .await
        .unwrap();
    let mut first = consumer(client, &stream, "workers", 5).await;
    let mut second = consumer(client, &stream, "workers", 5).await;
    numbers(client, &stream, 20).await;
    let mut seen = Vec::new();
    let mut per_consumer = [0, 0];
    while seen.len() < 20 {
        tokio::select! {
            (event, _) = next(&mut first) => { seen.push(n_of(&event)); per_consumer[0] += 1; first.ack(event).await.unwrap(); }
            (event, _) = next(&mut second) => { seen.push(n_of(&event)); per_consumer[1] += 1; second.ack(event).await.unwrap(); }
        }
    }
    let distinct: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), 20, "each event once: {seen:?}");
    assert!(
        per_consumer[0] > 0 && per_consumer[1] > 0,
        "{per_consumer:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dispatch_to_single_gives_everything_to_the_first_consumer_with_room() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = unique_stream("order");
    let options = from_start().consumer_strategy_name(SystemConsumerStrategy::DispatchToSingle);
    client
        .create_persistent_subscription(stream.as_str(), "single", &options)
        .await
        .unwrap();
    let mut first = consumer(client, &stream, "single", 50).await;
    let mut second = consumer(client, &stream, "single", 50).await;
    numbers(client, &stream, 10).await;
    for n in 0..10 {
        let (event, _) = next(&mut first).await;
        assert_eq!(n_of(&event), n);
        first.ack(event).await.unwrap();
    }
    let idle = tokio::time::timeout(Duration::from_millis(300), second.next()).await;
    assert!(idle.is_err(), "the second consumer got nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn pinned_keeps_each_stream_on_one_consumer() {
    let store = spawn_store().await;
    let client = &store.client;
    let prefix = format!("pin{}-", uuid::Uuid::new_v4().simple());
    let options = PersistentSubscriptionToAllOptions::default()
        .start_from(StreamPosition::End)
        .filter(SubscriptionFilter::on_stream_name().add_prefix(&prefix))
        .consumer_strategy_name(SystemConsumerStrategy::Pinned);
    client
        .create_persistent_subscription_to_all("pinned", &options)
        .await
        .unwrap();
    let subscribe = SubscribeToPersistentSubscriptionOptions::default().buffer_size(100);
    let mut first = client
        .subscribe_to_persistent_subscription_to_all("pinned", &subscribe)
        .await
        .unwrap();
    let mut second = client
        .subscribe_to_persistent_subscription_to_all("pinned", &subscribe)
        .await
        .unwrap();
    for round in 0..5 {
        for s in 0..4 {
            append(
                client,
                &format!("{prefix}{s}"),
                ExpectedRevision::Any,
                vec![event("OrderPlaced", round)],
            )
            .await
            .unwrap();
        }
    }
    let mut owner = std::collections::HashMap::new();
    let mut received = 0;
    while received < 20 {
        let (index, event) = tokio::select! {
            (event, _) = next(&mut first) => (0, event),
            (event, _) = next(&mut second) => (1, event),
        };
        let stream = event.get_original_event().stream_id.clone();
        assert!(
            stream.starts_with(&prefix),
            "only the filter's streams: {stream}"
        );
        assert_eq!(
            *owner.entry(stream.clone()).or_insert(index),
            index,
            "{stream} moved"
        );
        let to = if index == 0 { &mut first } else { &mut second };
        to.ack(event).await.unwrap();
        received += 1;
    }
    client
        .delete_persistent_subscription_to_all("pinned", &Default::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn retried_events_are_parked_after_the_maximum_and_replayed_on_request() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = unique_stream("order");
    numbers(client, &stream, 2).await;
    client
        .create_persistent_subscription(stream.as_str(), "poison", &from_start().max_retry_count(2))
        .await
        .unwrap();
    let mut subscription = consumer(client, &stream, "poison", 1).await;
    // The poison event: retried twice, then parked; the next event is not held up for ever.
    for retry in 0..=2 {
        let (event, retry_count) = next(&mut subscription).await;
        assert_eq!((n_of(&event), retry_count), (0, retry));
        subscription
            .nack(event, NakAction::Retry, "cannot handle it")
            .await
            .unwrap();
    }
    let (event, _) = next(&mut subscription).await;
    assert_eq!(n_of(&event), 1);
    subscription.ack(event).await.unwrap();
    let info = client
        .get_persistent_subscription_info(stream.as_str(), "poison", &Default::default())
        .await
        .unwrap();
    assert_eq!(info.stats.parked_message_count, 1);

    // Parked at once on request, too.
    numbers(client, &stream, 1).await;
    let (event, _) = next(&mut subscription).await;
    subscription
        .nack(event, NakAction::Park, "bad data")
        .await
        .unwrap();
    within("two parked", async {
        loop {
            let info = client
                .get_persistent_subscription_info(stream.as_str(), "poison", &Default::default())
                .await
                .unwrap();
            if info.stats.parked_message_count == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    client
        .replay_parked_messages(
            stream.as_str(),
            "poison",
            &ReplayParkedMessagesOptions::default(),
        )
        .await
        .unwrap();
    let mut replayed = Vec::new();
    for _ in 0..2 {
        let (event, _) = next(&mut subscription).await;
        replayed.push(n_of(&event));
        subscription.ack(event).await.unwrap();
    }
    assert_eq!(
        replayed,
        [0, 0],
        "both parked events again (numbers 0 of each append)"
    );
    // Once both are done, the parked stream hides them (not before: a crash would lose them).
    within("the parked stream emptied", async {
        loop {
            let info = client
                .get_persistent_subscription_info(stream.as_str(), "poison", &Default::default())
                .await
                .unwrap();
            if info.stats.parked_message_count == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_not_answered_in_time_goes_to_another_consumer_and_skip_lets_it_go() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = unique_stream("order");
    numbers(client, &stream, 1).await;
    let options = from_start().message_timeout(Duration::from_millis(300));
    client
        .create_persistent_subscription(stream.as_str(), "slow", &options)
        .await
        .unwrap();
    let mut sleepy = consumer(client, &stream, "slow", 1).await;
    let (event, retry_count) = next(&mut sleepy).await;
    assert_eq!(retry_count, 0);
    drop(event);
    let (again, retry_count) = next(&mut sleepy).await;
    assert_eq!(
        (n_of(&again), retry_count),
        (0, 1),
        "sent again after the timeout"
    );
    sleepy
        .nack(again, NakAction::Skip, "not for us")
        .await
        .unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(500), sleepy.next()).await;
    assert!(quiet.is_err(), "a skipped event is done");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_resumes_after_its_checkpoint_when_the_store_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let start = || estore::start(estore::Settings::ephemeral(dir.path()));
    let server = start().await.unwrap();
    let client = client_for(&server);
    let stream = unique_stream("order");
    numbers(&client, &stream, 6).await;
    let options = from_start()
        .checkpoint_lower_bound(1)
        .checkpoint_after(Duration::from_millis(50));
    client
        .create_persistent_subscription(stream.as_str(), "durable", &options)
        .await
        .unwrap();
    let mut subscription = consumer(&client, &stream, "durable", 3).await;
    for _ in 0..3 {
        let (event, _) = next(&mut subscription).await;
        subscription.ack(event).await.unwrap();
    }
    within("the checkpoint is stored", async {
        loop {
            let info = client
                .get_persistent_subscription_info(stream.as_str(), "durable", &Default::default())
                .await
                .unwrap();
            if info.stats.last_checkpointed_event_revision == Some(2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(subscription);
    server.stop().await;

    let server = start().await.unwrap();
    let client = client_for(&server);
    let mut subscription = consumer(&client, &stream, "durable", 3).await;
    let (event, _) = next(&mut subscription).await;
    assert_eq!(
        event.get_original_event().revision,
        3,
        "resumes after the checkpoint"
    );
    let listed = client
        .list_all_persistent_subscriptions(&Default::default())
        .await
        .unwrap();
    assert!(listed.iter().any(|i| i.group_name == "durable"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_take_effect_and_bad_settings_or_unknown_groups_are_refused() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = unique_stream("order");
    let missing = client
        .subscribe_to_persistent_subscription(stream.as_str(), "nobody", &Default::default())
        .await;
    let missing = match missing {
        Ok(mut s) => s.next().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(missing.is_err(), "{missing:?}");
    let bad = client
        .create_persistent_subscription(stream.as_str(), "bad", &from_start().read_batch_size(0))
        .await;
    match bad {
        Err(Error::Grpc { code, message }) => {
            assert_eq!(code, tonic::Code::InvalidArgument);
            assert!(message.contains("read_batch_size"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    client
        .create_persistent_subscription(stream.as_str(), "tuned", &from_start())
        .await
        .unwrap();
    client
        .update_persistent_subscription(stream.as_str(), "tuned", &from_start().max_retry_count(3))
        .await
        .unwrap();
    let info = client
        .get_persistent_subscription_info(stream.as_str(), "tuned", &Default::default())
        .await
        .unwrap();
    assert_eq!(info.settings.expect("settings").max_retry_count, 3);
    let unknown = client
        .update_persistent_subscription(stream.as_str(), "ghost", &from_start())
        .await;
    assert!(
        matches!(unknown, Err(Error::ResourceNotFound)),
        "{unknown:?}"
    );
}

/// A message timeout of 0 means none, as the clients mean it: an unanswered event stays with
/// its consumer.
#[tokio::test(flavor = "multi_thread")]
async fn a_zero_message_timeout_never_sends_an_event_again() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = unique_stream("order");
    numbers(client, &stream, 1).await;
    let options = from_start().message_timeout(Duration::ZERO);
    client
        .create_persistent_subscription(stream.as_str(), "patient", &options)
        .await
        .unwrap();
    let mut subscription = consumer(client, &stream, "patient", 1).await;
    let (event, _) = next(&mut subscription).await;
    let quiet = tokio::time::timeout(Duration::from_millis(500), subscription.next()).await;
    assert!(quiet.is_err(), "not sent again");
    subscription.ack(event).await.unwrap();
}
