//! Durability under `kill -9`: the real `minimall estore` process is killed while 32 writers
//! append concurrently; after a restart on the same directory every acknowledged event is there,
//! at the revision it was acknowledged with, and every stored event is whole.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ExpectedRevision, ReadStreamOptions,
    StreamPosition,
};

const WRITERS: u64 = 32;
const KILL_ROUNDS: u64 = 3;

struct Store {
    child: Child,
    connection_string: String,
}

fn start_store(data_dir: &std::path::Path) -> Store {
    let mut child = Command::new(env!("CARGO_BIN_EXE_minimall"))
        .args(["estore", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start minimall estore");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let connection_string = line
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    Store {
        child,
        connection_string,
    }
}

fn connect(store: &Store) -> Client {
    let settings: ClientSettings = store.connection_string.parse().expect("connection string");
    Client::new(settings).expect("client")
}

/// What the store acknowledged: per stream, the event id at each revision.
type Acked = Arc<Mutex<HashMap<String, Vec<uuid::Uuid>>>>;

async fn write_until_killed(client: Client, stream: String, acked: Acked) {
    let mut next_revision = acked
        .lock()
        .unwrap()
        .get(&stream)
        .map_or(0, |v| v.len() as u64);
    loop {
        let id = uuid::Uuid::new_v4();
        let event = EventData::json("StockAdded", &serde_json::json!({"stream": stream, "revision": next_revision, "pad": "p".repeat(200)}))
            .unwrap()
            .id(id);
        let expected = match next_revision {
            0 => ExpectedRevision::NoStream,
            n => ExpectedRevision::Exact(n - 1),
        };
        let options = AppendToStreamOptions::default().expected_revision(expected);
        match client
            .append_to_stream(stream.as_str(), &options, event)
            .await
        {
            Ok(result) => {
                assert_eq!(result.next_expected_version, next_revision);
                acked
                    .lock()
                    .unwrap()
                    .entry(stream.clone())
                    .or_default()
                    .push(id);
                next_revision += 1;
            }
            // The server is gone: an unacknowledged append may or may not have landed.
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_concurrent_appends_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let acked: Acked = Arc::default();
    for round in 0..KILL_ROUNDS {
        let mut store = start_store(dir.path());
        let client = connect(&store);
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(write_until_killed(
                    client.clone(),
                    format!("crash-{w}"),
                    Arc::clone(&acked),
                ))
            })
            .collect();
        // Let appends flow, then kill at a moment that varies by round.
        tokio::time::sleep(Duration::from_millis(300 + 170 * round)).await;
        store.child.kill().expect("kill -9");
        store.child.wait().unwrap();
        for writer in writers {
            tokio::time::timeout(Duration::from_secs(30), writer)
                .await
                .expect("writer stops")
                .unwrap();
        }
        // After a crash, a writer resumes from what the store really holds.
        let restarted = start_store(dir.path());
        verify(&connect(&restarted), &acked).await;
        let mut restarted = restarted;
        restarted.child.kill().unwrap();
        restarted.child.wait().unwrap();
    }
    let total: usize = acked.lock().unwrap().values().map(Vec::len).sum();
    eprintln!(
        "{total} events acknowledged over {KILL_ROUNDS} kill -9 rounds, all found after restart"
    );
    assert!(
        total > 100,
        "the test must actually write under load, acked {total}"
    );
}

/// Every acknowledged event is present, with its id at its revision, and every stored event
/// parses (nothing partial). Events written but not acknowledged before the kill may exist past
/// the acknowledged ones; they are adopted so the next round continues after them.
async fn verify(client: &Client, acked: &Acked) {
    let snapshot = acked.lock().unwrap().clone();
    for w in 0..WRITERS {
        let stream = format!("crash-{w}");
        let expected_ids = snapshot.get(&stream).cloned().unwrap_or_default();
        let options = ReadStreamOptions::default().position(StreamPosition::Start);
        let mut stored = Vec::new();
        match client.read_stream(stream.as_str(), &options).await {
            Ok(mut reader) => loop {
                match reader.next().await {
                    Ok(Some(event)) => {
                        let recorded = event.get_original_event();
                        let body: serde_json::Value =
                            recorded.as_json().expect("a whole JSON event");
                        assert_eq!(body["revision"], recorded.revision, "event at its revision");
                        stored.push(recorded.id);
                    }
                    Ok(None) => break,
                    Err(eventstore::Error::ResourceNotFound) => break,
                    Err(e) => panic!("read {stream}: {e}"),
                }
            },
            Err(e) => panic!("read {stream}: {e}"),
        }
        assert!(
            stored.len() >= expected_ids.len(),
            "{stream}: {} stored < {} acknowledged",
            stored.len(),
            expected_ids.len()
        );
        assert_eq!(
            &stored[..expected_ids.len()],
            &expected_ids[..],
            "{stream}: acknowledged events changed"
        );
        acked.lock().unwrap().insert(stream, stored);
    }
}
