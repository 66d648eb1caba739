//! The standard system streams (`$ce-{category}`, `$et-{eventType}`, `$streams`) through the
//! official client: link events, resolved with `resolve_link_tos`, kept up to date as events
//! are written, across restarts, and for a log written before they existed.

use eventstore::{
    Client, ExpectedRevision, ReadStreamOptions, ResolvedEvent, StreamPosition,
    SubscribeToStreamOptions,
};

use crate::helpers::*;

/// (stream, revision) of the events a system stream's links point at, read with links
/// resolved; `None` for a link whose event is gone.
async fn resolved(client: &Client, stream: &str) -> Vec<Option<(String, u64)>> {
    let options = ReadStreamOptions::default()
        .position(StreamPosition::Start)
        .resolve_link_tos();
    let mut reader = client.read_stream(stream, &options).await.expect("read");
    let mut found = Vec::new();
    while let Some(event) = reader.next().await.expect("next") {
        found.push(target_of(&event));
    }
    found
}

fn target_of(event: &ResolvedEvent) -> Option<(String, u64)> {
    let link = event.link.as_ref().expect("a link");
    assert_eq!(link.event_type, "$>");
    event
        .event
        .as_ref()
        .map(|e| (e.stream_id.clone(), e.revision))
}

fn at(stream: &str, revision: u64) -> Option<(String, u64)> {
    Some((stream.to_string(), revision))
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_linked_by_category_type_and_first_event() {
    let store = spawn_store().await;
    let client = &store.client;
    let category = format!("shop{}", uuid::Uuid::new_v4().simple());
    let first = format!("{category}-1");
    let second = format!("{category}-2");
    let placed = format!("Placed{}", uuid::Uuid::new_v4().simple());
    append(
        client,
        &first,
        ExpectedRevision::NoStream,
        vec![event(&placed, 0)],
    )
    .await
    .unwrap();
    append(
        client,
        &second,
        ExpectedRevision::NoStream,
        vec![event(&placed, 1), event("Shipped", 2)],
    )
    .await
    .unwrap();
    append(
        client,
        &first,
        ExpectedRevision::Exact(0),
        vec![event("Shipped", 3)],
    )
    .await
    .unwrap();

    assert_eq!(
        resolved(client, &format!("$ce-{category}")).await,
        [at(&first, 0), at(&second, 0), at(&second, 1), at(&first, 1)]
    );
    assert_eq!(
        resolved(client, &format!("$et-{placed}")).await,
        [at(&first, 0), at(&second, 0)]
    );
    let streams = resolved(client, "$streams").await;
    assert!(streams.contains(&at(&first, 0)) && streams.contains(&at(&second, 0)));
    assert!(!streams.contains(&at(&second, 1)), "only first events");

    // Unresolved, a link is the link itself: `{revision}@{stream}`.
    let mut reader = client
        .read_stream(
            format!("$ce-{category}").as_str(),
            &ReadStreamOptions::default(),
        )
        .await
        .unwrap();
    let link = reader.next().await.unwrap().expect("a link");
    assert!(link.link.is_none());
    let recorded = link.get_original_event();
    assert_eq!(recorded.event_type, "$>");
    assert_eq!(
        std::str::from_utf8(&recorded.data).unwrap(),
        format!("0@{first}")
    );

    // A link whose event is gone resolves to nothing, the link still there.
    client
        .tombstone_stream(first.as_str(), &Default::default())
        .await
        .unwrap();
    assert_eq!(
        resolved(client, &format!("$ce-{category}")).await,
        [None, at(&second, 0), at(&second, 1), None]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_category_can_be_followed_live() {
    let store = spawn_store().await;
    let client = &store.client;
    let category = format!("live{}", uuid::Uuid::new_v4().simple());
    let before = format!("{category}-a");
    append(
        client,
        &before,
        ExpectedRevision::NoStream,
        vec![event("Placed", 0)],
    )
    .await
    .unwrap();
    let options = SubscribeToStreamOptions::default()
        .start_from(StreamPosition::Start)
        .resolve_link_tos();
    let mut subscription = client
        .subscribe_to_stream(format!("$ce-{category}").as_str(), &options)
        .await;
    let history = within("the first link", subscription.next()).await.unwrap();
    assert_eq!(target_of(&history), at(&before, 0));
    let after = format!("{category}-b");
    append(
        client,
        &after,
        ExpectedRevision::NoStream,
        vec![event("Placed", 1)],
    )
    .await
    .unwrap();
    let live = within("the live link", subscription.next()).await.unwrap();
    assert_eq!(target_of(&live), at(&after, 0));
    let data: serde_json::Value =
        serde_json::from_slice(&live.event.as_ref().expect("resolved").data).unwrap();
    assert_eq!(data["n"], 1, "the resolved event's own data");
}

#[tokio::test(flavor = "multi_thread")]
async fn links_go_on_after_a_restart_and_a_log_without_them_is_linked_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let start = |system_streams: bool| {
        let mut settings = estore::Settings::ephemeral(dir.path());
        settings.system_streams = system_streams;
        estore::start(settings)
    };
    let category = format!("old{}", uuid::Uuid::new_v4().simple());
    let server = start(false).await.unwrap();
    let client = client_for(&server);
    for n in 0..3 {
        let stream = format!("{category}-{n}");
        append(
            &client,
            &stream,
            ExpectedRevision::NoStream,
            vec![event("Placed", n)],
        )
        .await
        .unwrap();
    }
    server.stop().await;

    let server = start(true).await.unwrap();
    let client = client_for(&server);
    let stream = format!("{category}-3");
    append(
        &client,
        &stream,
        ExpectedRevision::NoStream,
        vec![event("Placed", 3)],
    )
    .await
    .unwrap();
    let expected: Vec<_> = (0..4).map(|n| at(&format!("{category}-{n}"), 0)).collect();
    within("the old events are linked, in log order", async {
        while resolved(&client, &format!("$ce-{category}")).await != expected {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    server.stop().await;

    let server = start(true).await.unwrap();
    let client = client_for(&server);
    let stream = format!("{category}-4");
    append(
        &client,
        &stream,
        ExpectedRevision::NoStream,
        vec![event("Placed", 4)],
    )
    .await
    .unwrap();
    let links = resolved(&client, &format!("$ce-{category}")).await;
    assert_eq!(links.len(), 5);
    assert_eq!(links[4], at(&stream, 0));
    server.stop().await;
}

/// The system streams are the store's own: clients cannot append to or delete them, and their
/// links are not in `$all` (only the events they point at are).
#[tokio::test(flavor = "multi_thread")]
async fn the_system_streams_are_the_store_s_own() {
    let store = spawn_store().await;
    let client = &store.client;
    let category = format!("own{}", uuid::Uuid::new_v4().simple());
    let stream = format!("{category}-1");
    append(
        client,
        &stream,
        ExpectedRevision::NoStream,
        vec![event("Placed", 0)],
    )
    .await
    .unwrap();
    let link_stream = format!("$ce-{category}");
    let written = append(
        client,
        &link_stream,
        ExpectedRevision::Any,
        vec![event("Forged", 1)],
    )
    .await;
    assert!(
        matches!(
            written,
            Err(eventstore::Error::Grpc {
                code: tonic::Code::InvalidArgument,
                ..
            })
        ),
        "{written:?}"
    );
    let deleted = client
        .delete_stream(link_stream.as_str(), &Default::default())
        .await;
    assert!(deleted.is_err(), "{deleted:?}");
    assert_eq!(resolved(client, &link_stream).await, [at(&stream, 0)]);

    let mut all = client
        .read_all(&eventstore::ReadAllOptions::default().max_count(100_000))
        .await
        .unwrap();
    while let Some(event) = all.next().await.unwrap() {
        assert_ne!(
            event.get_original_event().event_type,
            "$>",
            "no link in $all"
        );
    }
}
