//! Stream metadata (`$$stream`) through the official client: written and read with an expected
//! revision, `$maxCount`, `$maxAge` and `$tb` honoured by stream reads, other keys kept.

use std::time::Duration;

use eventstore::{
    AppendToStreamOptions, Client, EventData, ExpectedRevision, ReadAllOptions, ReadStreamOptions,
    StreamMetadata, StreamMetadataBuilder, StreamMetadataResult, StreamPosition,
};
use serde_json::json;

use crate::helpers::*;

async fn set_metadata(
    client: &Client,
    stream: &str,
    expected: ExpectedRevision,
    metadata: &StreamMetadata,
) -> eventstore::Result<eventstore::WriteResult> {
    let options = AppendToStreamOptions::default().expected_revision(expected);
    client.set_stream_metadata(stream, &options, metadata).await
}

async fn metadata_of(client: &Client, stream: &str) -> StreamMetadataResult {
    client
        .get_stream_metadata(stream, &ReadStreamOptions::default())
        .await
        .expect("metadata read")
}

/// Writes raw JSON as the stream's metadata, as a client of another language would (the Rust
/// client writes `$maxAge` in milliseconds where a node reads seconds).
async fn set_raw_metadata(client: &Client, stream: &str, data: serde_json::Value) {
    let event = EventData::json("$metadata", &data).expect("json");
    append(
        client,
        &format!("$${stream}"),
        ExpectedRevision::Any,
        vec![event],
    )
    .await
    .expect("metadata written");
}

async fn read_backwards(client: &Client, stream: &str) -> Vec<u64> {
    let options = ReadStreamOptions::default()
        .position(StreamPosition::End)
        .backwards();
    let mut reader = client.read_stream(stream, &options).await.expect("read");
    let mut numbers = Vec::new();
    while let Some(event) = reader.next().await.expect("next") {
        numbers.push(n_of(&event));
    }
    numbers
}

async fn forwards(client: &Client, stream: &str) -> Vec<u64> {
    read_all_of(client, stream)
        .await
        .expect("stream found")
        .iter()
        .map(n_of)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_is_written_and_read_at_an_expected_revision() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = stream_with(&store, "order", 0..2).await;
    assert!(matches!(
        metadata_of(client, &stream).await,
        StreamMetadataResult::NotFound
    ));

    let first = StreamMetadataBuilder::new()
        .max_count(5)
        .insert_custom_property("owner", "shop")
        .build();
    let written = set_metadata(client, &stream, ExpectedRevision::NoStream, &first)
        .await
        .unwrap();
    assert_eq!(written.next_expected_version, 0);
    let refused = set_metadata(client, &stream, ExpectedRevision::NoStream, &first).await;
    assert!(
        matches!(refused, Err(eventstore::Error::WrongExpectedVersion { .. })),
        "{refused:?}"
    );

    let second = StreamMetadataBuilder::new().max_count(7).build();
    set_metadata(client, &stream, ExpectedRevision::Exact(0), &second)
        .await
        .unwrap();
    let StreamMetadataResult::Success(read) = metadata_of(client, &stream).await else {
        panic!("metadata expected");
    };
    assert_eq!(read.version(), 1, "the metastream shows its latest event");
    assert_eq!(read.metadata().max_count, Some(7));
    assert!(read.metadata().custom_properties.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn max_count_and_truncate_before_hide_events_from_stream_reads_but_not_from_all() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = stream_with(&store, "order", 0..10).await;
    let keep_three = StreamMetadataBuilder::new().max_count(3).build();
    set_metadata(client, &stream, ExpectedRevision::Any, &keep_three)
        .await
        .unwrap();
    assert_eq!(forwards(client, &stream).await, [7, 8, 9]);
    assert_eq!(read_backwards(client, &stream).await, [9, 8, 7]);

    let truncated = StreamMetadataBuilder::new().truncate_before(8).build();
    set_metadata(client, &stream, ExpectedRevision::Any, &truncated)
        .await
        .unwrap();
    assert_eq!(forwards(client, &stream).await, [8, 9]);
    append(
        client,
        &stream,
        ExpectedRevision::Exact(9),
        vec![event("OrderPlaced", 10)],
    )
    .await
    .unwrap();
    assert_eq!(forwards(client, &stream).await, [8, 9, 10]);

    // $all keeps every event until its space is reclaimed, as on a node.
    let in_all = events_in_all(client, &stream).await;
    assert_eq!(in_all.len(), 11);
}

/// Every event of `stream` that `$all` returns.
async fn in_all(client: &Client, stream: &str) -> Vec<eventstore::ResolvedEvent> {
    let mut reader = client
        .read_all(&ReadAllOptions::default().max_count(100_000))
        .await
        .expect("read $all");
    let mut found = Vec::new();
    while let Some(event) = reader.next().await.expect("next") {
        if event.get_original_event().stream_id == stream {
            found.push(event);
        }
    }
    found
}

async fn events_in_all(client: &Client, stream: &str) -> Vec<u64> {
    in_all(client, stream).await.iter().map(n_of).collect()
}

async fn types_in_all(client: &Client, stream: &str) -> Vec<String> {
    let found = in_all(client, stream).await;
    found
        .iter()
        .map(|e| e.get_original_event().event_type.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn max_age_hides_events_older_than_it() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = stream_with(&store, "order", 0..2).await;
    set_raw_metadata(client, &stream, json!({ "$maxAge": 1 })).await;
    assert_eq!(forwards(client, &stream).await, [0, 1]);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    append(
        client,
        &stream,
        ExpectedRevision::Exact(1),
        vec![event("OrderPlaced", 2)],
    )
    .await
    .unwrap();
    assert_eq!(forwards(client, &stream).await, [2]);
    assert_eq!(read_backwards(client, &stream).await, [2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_that_is_not_an_object_is_kept_and_limits_nothing() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = stream_with(&store, "order", 0..3).await;
    set_raw_metadata(client, &stream, json!({ "$maxCount": 1, "mine": [1, 2] })).await;
    assert_eq!(forwards(client, &stream).await, [2]);
    let StreamMetadataResult::Success(read) = metadata_of(client, &stream).await else {
        panic!("metadata expected");
    };
    assert_eq!(read.metadata().custom_properties["mine"], json!([1, 2]));

    set_raw_metadata(client, &stream, json!([1])).await;
    assert_eq!(forwards(client, &stream).await, [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_soft_delete_writes_metadata_and_writing_again_keeps_old_events_hidden() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = stream_with(&store, "order", 0..2).await;
    set_raw_metadata(client, &stream, json!({ "mine": "dropped" })).await;
    let deleted_at = client
        .delete_stream(stream.as_str(), &Default::default())
        .await
        .unwrap()
        .expect("a position");
    let StreamMetadataResult::Success(read) = metadata_of(client, &stream).await else {
        panic!("metadata expected");
    };
    assert_eq!(read.metadata().truncate_before, Some(i64::MAX as u64));
    assert!(
        read.metadata().custom_properties.is_empty(),
        "a soft delete writes only $tb"
    );
    // The delete's `$metadata` event is in $all, where the delete's answer says.
    let options = ReadAllOptions::default()
        .position(StreamPosition::Position(deleted_at))
        .max_count(1);
    let mut reader = client.read_all(&options).await.unwrap();
    let written = reader.next().await.unwrap().expect("an event");
    assert_eq!(written.get_original_event().event_type, "$metadata");
    assert_eq!(
        written.get_original_event().stream_id,
        format!("$${stream}")
    );

    set_raw_metadata(client, &stream, json!({ "$tb": i64::MAX, "mine": "kept" })).await;
    append(
        client,
        &stream,
        ExpectedRevision::NoStream,
        vec![event("OrderPlaced", 2)],
    )
    .await
    .unwrap();
    assert_eq!(forwards(client, &stream).await, [2]);
    let StreamMetadataResult::Success(read) = metadata_of(client, &stream).await else {
        panic!("metadata expected");
    };
    assert_eq!(read.metadata().truncate_before, Some(2));
    assert_eq!(read.metadata().custom_properties["mine"], "kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metadata_of_a_tombstoned_stream_reads_as_deleted_and_cannot_be_written() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = stream_with(&store, "order", 0..1).await;
    client
        .tombstone_stream(stream.as_str(), &Default::default())
        .await
        .unwrap();
    assert!(matches!(
        metadata_of(client, &stream).await,
        StreamMetadataResult::Deleted
    ));
    let write = set_metadata(
        client,
        &stream,
        ExpectedRevision::Any,
        &StreamMetadataBuilder::new().max_count(1).build(),
    )
    .await;
    assert!(
        matches!(write, Err(eventstore::Error::ResourceDeleted)),
        "{write:?}"
    );
}

/// Hidden events are reclaimed: they leave `$all`, the stream's last event and its revision
/// stay, and a tombstoned stream keeps only its tombstone.
#[tokio::test(flavor = "multi_thread")]
async fn the_space_of_hidden_events_is_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = estore::Settings::ephemeral(dir.path());
    settings.reclaim_interval = Duration::from_millis(50);
    let server = estore::start(settings).await.unwrap();
    let client = client_for(&server);
    let counted = unique_stream("order");
    let events = (0..10).map(|n| event("OrderPlaced", n)).collect();
    append(&client, &counted, ExpectedRevision::NoStream, events)
        .await
        .unwrap();
    let keep_two = StreamMetadataBuilder::new().max_count(2).build();
    for _ in 0..3 {
        set_metadata(&client, &counted, ExpectedRevision::Any, &keep_two)
            .await
            .unwrap();
    }
    let deleted = unique_stream("order");
    append(
        &client,
        &deleted,
        ExpectedRevision::NoStream,
        vec![event("OrderPlaced", 0), event("OrderPlaced", 1)],
    )
    .await
    .unwrap();
    client
        .delete_stream(deleted.as_str(), &Default::default())
        .await
        .unwrap();
    let gone = unique_stream("order");
    append(
        &client,
        &gone,
        ExpectedRevision::NoStream,
        vec![event("OrderPlaced", 0)],
    )
    .await
    .unwrap();
    client
        .tombstone_stream(gone.as_str(), &Default::default())
        .await
        .unwrap();

    within("hidden events reclaimed", async {
        while events_in_all(&client, &counted).await != [8, 9] {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    within("the deleted stream keeps its last event", async {
        while events_in_all(&client, &deleted).await != [1] {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    within("the tombstoned stream keeps its tombstone", async {
        loop {
            let types = types_in_all(&client, &gone).await;
            if types == ["$streamDeleted"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let metastream = format!("$${counted}");
    within("older metadata events reclaimed", async {
        while types_in_all(&client, &metastream).await.len() != 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        server
            .commit_counters()
            .reclaimed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 11
    );

    assert_eq!(forwards(&client, &counted).await, [8, 9]);
    let written = append(
        &client,
        &counted,
        ExpectedRevision::Exact(9),
        vec![event("OrderPlaced", 10)],
    )
    .await
    .unwrap();
    assert_eq!(written.next_expected_version, 10);
    let again = append(
        &client,
        &deleted,
        ExpectedRevision::NoStream,
        vec![event("OrderPlaced", 2)],
    )
    .await
    .unwrap();
    assert_eq!(
        again.next_expected_version, 2,
        "revisions go on after the delete was reclaimed"
    );
    server.stop().await;
}

/// A metastream cannot be deleted or tombstoned (that would wedge its stream's soft deletes),
/// nor can a metastream's own metadata be set.
#[tokio::test(flavor = "multi_thread")]
async fn metastreams_cannot_be_deleted_nor_given_metadata() {
    let store = spawn_store().await;
    let client = &store.client;
    let stream = stream_with(&store, "order", 0..1).await;
    set_raw_metadata(client, &stream, json!({ "$maxCount": 5 })).await;
    let metastream = format!("$${stream}");
    let deleted = client
        .delete_stream(metastream.as_str(), &Default::default())
        .await;
    let tombstoned = client
        .tombstone_stream(metastream.as_str(), &Default::default())
        .await;
    for refused in [deleted, tombstoned] {
        assert!(
            matches!(
                refused,
                Err(eventstore::Error::Grpc {
                    code: tonic::Code::InvalidArgument,
                    ..
                })
            ),
            "{refused:?}"
        );
    }
    let meta_meta = EventData::json("$metadata", &json!({ "$tb": 1 })).unwrap();
    let written = append(
        client,
        &format!("$${metastream}"),
        ExpectedRevision::Any,
        vec![meta_meta],
    )
    .await;
    assert!(written.is_err(), "{written:?}");
    assert!(matches!(
        metadata_of(client, &stream).await,
        StreamMetadataResult::Success(_)
    ));
}
