//! The network side: an h2c (HTTP/2 cleartext) gRPC server on a TCP listener, with the socket
//! options the official clients need for low latency on loopback.
//!
//! The clients never set TCP_NODELAY, so each small request would wait ~40 ms for the server's
//! delayed ACK (Nagle on their side). Re-arming TCP_QUICKACK after every read answers at once;
//! TCP_NODELAY on our side lets the headers, data and trailers of a response leave without delay.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::features::FeaturesService;
use crate::limits::{grpc_message_bytes_max, Limits};
use crate::persistent::PersistentService;
use crate::proto::event_store::client::persistent_subscriptions::persistent_subscriptions_server::PersistentSubscriptionsServer;
use crate::proto::event_store::client::server_features::server_features_server::ServerFeaturesServer;
use crate::proto::event_store::client::streams::streams_server::StreamsServer;
use crate::stats::Stats;
use crate::storage::{Store, StoreError};
use crate::streams::StreamsService;

/// HTTP/2 flow-control windows, in bytes: large enough that a replay is not throttled by
/// window updates on loopback.
const STREAM_WINDOW_BYTES: u32 = 4 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// How long `stop` lets open calls finish, in milliseconds.
const SHUTDOWN_DRAIN_MS: u64 = 2_000;

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub limits: Limits,
    /// How often the space of events no read shows any more is reclaimed.
    pub reclaim_interval: Duration,
    /// Keep the system streams `$ce-{category}`, `$et-{eventType}` and `$streams` (link
    /// events), as a node's standard projections do.
    pub system_streams: bool,
}

/// Default of [`Settings::reclaim_interval`], in seconds.
pub const RECLAIM_INTERVAL_S: u64 = 60;

impl Settings {
    /// Serving on `listen` from `data_dir`, with the default limits.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Settings {
        Settings {
            listen,
            data_dir: data_dir.into(),
            limits: Limits::default(),
            reclaim_interval: Duration::from_secs(RECLAIM_INTERVAL_S),
            system_streams: true,
        }
    }

    /// Port 0 on loopback and the given directory: what tests use.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Settings {
        Settings::new(SocketAddr::from(([127, 0, 0, 1], 0)), data_dir)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the event log: {0}")]
    Storage(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
}

/// A running store. Dropping it does not stop the server; call [`RunningStore::stop`].
pub struct RunningStore {
    local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    stats: Arc<Stats>,
    commits: Arc<crate::storage::CommitCounters>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningStore {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Group-commit counters of the log (commits, requests written).
    pub fn commit_counters(&self) -> Arc<crate::storage::CommitCounters> {
        Arc::clone(&self.commits)
    }

    /// The connection string clients should use: plain h2c, no discovery delay on connect.
    pub fn connection_string(&self) -> String {
        connection_string(self.local_addr)
    }

    /// Stops accepting and gives open calls up to `SHUTDOWN_DRAIN_MS` to end; then cuts the
    /// rest (subscriptions and BatchAppend calls never end by themselves).
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let drain = Duration::from_millis(SHUTDOWN_DRAIN_MS);
        if tokio::time::timeout(drain, &mut self.task).await.is_err() {
            tracing::info!("open calls did not end within the drain time; closing them");
            self.task.abort();
            let _ = (&mut self.task).await;
        }
    }

    /// Waits until the server ends (it only ends on `stop` or on a fatal error).
    pub async fn wait(self) -> Result<(), tonic::transport::Error> {
        match self.task.await {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    }
}

/// `esdb://HOST:PORT?tls=false&discoveryInterval=0`. Without `discoveryInterval=0` the official
/// clients sleep 500 ms before every (re)connect to a single node.
pub fn connection_string(addr: SocketAddr) -> String {
    format!("esdb://{addr}?tls=false&discoveryInterval=0")
}

/// Opens the log and starts serving; returns once the listener is bound.
pub async fn start(settings: Settings) -> Result<RunningStore, StartError> {
    let listen = |source| StartError::Listen {
        addr: settings.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(settings.listen).map_err(listen)?;
    start_on(settings, listener).await
}

/// Opens the log and starts serving on `listener`, a listening socket bound already (e.g. one
/// a supervisor handed over, which outlives this process); `settings.listen` is not used.
pub async fn start_on(
    settings: Settings,
    listener: std::net::TcpListener,
) -> Result<RunningStore, StartError> {
    let store = Store::open(
        &settings.data_dir,
        &settings.limits,
        settings.system_streams,
    )?;
    store.reclaim_every(settings.reclaim_interval);
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
        .map_err(|source| StartError::Listen {
            addr: settings.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: settings.listen,
        source,
    })?;
    let limits = Arc::new(settings.limits);
    let stats = Arc::new(Stats::default());
    let message_bytes_max = grpc_message_bytes_max(&limits);
    let commits = store.commit_counters();
    let (closing, closed) = tokio::sync::watch::channel(false);
    let persistent = PersistentSubscriptionsServer::new(
        PersistentService::start(store.clone(), Arc::clone(&limits), closed.clone()).await,
    )
    .max_decoding_message_size(message_bytes_max)
    .max_encoding_message_size(message_bytes_max);
    let streams = StreamsServer::new(StreamsService::new(
        store,
        Arc::clone(&limits),
        Arc::clone(&stats),
        closed,
    ))
    .max_decoding_message_size(message_bytes_max)
    .max_encoding_message_size(message_bytes_max);
    let features = ServerFeaturesServer::new(FeaturesService);
    let (shutdown, stopped) = oneshot::channel::<()>();
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener
            .accept()
            .await
            .map(|(socket, _)| LowLatency::new(socket));
        Some((accepted, listener))
    });
    // `GET /health/live` answers 204 over HTTP/1.1 on the gRPC port, as a KurrentDB node does:
    // container health checks and Kubernetes probes speak HTTP/1.1.
    let routes = tonic::service::Routes::new(streams)
        .add_service(persistent)
        .add_service(features)
        .into_axum_router()
        .route(
            "/health/live",
            axum::routing::get(|| async { axum::http::StatusCode::NO_CONTENT }),
        );
    let router = tonic::transport::Server::builder()
        .accept_http1(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .add_routes(tonic::service::Routes::from(routes));
    let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = stopped.await;
        closing.send_replace(true);
    }));
    tracing::info!(%local_addr, data_dir = %settings.data_dir.display(), "event store listening");
    Ok(RunningStore {
        local_addr,
        shutdown: Some(shutdown),
        stats,
        commits,
        task,
    })
}

/// A TCP stream with NODELAY set and QUICKACK re-armed after every read (Linux drops quick-ACK
/// mode on its own, so setting it once is not enough).
pub struct LowLatency {
    inner: TcpStream,
}

impl LowLatency {
    pub fn new(inner: TcpStream) -> LowLatency {
        let _ = inner.set_nodelay(true);
        let socket = LowLatency { inner };
        socket.quick_ack();
        socket
    }

    #[cfg(target_os = "linux")]
    fn quick_ack(&self) {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket fd owned by `inner`, and a pointer to a live c_int of the
        // length given; setsockopt does not keep the pointer.
        unsafe {
            libc::setsockopt(
                self.inner.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                &on as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn quick_ack(&self) {}
}

impl AsyncRead for LowLatency {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_ready() {
            this.quick_ack();
        }
        polled
    }
}

impl AsyncWrite for LowLatency {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connected for LowLatency {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}
