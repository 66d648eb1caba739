use eventstore::{
    Error, ExpectedRevision, Position, ReadAllOptions, ReadStreamOptions, StreamPosition,
};

use crate::helpers::*;

async fn collect(
    mut reader: eventstore::ReadStream,
) -> eventstore::Result<Vec<eventstore::ResolvedEvent>> {
    let mut events = Vec::new();
    while let Some(event) = reader.next().await? {
        events.push(event);
    }
    Ok(events)
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_reads_go_both_ways_from_start_end_or_a_revision() {
    let store = spawn_store().await;
    let stream = stream_with(&store, "order", 0..10).await;
    let read = |options: ReadStreamOptions| {
        let client = store.client.clone();
        let stream = stream.clone();
        async move {
            let events = collect(client.read_stream(stream, &options).await?).await?;
            Ok::<_, Error>(events.iter().map(n_of).collect::<Vec<_>>())
        }
    };
    let start = ReadStreamOptions::default().position(StreamPosition::Start);
    assert_eq!(
        read(start.clone().forwards()).await.unwrap(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        read(start.clone().forwards().max_count(3)).await.unwrap(),
        [0, 1, 2]
    );
    let end = ReadStreamOptions::default()
        .position(StreamPosition::End)
        .backwards();
    assert_eq!(
        read(end.clone()).await.unwrap(),
        (0..10).rev().collect::<Vec<_>>()
    );
    assert_eq!(read(end.max_count(2)).await.unwrap(), [9, 8]);
    let from_four = ReadStreamOptions::default().position(StreamPosition::Position(4));
    assert_eq!(
        read(from_four.clone().forwards().max_count(3))
            .await
            .unwrap(),
        [4, 5, 6]
    );
    assert_eq!(read(from_four.backwards()).await.unwrap(), [4, 3, 2, 1, 0]);
    let past_end = ReadStreamOptions::default()
        .position(StreamPosition::Position(50))
        .forwards();
    assert_eq!(read(past_end).await.unwrap(), Vec::<u64>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_a_missing_stream_says_not_found() {
    let store = spawn_store().await;
    let result = collect(
        store
            .client
            .read_stream(unique_stream("nothing"), &ReadStreamOptions::default())
            .await
            .expect("call"),
    )
    .await;
    assert!(matches!(result, Err(Error::ResourceNotFound)), "{result:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_round_trip_id_type_data_metadata_and_creation_time() {
    let store = spawn_store().await;
    let stream = unique_stream("order");
    let id = uuid::Uuid::new_v4();
    let before = chrono_now_seconds();
    let sent = eventstore::EventData::json(
        "OrderPlaced",
        &serde_json::json!({"orderId": "o-1", "quantity": 2}),
    )
    .unwrap()
    .id(id)
    .metadata_as_json(&serde_json::json!({"$correlationId": "o-1"}))
    .unwrap();
    append(
        &store.client,
        &stream,
        ExpectedRevision::NoStream,
        vec![sent],
    )
    .await
    .expect("append");
    let events = read_all_of(&store.client, &stream).await.expect("read");
    let recorded = events[0].get_original_event();
    assert_eq!(recorded.id, id);
    assert_eq!(recorded.event_type, "OrderPlaced");
    assert_eq!(recorded.stream_id, stream);
    assert!(recorded.is_json);
    let data: serde_json::Value = recorded.as_json().unwrap();
    assert_eq!(data["quantity"], 2);
    let metadata: serde_json::Value = serde_json::from_slice(&recorded.custom_metadata).unwrap();
    assert_eq!(metadata["$correlationId"], "o-1");
    let created = recorded.created.timestamp();
    assert!(
        created >= before - 1 && created <= chrono_now_seconds() + 1,
        "created {created} is now"
    );
}

fn chrono_now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn all_reads_go_both_ways_from_start_end_or_a_position() {
    let store = spawn_store().await;
    let stream = stream_with(&store, "order", 0..10).await;
    let all = |options: ReadAllOptions| {
        let client = store.client.clone();
        async move {
            collect(client.read_all(&options).await.unwrap())
                .await
                .unwrap()
        }
    };
    let forwards = all(ReadAllOptions::default()
        .position(StreamPosition::Start)
        .forwards())
    .await;
    assert_eq!(forwards.len(), 10);
    assert!(forwards
        .iter()
        .all(|e| e.get_original_event().stream_id == stream));
    let backwards = all(ReadAllOptions::default()
        .position(StreamPosition::End)
        .backwards()
        .max_count(3))
    .await;
    assert_eq!(backwards.iter().map(n_of).collect::<Vec<_>>(), [9, 8, 7]);

    let fifth: Position = forwards[5].get_original_event().position;
    let from_fifth = all(ReadAllOptions::default()
        .position(StreamPosition::Position(fifth))
        .forwards()
        .max_count(2))
    .await;
    assert_eq!(
        from_fifth.iter().map(n_of).collect::<Vec<_>>(),
        [5, 6],
        "forwards from a position includes it"
    );
    let before_fifth = all(ReadAllOptions::default()
        .position(StreamPosition::Position(fifth))
        .backwards()
        .max_count(2))
    .await;
    assert_eq!(
        before_fifth.iter().map(n_of).collect::<Vec<_>>(),
        [4, 3],
        "backwards from a position starts before it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_read_is_streamed_across_pages_in_order() {
    let store = spawn_store().await;
    let stream = unique_stream("big");
    let total = estore::reading::PAGE_EVENTS as u64 * 3 + 7;
    for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
        let expected = if chunk[0] == 0 {
            ExpectedRevision::NoStream
        } else {
            ExpectedRevision::Exact(chunk[0] - 1)
        };
        append(
            &store.client,
            &stream,
            expected,
            chunk.iter().map(|n| event("StockAdded", *n)).collect(),
        )
        .await
        .expect("append");
    }
    let events = read_all_of(&store.client, &stream).await.expect("read");
    assert_eq!(
        events.iter().map(n_of).collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>()
    );
    let backwards = collect(
        store
            .client
            .read_stream(
                stream.as_str(),
                &ReadStreamOptions::default()
                    .position(StreamPosition::End)
                    .backwards(),
            )
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        backwards.iter().map(n_of).collect::<Vec<_>>(),
        (0..total).rev().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_of_zero_events_returns_none() {
    let store = spawn_store().await;
    stream_with(&store, "order", 0..10).await;
    let events = collect(
        store
            .client
            .read_all(
                &ReadAllOptions::default()
                    .position(StreamPosition::Start)
                    .max_count(0),
            )
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(events.is_empty());
}

/// `$all` positions this log never gave out are refused, as a node refuses a position that is
/// not an event's: commit and prepare apart, or (backwards, and for subscriptions) past the
/// log's end. Forwards from past the end finds nothing, as on a node.
#[tokio::test(flavor = "multi_thread")]
async fn reading_all_from_a_position_that_is_no_event_s_is_refused() {
    use eventstore::{Position, ReadAllOptions, StreamPosition, SubscribeToAllOptions};
    let store = spawn_store().await;
    let client = &store.client;
    stream_with(&store, "order", 0..3).await;
    let at = |commit, prepare| StreamPosition::Position(Position { commit, prepare });
    let read = |position, backwards: bool| async move {
        let options = ReadAllOptions::default().position(position);
        let options = if backwards {
            options.backwards()
        } else {
            options
        };
        let mut reader = client.read_all(&options).await?;
        let mut count = 0;
        while reader.next().await?.is_some() {
            count += 1;
        }
        eventstore::Result::Ok(count)
    };
    let refused = |result: &eventstore::Result<usize>| matches!(result, Err(eventstore::Error::Grpc { code: tonic::Code::InvalidArgument, message }) if message.contains("invalid position"));
    let apart = read(at(2, 1), false).await;
    assert!(refused(&apart), "{apart:?}");
    let backwards_past_end = read(at(1_000, 1_000), true).await;
    assert!(refused(&backwards_past_end), "{backwards_past_end:?}");
    assert_eq!(read(at(1_000, 1_000), false).await.unwrap(), 0);
    assert_eq!(read(at(2, 2), false).await.unwrap(), 2);
    assert_eq!(read(at(u64::MAX, u64::MAX), true).await.unwrap(), 3);

    let mut subscription = client
        .subscribe_to_all(&SubscribeToAllOptions::default().position(at(1_000, 1_000)))
        .await;
    let ended = within("the subscription is refused", subscription.next()).await;
    assert!(
        matches!(
            ended,
            Err(eventstore::Error::Grpc {
                code: tonic::Code::InvalidArgument,
                ..
            })
        ),
        "{:?}",
        ended.map(|e| e.get_original_event().position)
    );
}
