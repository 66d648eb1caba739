//! Event store benchmark: run with `scripts/bench-estore` (which records the output in
//! `docs/benchmarks.md`). Not a test: it prints figures and asserts nothing.
//!
//! In one run, on this machine, it measures
//! - the machine's own limits: fsync'd appends to a plain file one at a time and in groups of the
//!   sizes the store's group commit sees, a loopback hello-world HTTP POST rate (CPU side), and
//!   the protocol's floor: the official client against a server that keeps nothing;
//! - the store through the official Rust client: append rate and p50/p99 latency with 1 and 64
//!   concurrent writers (~300-byte JSON events), and the $all replay rate;
//!
//! and prints the store's figures as ratios of the limits, since the machine is shared and noisy.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::Arc;

use eventstore::{
    AppendToStreamOptions, BatchAppendClient, BatchAppendOptions, Client, EventData,
    ExpectedRevision, ReadAllOptions, ReadStreamOptions, StreamPosition,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "support/floor.rs"]
mod floor;

/// The allocator the `minimall` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bounds: every phase stops by count or by time, whichever comes first.
const SINGLE_WRITER_APPENDS: usize = 3_000;
const MANY_WRITERS: usize = 64;
const MANY_WRITERS_APPENDS_EACH: usize = 400;
const REPLAY_EVENTS: usize = 300_000;
const REPLAY_BATCH_EVENTS: usize = 1_000;
const RAW_FSYNC_SECONDS: f64 = 2.0;
const HTTP_SECONDS: f64 = 3.0;
const HTTP_CONNECTIONS: usize = 64;
const PHASE_TIME_MAX: Duration = Duration::from_secs(120);

fn event_body(n: usize) -> serde_json::Value {
    serde_json::json!({
        "orderId": format!("3f1c6f0e-8a51-4d0e-9b7c-{n:012}"),
        "orderStatus": "AwaitingDeposit",
        "customerId": "customer-0042",
        "productId": "product-0007",
        "quantity": 2,
        "amount": {"value": 4990, "currency": "EUR"},
        "depositReference": format!("MM-{n:08}"),
        "dueAt": "2026-12-01T12:00:00Z",
        "account": "DE89 3704 0044 0532 0130 00"
    })
}

fn event(n: usize) -> EventData {
    EventData::json("PayPlaced", &event_body(n)).expect("json")
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn percentile(&mut self, p: f64) -> Duration {
        self.0.sort_unstable();
        let index = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[index]
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// fsync'd appends of `group` events of `event_bytes` each to a plain file, for a bounded time.
fn raw_fsync_rate(dir: &Path, group: usize, event_bytes: usize) -> f64 {
    let path = dir.join(format!("raw-{group}.log"));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .expect("raw file");
    let chunk = vec![b'e'; event_bytes * group];
    let started = Instant::now();
    let mut events = 0usize;
    while started.elapsed().as_secs_f64() < RAW_FSYNC_SECONDS {
        file.write_all(&chunk).expect("write");
        file.sync_data().expect("fsync");
        events += group;
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(path);
    rate
}

/// A minimal HTTP/1.1 server answering every POST with a tiny JSON body.
async fn hello_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut filled = 0;
                loop {
                    let Ok(n) = socket.read(&mut buf[filled..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    filled += n;
                    // Each request is headers + a 2-byte body; answer every complete one.
                    while let Some(end) = find_request_end(&buf[..filled]) {
                        let response = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
                        if socket.write_all(response).await.is_err() {
                            return;
                        }
                        buf.copy_within(end..filled, 0);
                        filled -= end;
                    }
                }
            });
        }
    });
    addr
}

fn find_request_end(buf: &[u8]) -> Option<usize> {
    let headers_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    (buf.len() >= headers_end + 2).then_some(headers_end + 2)
}

/// Requests per second of the hello server with keep-alive connections, for a bounded time.
async fn http_post_rate(addr: SocketAddr) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(HTTP_SECONDS);
    let mut tasks = Vec::new();
    for _ in 0..HTTP_CONNECTIONS {
        tasks.push(tokio::spawn(async move {
            let mut socket = TcpStream::connect(addr).await.expect("connect");
            socket.set_nodelay(true).expect("nodelay");
            let request = b"POST /hello HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
            let mut buf = vec![0u8; 4096];
            let mut done = 0u64;
            while Instant::now() < deadline {
                socket.write_all(request).await.expect("send");
                let mut filled = 0;
                loop {
                    let n = socket.read(&mut buf[filled..]).await.expect("receive");
                    assert!(n > 0, "server closed");
                    filled += n;
                    if buf[..filled].ends_with(b"{\"ok\":true}") {
                        break;
                    }
                }
                done += 1;
            }
            done
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("http task");
    }
    total as f64 / started.elapsed().as_secs_f64().max(HTTP_SECONDS)
}

/// How writers reach the store: one Append call per append, or multiplexed on one BatchAppend
/// call (what the Node and Python clients do).
#[derive(Clone)]
enum Appender {
    Plain(Box<Client>),
    Batch(Arc<BatchAppendClient>),
}

impl Appender {
    async fn append(&self, stream: &str, n: usize) -> Duration {
        let started = Instant::now();
        match self {
            Appender::Plain(client) => return append_one(client, stream, n).await,
            Appender::Batch(batch) => {
                batch
                    .append_to_stream(stream, ExpectedRevision::Any, vec![event(n)])
                    .await
                    .expect("batch append");
            }
        };
        started.elapsed()
    }
}

async fn append_one(client: &Client, stream: &str, n: usize) -> Duration {
    let started = Instant::now();
    client
        .append_to_stream(
            stream,
            &AppendToStreamOptions::default().expected_revision(ExpectedRevision::Any),
            event(n),
        )
        .await
        .expect("append");
    started.elapsed()
}

struct WriteFigures {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

async fn writers(appender: &Appender, writers: usize, appends_each: usize) -> WriteFigures {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let appender = appender.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("payment-bench-{w}-{}", uuid::Uuid::new_v4().simple());
            let mut latencies = Vec::with_capacity(appends_each);
            let phase_started = Instant::now();
            for n in 0..appends_each {
                if phase_started.elapsed() > PHASE_TIME_MAX {
                    break;
                }
                latencies.push(appender.append(&stream, n).await);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("writer"));
    }
    let elapsed = started.elapsed();
    let mut latencies = Latencies(all);
    WriteFigures {
        rate: latencies.0.len() as f64 / elapsed.as_secs_f64(),
        p50: latencies.percentile(0.50),
        p99: latencies.percentile(0.99),
    }
}

async fn fill_for_replay(client: &Client) {
    let batches = REPLAY_EVENTS / REPLAY_BATCH_EVENTS;
    let started = Instant::now();
    for b in 0..batches {
        if started.elapsed() > PHASE_TIME_MAX {
            break;
        }
        let events: Vec<_> = (0..REPLAY_BATCH_EVENTS)
            .map(|i| event(b * REPLAY_BATCH_EVENTS + i))
            .collect();
        client
            .append_to_stream(
                format!("order-replay-{}", b % 100),
                &AppendToStreamOptions::default(),
                events,
            )
            .await
            .expect("fill");
    }
}

async fn replay_rate(client: &Client) -> (usize, f64) {
    replay_rate_of(client, usize::MAX).await
}

/// `$all` from the start, at most `count` events.
async fn replay_rate_of(client: &Client, count: usize) -> (usize, f64) {
    let started = Instant::now();
    let options = ReadAllOptions::default()
        .position(StreamPosition::Start)
        .max_count(count);
    let mut reader = client.read_all(&options).await.expect("read all");
    let mut count = 0usize;
    while let Some(event) = reader.next().await.expect("next") {
        std::hint::black_box(&event);
        count += 1;
        if started.elapsed() > PHASE_TIME_MAX {
            break;
        }
    }
    (count, count as f64 / started.elapsed().as_secs_f64())
}

/// What the official client reaches against the protocol's floor (a server that keeps
/// nothing): one writer's append latency, 64 writers' rate over Append, and the `$all` replay
/// rate.
struct Floor {
    append_p50: Duration,
    append_p99: Duration,
    many: f64,
    replay: f64,
}

async fn floor_figures() -> Floor {
    let body = serde_json::to_vec(&event_body(0)).expect("json");
    let addr = floor::start(body).await;
    let client =
        Client::new(estore::connection_string(addr).parse().expect("url")).expect("client");
    append_one(&client, "warm-up", 0).await;
    let mut appends = Latencies(Vec::with_capacity(SINGLE_WRITER_APPENDS));
    for n in 0..SINGLE_WRITER_APPENDS {
        appends
            .0
            .push(append_one(&client, "payment-floor", n).await);
    }
    let many = writers(
        &Appender::Plain(Box::new(client.clone())),
        MANY_WRITERS,
        MANY_WRITERS_APPENDS_EACH,
    )
    .await;
    let (_, replay) = replay_rate_of(&client, REPLAY_EVENTS).await;
    Floor {
        append_p50: appends.percentile(0.5),
        append_p99: appends.percentile(0.99),
        many: many.rate,
        replay,
    }
}

/// The log's own read rate, without the protocol: pages straight from storage.
async fn storage_scan_rate(dir: &Path) -> f64 {
    let store = estore::storage::Store::open(dir, &estore::Limits::default(), false)
        .expect("open for scan");
    let started = Instant::now();
    let mut from = 0;
    let mut count = 0usize;
    loop {
        let page = store
            .read_all(from, estore::storage::Direction::Forwards, 4096)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        count += page.len();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// `BENCH_ONLY=many` (64 writers; `BENCH_BATCH=1` for BatchAppend) or `BENCH_ONLY=replay` runs
/// one phase alone, for profiling; `BENCH_URL` points it at a store in another process.
fn only(phase: &str) -> bool {
    std::env::var("BENCH_ONLY").is_ok_and(|v| v == phase)
}

/// CPU seconds used so far by this process (user + system).
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass and keeps no pointer.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU seconds used so far by another process, from /proc (Linux).
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / per_second
}

/// CPU per append, split between the client (this process) and the store running as the real
/// `minimall estore` binary in its own process (`MINIMALL_BIN`, set by scripts/bench-estore).
/// Returns (client µs, server µs, appends/s) per kind of appender.
async fn cpu_split(binary: &str, dir: &Path) -> Vec<(&'static str, f64, f64, f64)> {
    let mut child = std::process::Command::new(binary)
        .args(["estore", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start minimall estore");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("listening line");
    let url = line
        .split_once('(')
        .and_then(|(_, rest)| rest.trim_end().strip_suffix(')'))
        .expect("url")
        .to_string();
    let client = Client::new(url.parse().expect("url")).expect("client");
    append_one(&client, "warm-up", 0).await;
    let batch = Arc::new(
        client
            .batch_append(&BatchAppendOptions::default())
            .await
            .expect("batch"),
    );
    let mut rows = Vec::new();
    for (name, appender) in [
        ("Append", Appender::Plain(Box::new(client.clone()))),
        ("BatchAppend", Appender::Batch(batch)),
    ] {
        let (client_before, server_before) = (own_cpu_seconds(), process_cpu_seconds(child.id()));
        let figures = writers(&appender, MANY_WRITERS, MANY_WRITERS_APPENDS_EACH).await;
        let appends = (MANY_WRITERS * MANY_WRITERS_APPENDS_EACH) as f64;
        let client_us = (own_cpu_seconds() - client_before) / appends * 1e6;
        let server_us = (process_cpu_seconds(child.id()) - server_before) / appends * 1e6;
        rows.push((name, client_us, server_us, figures.rate));
    }
    let _ = child.kill();
    let _ = child.wait();
    rows
}

/// Whether the store keeps its system streams in this run (`BENCH_SYSTEM_STREAMS=0`: no).
fn system_streams() -> bool {
    std::env::var("BENCH_SYSTEM_STREAMS").as_deref() != Ok("0")
}

/// A store for one phase run alone; `BENCH_URL` points the client at a store in another
/// process instead (to split CPU time by process); `BENCH_SYSTEM_STREAMS=0` runs it without the
/// system streams (`$ce-`, `$et-`, `$streams`), to see what keeping them costs.
async fn phase_store() -> (tempfile::TempDir, estore::RunningStore, Client) {
    let dir = tempfile::tempdir().expect("dir");
    let mut settings = estore::Settings::ephemeral(dir.path());
    settings.system_streams = system_streams();
    let server = estore::start(settings).await.expect("store");
    let url = std::env::var("BENCH_URL").unwrap_or_else(|_| server.connection_string());
    let client = Client::new(url.parse().expect("url")).expect("client");
    (dir, server, client)
}

/// Where one writer's append time goes, layer by layer (`BENCH_ONLY=latency`): SQLite alone
/// (one insert and commit, the store's pragmas), the log without the protocol
/// (`Store::append`: queue, writer thread, commit, answer), a gRPC round trip that touches no
/// log write (reading a missing stream), and the whole append through the official client.
async fn latency_breakdown(dir: &Path) {
    const APPENDS: usize = 2_000;
    std::fs::create_dir_all(dir).expect("latency dir");
    let body = serde_json::to_vec(&event_body(0)).expect("json");
    let conn = rusqlite::Connection::open(dir.join("alone.sqlite")).expect("sqlite");
    // `SQLITE_SETUP` replaces the pragmas, to see what each of the store's costs.
    let setup = std::env::var("SQLITE_SETUP")
        .unwrap_or_else(|_| "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;".into());
    conn.execute_batch(&setup).expect("pragmas");
    conn.execute_batch(
        "CREATE TABLE t (p INTEGER PRIMARY KEY, s TEXT, r INTEGER, d BLOB);
         CREATE UNIQUE INDEX ts ON t (s, r);",
    )
    .expect("schema");
    let mut sqlite = Latencies(Vec::with_capacity(APPENDS));
    for n in 0..APPENDS {
        let started = Instant::now();
        let tx = conn.unchecked_transaction().expect("tx");
        tx.execute(
            "INSERT INTO t (s, r, d) VALUES (?1, ?2, ?3)",
            rusqlite::params!["payment-alone", n as i64, body],
        )
        .expect("insert");
        tx.commit().expect("commit");
        sqlite.0.push(started.elapsed());
    }
    let store = estore::storage::Store::open(
        &dir.join("direct"),
        &estore::Limits::default(),
        system_streams(),
    )
    .expect("store");
    let mut direct = Latencies(Vec::with_capacity(APPENDS));
    let counters = store.commit_counters();
    let writing_before = counters
        .writing_ns
        .load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..APPENDS {
        let event = estore::storage::NewEvent {
            id: uuid::Uuid::new_v4(),
            event_type: estore::storage::Text::from_static("PayPlaced"),
            content_type: estore::storage::Text::from_static("application/json"),
            custom_metadata: bytes::Bytes::new(),
            data: bytes::Bytes::from(body.clone()),
        };
        let started = Instant::now();
        store
            .append(
                "payment-direct".into(),
                estore::storage::ExpectedRevision::Any,
                vec![event],
            )
            .await
            .expect("append");
        direct.0.push(started.elapsed());
    }
    let writing_ms = (counters
        .writing_ns
        .load(std::sync::atomic::Ordering::Relaxed)
        - writing_before) as f64
        / APPENDS as f64
        / 1e6;
    let mut loopback = Latencies(Vec::with_capacity(APPENDS));
    let mut socket = TcpStream::connect(hello_server().await)
        .await
        .expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    let mut answer = vec![0u8; 4096];
    for _ in 0..APPENDS {
        let started = Instant::now();
        socket
            .write_all(b"POST /hello HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 2\r\n\r\n{}")
            .await
            .expect("send");
        let mut filled = 0;
        while !answer[..filled].ends_with(b"{\"ok\":true}") {
            filled += socket.read(&mut answer[filled..]).await.expect("receive");
        }
        loopback.0.push(started.elapsed());
    }
    let (_dir, server, client) = phase_store().await;
    let mut raw = Latencies(Vec::with_capacity(APPENDS));
    let mut unary = Latencies(Vec::with_capacity(APPENDS));
    let unary_cpu_us;
    {
        use estore::proto::event_store::client::streams::read_req::options as o;
        use estore::proto::event_store::client::streams::{
            read_req, streams_client::StreamsClient, ReadReq,
        };
        use estore::proto::event_store::client::{Empty, StreamIdentifier};
        let mut tonic_client = StreamsClient::connect(format!("http://{}", server.local_addr()))
            .await
            .expect("raw connect");
        let request = ReadReq {
            options: Some(read_req::Options {
                stream_option: Some(o::StreamOption::Stream(o::StreamOptions {
                    stream_identifier: Some(StreamIdentifier {
                        stream_name: bytes::Bytes::from_static(b"missing"),
                    }),
                    revision_option: Some(o::stream_options::RevisionOption::Start(Empty {})),
                })),
                read_direction: 0,
                resolve_links: false,
                count_option: Some(o::CountOption::Count(10)),
                filter_option: Some(o::FilterOption::NoFilter(Empty {})),
                uuid_option: None,
                control_option: None,
            }),
        };
        let mut features = estore::proto::event_store::client::server_features::server_features_client::ServerFeaturesClient::connect(
            format!("http://{}", server.local_addr()),
        )
        .await
        .expect("raw connect");
        let cpu_before = own_cpu_seconds();
        for _ in 0..APPENDS {
            let started = Instant::now();
            features
                .get_supported_methods(Empty {})
                .await
                .expect("features");
            unary.0.push(started.elapsed());
        }
        unary_cpu_us = (own_cpu_seconds() - cpu_before) * 1e6 / APPENDS as f64;
        for _ in 0..APPENDS {
            let started = Instant::now();
            let mut answers = tonic_client
                .read(request.clone())
                .await
                .expect("read")
                .into_inner();
            while answers.message().await.expect("message").is_some() {}
            raw.0.push(started.elapsed());
        }
    }
    let mut rpc = Latencies(Vec::with_capacity(APPENDS));
    for _ in 0..APPENDS {
        let started = Instant::now();
        let mut reader = client
            .read_stream("missing", &ReadStreamOptions::default())
            .await
            .expect("read");
        let _ = reader.next().await;
        rpc.0.push(started.elapsed());
    }
    let mut whole = Latencies(Vec::with_capacity(APPENDS));
    for n in 0..APPENDS {
        whole.0.push(append_one(&client, "payment-whole", n).await);
    }
    for (name, figures) in [
        (
            "SQLite alone: insert + commit (WAL, synchronous=FULL)",
            &mut sqlite,
        ),
        ("the log without the protocol: Store::append", &mut direct),
        (
            "loopback HTTP/1.1 round trip, one connection, same process",
            &mut loopback,
        ),
        (
            "gRPC unary call that touches nothing (ServerFeatures), plain tonic client",
            &mut unary,
        ),
        (
            "gRPC round trip, no write: read a missing stream, plain tonic client",
            &mut raw,
        ),
        ("gRPC round trip, no write: read a missing stream", &mut rpc),
        ("the whole append through the Rust client", &mut whole),
    ] {
        println!(
            "| latency: {name} | {:.3} / {:.3} ms | p50 / p99 |",
            ms(figures.percentile(0.5)),
            ms(figures.percentile(0.99))
        );
    }
    println!("| latency: CPU of one ServerFeatures call, client and server (this process) | {unary_cpu_us:.1} µs | mean |");
    println!("| latency: of Store::append, the writer's own transaction (apply + commit) | {writing_ms:.3} ms | mean; the rest is the hand-off |");
}

#[tokio::main]
async fn main() {
    if only("latency") {
        let dir = tempfile::tempdir().expect("dir");
        println!(
            "| raw fsync, 1 event per fsync | {:.3} ms | |",
            1000.0 / raw_fsync_rate(dir.path(), 1, 296)
        );
        latency_breakdown(dir.path()).await;
        return;
    }
    if only("floor") {
        let floor = floor_figures().await;
        println!(
            "floor: append p50 {:.3} ms, p99 {:.3} ms; {MANY_WRITERS} writers {:.0} appends/s; replay {:.0} events/s",
            ms(floor.append_p50),
            ms(floor.append_p99),
            floor.many,
            floor.replay
        );
        return;
    }
    if only("replay") {
        let (_dir, _server, client) = phase_store().await;
        fill_for_replay(&client).await;
        eprintln!("filled; replaying");
        let (replayed, replay) = replay_rate(&client).await;
        println!("replay: {replayed} events, {replay:.0} events/s");
        return;
    }
    if only("single") {
        let (_dir, _server, client) = phase_store().await;
        // `BENCH_WARM_APPENDS=N` appends N events first (past the WAL's first checkpoint at
        // ~10,000 pages, the WAL is overwritten in place instead of growing).
        let warm: usize = std::env::var("BENCH_WARM_APPENDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        for n in 0..warm {
            append_one(&client, "payment-bench-warm", n).await;
        }
        let mut single = Latencies(Vec::new());
        for n in 0..SINGLE_WRITER_APPENDS {
            single
                .0
                .push(append_one(&client, "payment-bench-single", n).await);
        }
        println!(
            "single: p50 {:.3} ms, p99 {:.3} ms",
            ms(single.percentile(0.5)),
            ms(single.percentile(0.99))
        );
        return;
    }
    if only("many") {
        let (_dir, server, client) = phase_store().await;
        let appender = if std::env::var("BENCH_BATCH").is_ok() {
            Appender::Batch(Arc::new(
                client
                    .batch_append(&BatchAppendOptions::default())
                    .await
                    .expect("batch"),
            ))
        } else {
            Appender::Plain(Box::new(client))
        };
        let many = writers(&appender, MANY_WRITERS, MANY_WRITERS_APPENDS_EACH * 4).await;
        let counters = server.commit_counters();
        let group = counters.requests.load(std::sync::atomic::Ordering::Relaxed) as f64
            / counters
                .commits
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(1) as f64;
        println!("{MANY_WRITERS} writers: {:.0} appends/s, p50 {:.3} ms, p99 {:.3} ms, in-process group size {group:.1}", many.rate, ms(many.p50), ms(many.p99));
        return;
    }
    let root = std::env::var("BENCH_DIR").unwrap_or_else(|_| "target/bench-estore".into());
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench dir");
    let root = Path::new(&root);
    let event_bytes = serde_json::to_vec(&event_body(0)).expect("json").len();

    eprintln!("measuring the machine's limits…");
    let raw_one = raw_fsync_rate(root, 1, event_bytes);
    let raw_group = raw_fsync_rate(root, MANY_WRITERS, event_bytes);
    let http = http_post_rate(hello_server().await).await;
    let floor = floor_figures().await;

    eprintln!("measuring the store…");
    let data_dir = root.join("store");
    let server = estore::start(estore::Settings::ephemeral(&data_dir))
        .await
        .expect("store");
    let client = Client::new(server.connection_string().parse().expect("url")).expect("client");
    append_one(&client, "warm-up", 0).await;
    let started_connect = Instant::now();
    let fresh = Client::new(server.connection_string().parse().expect("url")).expect("client");
    append_one(&fresh, "warm-up", 1).await;
    let first_append = started_connect.elapsed();

    let mut single = Latencies(Vec::with_capacity(SINGLE_WRITER_APPENDS));
    let single_started = Instant::now();
    for n in 0..SINGLE_WRITER_APPENDS {
        single
            .0
            .push(append_one(&client, "payment-bench-single", n).await);
    }
    let single_rate = SINGLE_WRITER_APPENDS as f64 / single_started.elapsed().as_secs_f64();
    let (single_p50, single_p99) = (single.percentile(0.5), single.percentile(0.99));

    let many = writers(
        &Appender::Plain(Box::new(client.clone())),
        MANY_WRITERS,
        MANY_WRITERS_APPENDS_EACH,
    )
    .await;
    let batch = client
        .batch_append(&BatchAppendOptions::default())
        .await
        .expect("batch append");
    let many_batched = writers(
        &Appender::Batch(Arc::new(batch)),
        MANY_WRITERS,
        MANY_WRITERS_APPENDS_EACH,
    )
    .await;
    fill_for_replay(&client).await;
    let (replayed, replay) = replay_rate(&client).await;
    server.stop().await;
    let scan = storage_scan_rate(&data_dir).await;
    let split = match std::env::var("MINIMALL_BIN") {
        Ok(binary) => cpu_split(&binary, &root.join("split")).await,
        Err(_) => Vec::new(),
    };
    let _ = std::fs::remove_dir_all(root);

    let limit_many = raw_group.min(http);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("| figure | value | ratio |");
    println!("|---|---|---|");
    println!("| machine: fsync'd appends to a plain file, 1 event per fsync ({event_bytes} B events) | {raw_one:.0} events/s | limit |");
    println!("| machine: fsync'd appends to a plain file, {MANY_WRITERS} events per fsync | {raw_group:.0} events/s | limit |");
    println!("| machine: loopback hello-world HTTP/1.1 POST, {HTTP_CONNECTIONS} keep-alive connections, load generator in-process ({cores} cores) | {http:.0} req/s | limit |");
    println!(
        "| machine: the protocol's floor, one writer's append through the Rust client to a server that writes nothing, p50 / p99 | {:.3} / {:.3} ms | limit |",
        ms(floor.append_p50),
        ms(floor.append_p99)
    );
    println!("| machine: the protocol's floor, {MANY_WRITERS} writers over Append through the Rust client to a server that writes nothing | {:.0} appends/s | limit |", floor.many);
    println!("| machine: the protocol's floor, $all replay through the Rust client from a server that keeps nothing (the same event from memory) | {:.0} events/s | limit |", floor.replay);
    println!(
        "| store: first append on a new client (connect + ServerFeatures + append) | {:.2} ms | |",
        ms(first_append)
    );
    println!(
        "| store: 1 writer, appends/s | {single_rate:.0} /s | {:.0}% of 1-event fsync rate |",
        100.0 * single_rate / raw_one
    );
    println!(
        "| store: 1 writer, append latency p50 / p99 | {:.3} / {:.3} ms | p50 {:.1} raw fsyncs, floor + {:.3} ms |",
        ms(single_p50),
        ms(single_p99),
        single_p50.as_secs_f64() * raw_one,
        ms(single_p50.saturating_sub(floor.append_p50))
    );
    println!("| store: {MANY_WRITERS} writers, appends/s | {:.0} /s | {:.0}% of the lower limit ({limit_many:.0}/s), {:.0}% of the floor; target ≥ 50% of the lower limit |", many.rate, 100.0 * many.rate / limit_many, 100.0 * many.rate / floor.many);
    println!(
        "| store: {MANY_WRITERS} writers, append latency p50 / p99 | {:.3} / {:.3} ms | |",
        ms(many.p50),
        ms(many.p99)
    );
    println!("| store: {MANY_WRITERS} writers on one BatchAppend call, appends/s | {:.0} /s | {:.0}% of the lower limit; target ≥ 50% |", many_batched.rate, 100.0 * many_batched.rate / limit_many);
    println!("| store: {MANY_WRITERS} writers on one BatchAppend call, latency p50 / p99 | {:.3} / {:.3} ms | |", ms(many_batched.p50), ms(many_batched.p99));
    println!("| store: $all replay through the Rust client ({replayed} events) | {replay:.0} events/s | {:.0}% of the floor; target ≥ 1M/s |", 100.0 * replay / floor.replay);
    println!(
        "| store: $all scan inside the server (storage only, no protocol) | {scan:.0} events/s | |"
    );
    for (name, client_us, server_us, rate) in split {
        println!("| CPU per append, {MANY_WRITERS} writers over {name}, store in its own process ({rate:.0} appends/s) | client {client_us:.1} µs, server {server_us:.1} µs | ceiling ≈ {:.0}/s on {cores} cores |", cores as f64 * 1e6 / (client_us + server_us));
    }
    latency_breakdown(&root.join("latency")).await;
}
