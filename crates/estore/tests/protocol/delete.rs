use eventstore::{DeleteStreamOptions, Error, ExpectedRevision, TombstoneStreamOptions};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_soft_deleted_stream_reads_as_missing_and_can_be_written_again() {
    let store = spawn_store().await;
    let stream = stream_with(&store, "order", 0..3).await;
    let position = store
        .client
        .delete_stream(
            stream.as_str(),
            &DeleteStreamOptions::default().expected_revision(ExpectedRevision::Exact(2)),
        )
        .await
        .unwrap();
    assert!(position.is_some());
    assert!(matches!(
        read_all_of(&store.client, &stream).await,
        Err(Error::ResourceNotFound)
    ));

    let again = append(
        &store.client,
        &stream,
        ExpectedRevision::NoStream,
        vec![event("OrderPlaced", 10)],
    )
    .await
    .unwrap();
    assert_eq!(
        again.next_expected_version, 3,
        "revisions go on after a soft delete"
    );
    let events = read_all_of(&store.client, &stream).await.unwrap();
    assert_eq!(events.iter().map(n_of).collect::<Vec<_>>(), [10]);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_with_a_wrong_expected_revision_is_refused_and_deletes_nothing() {
    let store = spawn_store().await;
    let stream = stream_with(&store, "order", 0..1).await;
    let refused = store
        .client
        .delete_stream(
            stream.as_str(),
            &DeleteStreamOptions::default().expected_revision(ExpectedRevision::Exact(7)),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::Grpc {
                code: tonic::Code::FailedPrecondition,
                ..
            })
        ),
        "{refused:?}"
    );
    let refused = store
        .client
        .tombstone_stream(
            stream.as_str(),
            &TombstoneStreamOptions::default().expected_revision(ExpectedRevision::NoStream),
        )
        .await;
    assert!(refused.is_err());
    assert_eq!(read_all_of(&store.client, &stream).await.unwrap().len(), 1);
}

/// As on a KurrentDB node: deleting or tombstoning a stream that never existed is a wrong
/// expected version (actual -1) whatever was expected, and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_never_existed_cannot_be_deleted_or_tombstoned() {
    let store = spawn_store().await;
    let stream = format!("order-{}", uuid::Uuid::new_v4());
    for expected in [
        ExpectedRevision::NoStream,
        ExpectedRevision::Any,
        ExpectedRevision::StreamExists,
        ExpectedRevision::Exact(0),
    ] {
        let deleted = store
            .client
            .delete_stream(
                stream.as_str(),
                &DeleteStreamOptions::default().expected_revision(expected),
            )
            .await;
        let tombstoned = store
            .client
            .tombstone_stream(
                stream.as_str(),
                &TombstoneStreamOptions::default().expected_revision(expected),
            )
            .await;
        for refused in [deleted, tombstoned] {
            match refused {
                Err(Error::Grpc { code, message }) => {
                    assert_eq!(code, tonic::Code::FailedPrecondition, "{expected:?}");
                    assert!(message.ends_with("Actual version: -1"), "{message}");
                }
                other => panic!("{expected:?}: {other:?}"),
            }
        }
    }
    // Not tombstoned: the stream can be written from no stream.
    append(
        &store.client,
        &stream,
        ExpectedRevision::NoStream,
        vec![event("OrderPlaced", 0)],
    )
    .await
    .unwrap();
    assert_eq!(read_all_of(&store.client, &stream).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tombstoned_stream_refuses_reads_writes_and_deletes() {
    let store = spawn_store().await;
    let stream = stream_with(&store, "order", 0..1).await;
    store
        .client
        .tombstone_stream(stream.as_str(), &TombstoneStreamOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        read_all_of(&store.client, &stream).await,
        Err(Error::ResourceDeleted)
    ));
    let write = append(
        &store.client,
        &stream,
        ExpectedRevision::Any,
        vec![event("OrderPlaced", 1)],
    )
    .await;
    assert!(matches!(write, Err(Error::ResourceDeleted)), "{write:?}");
    let delete = store
        .client
        .delete_stream(stream.as_str(), &DeleteStreamOptions::default())
        .await;
    assert!(matches!(delete, Err(Error::ResourceDeleted)), "{delete:?}");
}

fn is_wrong_expected_version(
    result: &eventstore::Result<Option<eventstore::Position>>,
    actual: i64,
) -> bool {
    match result {
        Err(Error::Grpc { code, message }) => {
            *code == tonic::Code::FailedPrecondition
                && message.ends_with(&format!("Actual version: {actual}"))
        }
        _ => false,
    }
}

/// A soft-deleted stream, as on a node: deleting it again succeeds expecting any, no stream or
/// its last revision; expecting it to exist is refused as deleted; another revision is a wrong
/// expected version naming the last one.
#[tokio::test(flavor = "multi_thread")]
async fn a_soft_deleted_stream_answers_each_expectation_as_a_node_does() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = stream_with(&store, "order", 0..3).await;
    client
        .delete_stream(stream.as_str(), &DeleteStreamOptions::default())
        .await
        .unwrap();
    let delete = |expected| {
        let options = DeleteStreamOptions::default().expected_revision(expected);
        let stream = stream.clone();
        async move { client.delete_stream(stream.as_str(), &options).await }
    };
    for expected in [
        ExpectedRevision::Any,
        ExpectedRevision::NoStream,
        ExpectedRevision::Exact(2),
    ] {
        let answer = delete(expected).await;
        assert!(matches!(answer, Ok(Some(_))), "{expected:?}: {answer:?}");
    }
    let exists = delete(ExpectedRevision::StreamExists).await;
    assert!(matches!(exists, Err(Error::ResourceDeleted)), "{exists:?}");
    let other = delete(ExpectedRevision::Exact(5)).await;
    assert!(is_wrong_expected_version(&other, 2), "{other:?}");

    let write = append(
        client,
        &stream,
        ExpectedRevision::StreamExists,
        vec![event("OrderPlaced", 3)],
    )
    .await;
    assert!(matches!(write, Err(Error::ResourceDeleted)), "{write:?}");
    let written = append(
        client,
        &stream,
        ExpectedRevision::Exact(2),
        vec![event("OrderPlaced", 3)],
    )
    .await
    .unwrap();
    assert_eq!(written.next_expected_version, 3);
    assert_eq!(
        read_all_of(client, &stream)
            .await
            .unwrap()
            .iter()
            .map(n_of)
            .collect::<Vec<_>>(),
        [3]
    );

    // A soft-deleted stream can still be tombstoned.
    client
        .tombstone_stream(stream.as_str(), &TombstoneStreamOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        read_all_of(client, &stream).await,
        Err(Error::ResourceDeleted)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tombstoned_stream_refuses_every_expectation_as_deleted() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = stream_with(&store, "order", 0..2).await;
    client
        .tombstone_stream(stream.as_str(), &TombstoneStreamOptions::default())
        .await
        .unwrap();
    for expected in [
        ExpectedRevision::Any,
        ExpectedRevision::NoStream,
        ExpectedRevision::StreamExists,
        ExpectedRevision::Exact(1),
        ExpectedRevision::Exact(9),
    ] {
        let deleted = client
            .delete_stream(
                stream.as_str(),
                &DeleteStreamOptions::default().expected_revision(expected),
            )
            .await;
        let tombstoned = client
            .tombstone_stream(
                stream.as_str(),
                &TombstoneStreamOptions::default().expected_revision(expected),
            )
            .await;
        let written = append(client, &stream, expected, vec![event("OrderPlaced", 2)]).await;
        assert!(
            matches!(deleted, Err(Error::ResourceDeleted)),
            "{expected:?}: {deleted:?}"
        );
        assert!(
            matches!(tombstoned, Err(Error::ResourceDeleted)),
            "{expected:?}: {tombstoned:?}"
        );
        assert!(
            matches!(written, Err(Error::ResourceDeleted)),
            "{expected:?}: {written:?}"
        );
    }
}

/// A tombstone is a `$streamDeleted` record at revision i64::MAX in the stream itself, in $all
/// where the tombstone's answer says; the stream's subscribers are told it is deleted and never
/// get the record as an event.
#[tokio::test(flavor = "multi_thread")]
async fn a_tombstone_is_a_stream_deleted_record_in_all() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = stream_with(&store, "order", 0..1).await;
    let mut subscription = client
        .subscribe_to_stream(
            stream.as_str(),
            &eventstore::SubscribeToStreamOptions::default()
                .start_from(eventstore::StreamPosition::Start),
        )
        .await;
    let first = within("the stream's event", subscription.next())
        .await
        .unwrap();
    assert_eq!(n_of(&first), 0);

    let position = client
        .tombstone_stream(stream.as_str(), &TombstoneStreamOptions::default())
        .await
        .unwrap()
        .expect("a position");
    let ended = within("the subscription ends", subscription.next()).await;
    assert!(
        matches!(ended, Err(Error::ResourceDeleted)),
        "{:?}",
        ended.map(|e| e.get_original_event().revision)
    );

    let options = eventstore::ReadAllOptions::default()
        .position(eventstore::StreamPosition::Position(position))
        .max_count(1);
    let mut reader = client.read_all(&options).await.unwrap();
    let record = reader.next().await.unwrap().expect("the tombstone record");
    let record = record.get_original_event();
    assert_eq!(record.event_type, "$streamDeleted");
    assert_eq!(record.stream_id, stream);
    assert_eq!(record.revision, i64::MAX as u64);
}
