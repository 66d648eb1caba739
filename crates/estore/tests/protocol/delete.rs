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
                    assert!(message.contains("actual version -1"), "{message}");
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
