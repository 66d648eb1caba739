use std::time::Duration;

use estore::{Limits, RunningStore, Settings};
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ExpectedRevision, ReadStreamOptions,
    ResolvedEvent, StreamPosition,
};
use serde_json::json;
use tempfile::TempDir;

pub struct TestStore {
    pub server: Option<RunningStore>,
    pub client: Client,
    pub dir: TempDir,
}

pub async fn spawn_store() -> TestStore {
    spawn_store_with(Limits::default()).await
}

pub async fn spawn_store_with(limits: Limits) -> TestStore {
    spawn_store_set(|settings| settings.limits = limits).await
}

pub async fn spawn_store_set(set: impl FnOnce(&mut Settings)) -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::ephemeral(dir.path());
    set(&mut settings);
    let server = estore::start(settings).await.expect("store starts");
    let client = client_for(&server);
    TestStore {
        server: Some(server),
        client,
        dir,
    }
}

pub fn client_for(server: &RunningStore) -> Client {
    let settings: ClientSettings = server
        .connection_string()
        .parse()
        .expect("connection string");
    Client::new(settings).expect("client")
}

/// A ~300-byte JSON event like the shop's.
pub fn event(event_type: &str, n: u64) -> EventData {
    EventData::json(
        event_type,
        &json!({ "orderId": format!("order-{n}"), "n": n, "note": "x".repeat(200) }),
    )
    .expect("json")
    .id(uuid::Uuid::new_v4())
}

pub fn unique_stream(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A new stream holding `OrderPlaced` events numbered `numbers` (written with NoStream).
pub async fn stream_with(store: &TestStore, prefix: &str, numbers: std::ops::Range<u64>) -> String {
    let stream = unique_stream(prefix);
    let events = numbers.map(|n| event("OrderPlaced", n)).collect();
    append(&store.client, &stream, ExpectedRevision::NoStream, events)
        .await
        .expect("a new stream");
    stream
}

pub async fn append(
    client: &Client,
    stream: &str,
    expected: ExpectedRevision,
    events: Vec<EventData>,
) -> eventstore::Result<eventstore::WriteResult> {
    client
        .append_to_stream(
            stream,
            &AppendToStreamOptions::default().expected_revision(expected),
            events,
        )
        .await
}

/// Reads a whole stream forwards; `Err(ResourceNotFound)` when it does not exist.
pub async fn read_all_of(client: &Client, stream: &str) -> eventstore::Result<Vec<ResolvedEvent>> {
    let options = ReadStreamOptions::default()
        .position(StreamPosition::Start)
        .forwards();
    let mut reader = client.read_stream(stream, &options).await?;
    let mut events = Vec::new();
    while let Some(event) = reader.next().await? {
        events.push(event);
    }
    Ok(events)
}

pub fn n_of(event: &ResolvedEvent) -> u64 {
    let value: serde_json::Value = event.get_original_event().as_json().expect("json body");
    value["n"].as_u64().expect("n")
}

/// Bounds every await on the server in tests: a hang is a failure, not a stuck CI.
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
