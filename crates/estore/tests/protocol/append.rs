use std::collections::HashSet;

use eventstore::{Error, EventData, ExpectedRevision};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn server_features_report_a_version() {
    let store = spawn_store().await;
    let info = within("server info", store.client.server_info())
        .await
        .expect("server info");
    assert_eq!(info.version().to_string(), "24.10.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn append_with_no_stream_creates_the_stream_at_revision_zero() {
    let store = spawn_store().await;
    let stream = unique_stream("order");
    let result = append(
        &store.client,
        &stream,
        ExpectedRevision::NoStream,
        vec![event("OrderPlaced", 0)],
    )
    .await
    .expect("append");
    assert_eq!(result.next_expected_version, 0);
    assert!(result.position.commit > 0);

    let second = append(
        &store.client,
        &stream,
        ExpectedRevision::Exact(0),
        vec![event("OrderCanceled", 1), event("OrderClosed", 2)],
    )
    .await
    .expect("append");
    assert_eq!(second.next_expected_version, 2);
    assert!(second.position.commit > result.position.commit);

    let events = read_all_of(&store.client, &stream).await.expect("read");
    let types: Vec<_> = events
        .iter()
        .map(|e| e.get_original_event().event_type.clone())
        .collect();
    assert_eq!(types, ["OrderPlaced", "OrderCanceled", "OrderClosed"]);
    let revisions: Vec<_> = events
        .iter()
        .map(|e| e.get_original_event().revision)
        .collect();
    assert_eq!(revisions, [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_expected_versions_are_reported_and_write_nothing() {
    let store = spawn_store().await;
    let stream = unique_stream("payment");
    let missing = append(
        &store.client,
        &stream,
        ExpectedRevision::StreamExists,
        vec![event("PayPlaced", 0)],
    )
    .await;
    assert!(
        matches!(
            missing,
            Err(Error::WrongExpectedVersion {
                expected: ExpectedRevision::StreamExists,
                ..
            })
        ),
        "{missing:?}"
    );
    append(
        &store.client,
        &stream,
        ExpectedRevision::Any,
        vec![event("PayPlaced", 0)],
    )
    .await
    .expect("any creates");

    let exact = append(
        &store.client,
        &stream,
        ExpectedRevision::Exact(5),
        vec![event("PayChecked", 1)],
    )
    .await;
    match exact {
        Err(Error::WrongExpectedVersion { expected, current }) => {
            assert_eq!(expected, ExpectedRevision::Exact(5));
            assert_eq!(current, eventstore::CurrentRevision::Current(0));
        }
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }
    let no_stream = append(
        &store.client,
        &stream,
        ExpectedRevision::NoStream,
        vec![event("PayChecked", 1)],
    )
    .await;
    assert!(
        matches!(
            no_stream,
            Err(Error::WrongExpectedVersion {
                expected: ExpectedRevision::NoStream,
                ..
            })
        ),
        "{no_stream:?}"
    );

    append(
        &store.client,
        &stream,
        ExpectedRevision::StreamExists,
        vec![event("PayChecked", 1)],
    )
    .await
    .expect("stream exists");
    let events = read_all_of(&store.client, &stream).await.expect("read");
    assert_eq!(events.iter().map(n_of).collect::<Vec<_>>(), [0, 1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_append_with_the_same_event_ids_is_written_once() {
    let store = spawn_store().await;
    let stream = unique_stream("order");
    let events = vec![event("OrderPlaced", 0), event("OrderCanceled", 1)];
    let first = append(
        &store.client,
        &stream,
        ExpectedRevision::NoStream,
        events.clone(),
    )
    .await
    .expect("first");
    let retry = append(&store.client, &stream, ExpectedRevision::NoStream, events)
        .await
        .expect("retry succeeds");
    assert_eq!(first.next_expected_version, retry.next_expected_version);
    assert_eq!(first.position, retry.position);
    assert_eq!(
        read_all_of(&store.client, &stream)
            .await
            .expect("read")
            .len(),
        2
    );
}

/// Many writers race for the same revision: exactly one wins each round, the rest get
/// WrongExpectedVersion, and the stream has no gap and no duplicate.
#[tokio::test(flavor = "multi_thread")]
async fn racing_writers_on_one_stream_each_revision_has_one_winner() {
    let store = spawn_store().await;
    let stream = unique_stream("product");
    append(
        &store.client,
        &stream,
        ExpectedRevision::NoStream,
        vec![event("ProductRegistered", 0)],
    )
    .await
    .expect("create");
    let writers = 32;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let client = store.client.clone();
        let stream = stream.clone();
        tasks.push(tokio::spawn(async move {
            let mut wins = 0;
            for round in 0..20u64 {
                // Every writer believes the stream is at `round`: one of them is right first.
                match append(
                    &client,
                    &stream,
                    ExpectedRevision::Exact(round),
                    vec![event("StockAdded", 1000 * writer + round)],
                )
                .await
                {
                    Ok(_) => wins += 1,
                    Err(Error::WrongExpectedVersion { .. }) => {}
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            wins
        }));
    }
    let mut total_wins = 0;
    for task in tasks {
        total_wins += within("writer", task).await.expect("writer task");
    }
    let events = read_all_of(&store.client, &stream).await.expect("read");
    assert_eq!(events.len() as u64, 1 + total_wins);
    let revisions: Vec<u64> = events
        .iter()
        .map(|e| e.get_original_event().revision)
        .collect();
    assert_eq!(revisions, (0..events.len() as u64).collect::<Vec<_>>());
    let ids: HashSet<_> = events.iter().map(|e| e.get_original_event().id).collect();
    assert_eq!(ids.len(), events.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_appends_to_many_streams_all_land_in_one_total_order() {
    let store = spawn_store().await;
    let prefix = unique_stream("conc");
    let mut tasks = Vec::new();
    for writer in 0..64u64 {
        let client = store.client.clone();
        let stream = format!("{prefix}-{writer}");
        tasks.push(tokio::spawn(async move {
            for i in 0..10u64 {
                let expected = if i == 0 {
                    ExpectedRevision::NoStream
                } else {
                    ExpectedRevision::Exact(i - 1)
                };
                append(&client, &stream, expected, vec![event("OrderPlaced", i)])
                    .await
                    .expect("append");
            }
        }));
    }
    for task in tasks {
        within("writer", task).await.expect("writer");
    }
    let mut reader = store
        .client
        .read_all(
            &eventstore::ReadAllOptions::default().position(eventstore::StreamPosition::Start),
        )
        .await
        .expect("read all");
    let mut last = 0;
    let mut seen = 0;
    while let Some(event) = reader.next().await.expect("next") {
        let recorded = event.get_original_event();
        assert!(
            recorded.position.commit > last,
            "positions strictly increase"
        );
        last = recorded.position.commit;
        if recorded.stream_id.starts_with(&prefix) {
            seen += 1;
        }
    }
    assert_eq!(seen, 640);
}

#[tokio::test(flavor = "multi_thread")]
async fn history_survives_a_restart_on_the_same_directory() {
    let mut store = spawn_store().await;
    // The WAL was written out ahead when the log opened (one 4 MiB step): the events below go
    // over its zeros, and the restart must read them and stop at the zeros after them.
    assert!(
        wal_bytes(&store) >= 4 * MIB,
        "WAL of {} bytes",
        wal_bytes(&store)
    );
    let stream = unique_stream("delivery");
    append(
        &store.client,
        &stream,
        ExpectedRevision::NoStream,
        (0..5).map(|n| event("DeliveryStarted", n)).collect(),
    )
    .await
    .expect("append");
    let server = store.server.take().expect("server");
    server.stop().await;

    let settings = estore::Settings::ephemeral(store.dir.path());
    let restarted = estore::start(settings).await.expect("restart");
    let client = client_for(&restarted);
    let events = read_all_of(&client, &stream)
        .await
        .expect("read after restart");
    assert_eq!(events.iter().map(n_of).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    let next = append(
        &client,
        &stream,
        ExpectedRevision::Exact(4),
        vec![event("DeliveryCompleted", 5)],
    )
    .await
    .expect("append after restart");
    assert_eq!(next.next_expected_version, 5);
}

const MIB: u64 = 1024 * 1024;

fn wal_bytes(store: &TestStore) -> u64 {
    std::fs::metadata(store.dir.path().join("events.sqlite-wal"))
        .expect("the log's WAL")
        .len()
}

/// An event of about 100 KB, numbered `n`.
fn large_event(n: u64) -> EventData {
    let body = serde_json::json!({ "n": n, "padding": "x".repeat(100_000) });
    EventData::json("ParcelScanned", &body).expect("json")
}

/// Once SQLite has written past the 4 MiB written out when the log opened, the next 4 MiB are
/// written out after that commit; every event written over the zeros is read back after a
/// restart, and the log goes on from there.
#[tokio::test(flavor = "multi_thread")]
async fn the_wal_is_written_out_a_step_ahead_as_it_grows() {
    let mut store = spawn_store().await;
    let opened = wal_bytes(&store);
    assert!(
        (4 * MIB..5 * MIB).contains(&opened),
        "WAL of {opened} bytes"
    );
    let stream = unique_stream("delivery");
    for n in 0..60 {
        let expected = if n == 0 {
            ExpectedRevision::NoStream
        } else {
            ExpectedRevision::Exact(n - 1)
        };
        append(&store.client, &stream, expected, vec![large_event(n)])
            .await
            .expect("append");
    }
    // About 6 MB of frames: one more step written out after the commit that passed 4 MiB.
    let grown = wal_bytes(&store);
    assert!(grown >= 8 * MIB, "WAL of {grown} bytes");
    let server = store.server.take().expect("server");
    server.stop().await;

    let restarted = estore::start(estore::Settings::ephemeral(store.dir.path()))
        .await
        .expect("restart");
    let client = client_for(&restarted);
    let events = read_all_of(&client, &stream)
        .await
        .expect("read after restart");
    assert_eq!(
        events.iter().map(n_of).collect::<Vec<_>>(),
        (0..60).collect::<Vec<_>>()
    );
    append(
        &client,
        &stream,
        ExpectedRevision::Exact(59),
        vec![large_event(60)],
    )
    .await
    .expect("append after restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_any_append_is_recognised_among_the_latest_events() {
    let store = spawn_store().await;
    let stream = unique_stream("order");
    let retried = vec![event("OrderPlaced", 0), event("PayPlaced", 1)];
    let first = append(
        &store.client,
        &stream,
        ExpectedRevision::Any,
        retried.clone(),
    )
    .await
    .unwrap();
    append(
        &store.client,
        &stream,
        ExpectedRevision::Any,
        vec![event("PayChecked", 2)],
    )
    .await
    .unwrap();
    let again = append(&store.client, &stream, ExpectedRevision::Any, retried)
        .await
        .expect("retry succeeds");
    assert_eq!(
        again.next_expected_version, first.next_expected_version,
        "answered as the first time"
    );
    let events = read_all_of(&store.client, &stream).await.unwrap();
    assert_eq!(
        events.iter().map(n_of).collect::<Vec<_>>(),
        [0, 1, 2],
        "written once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_absurd_expected_revision_is_a_wrong_expected_version_not_a_crash() {
    let store = spawn_store().await;
    let stream = stream_with(&store, "order", 0..1).await;
    let absurd = append(
        &store.client,
        &stream,
        ExpectedRevision::Exact(u64::MAX),
        vec![event("OrderPlaced", 1)],
    )
    .await;
    assert!(
        matches!(absurd, Err(Error::WrongExpectedVersion { .. })),
        "{absurd:?}"
    );
    append(
        &store.client,
        &stream,
        ExpectedRevision::Exact(0),
        vec![event("OrderPlaced", 1)],
    )
    .await
    .expect("the writer still works");
}

/// When the log is full (its size limit here; a full disk behaves the same), appends racing for
/// the last space either land whole or fail whole with ResourceExhausted: every acknowledged
/// event is there, no refused one is, and after a restart with room the log goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_log_refuses_appends_whole_and_keeps_every_acknowledged_one() {
    let limits = estore::Limits {
        log_bytes_max: 512 * 1024,
        ..estore::Limits::default()
    };
    let mut store = spawn_store_with(limits).await;
    let prefix = unique_stream("full");
    let mut tasks = Vec::new();
    for writer in 0..16u64 {
        let client = store.client.clone();
        let stream = format!("{prefix}-{writer}");
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refused = 0;
            for i in 0..400u64 {
                let sent = eventstore::EventData::json(
                    "StockAdded",
                    &serde_json::json!({"n": i, "pad": "z".repeat(2000)}),
                )
                .unwrap();
                match append(&client, &stream, ExpectedRevision::Any, vec![sent]).await {
                    Ok(result) => acked.push(result.next_expected_version),
                    Err(Error::Grpc {
                        code: tonic::Code::ResourceExhausted,
                        ..
                    }) => refused += 1,
                    Err(other) => panic!("unexpected error: {other}"),
                }
                if refused >= 3 {
                    break;
                }
            }
            (stream, acked, refused)
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(within("writer", task).await.unwrap());
    }
    assert!(
        outcomes.iter().all(|(_, _, refused)| *refused > 0),
        "every writer met the full log"
    );
    for (stream, acked, _) in &outcomes {
        let stored = read_all_of(&store.client, stream)
            .await
            .map(|e| e.len())
            .unwrap_or(0);
        assert_eq!(
            stored,
            acked.len(),
            "{stream}: exactly the acknowledged events"
        );
        assert_eq!(
            acked,
            &(0..acked.len() as u64).collect::<Vec<_>>(),
            "{stream}: revisions without gaps"
        );
    }
    let server = store.server.take().unwrap();
    server.stop().await;
    let roomy = estore::Settings::ephemeral(store.dir.path());
    let restarted = estore::start(roomy).await.unwrap();
    let client = client_for(&restarted);
    for (stream, acked, _) in &outcomes {
        let expected = match acked.last() {
            Some(last) => ExpectedRevision::Exact(*last),
            None => ExpectedRevision::NoStream,
        };
        append(&client, stream, expected, vec![event("StockAdded", 9)])
            .await
            .expect("room again");
    }
}
