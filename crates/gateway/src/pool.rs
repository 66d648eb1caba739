//! An upstream service and its replicas: health-checked round robin, a circuit breaker per
//! upstream that fails fast while it is down, and request timeouts.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use servicekit::{Breaker, Tripped};

/// How often each replica's readiness is checked, in milliseconds.
const HEALTH_CHECK_MS: u64 = 1_000;
/// Longest a readiness check waits, in milliseconds.
const HEALTH_TIMEOUT_MS: u64 = 500;

#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Base URLs of the replicas.
    pub replicas: Vec<String>,
    /// Longest wait for an answer, in milliseconds (live streams are not limited).
    pub timeout_ms: u64,
    /// Failures in a row that open the breaker.
    pub breaker_failures_max: u32,
    /// Pause of an open breaker, in seconds (at least 2, see `servicekit::Breaker`); up to 8
    /// times as long while the upstream keeps failing.
    pub breaker_open_s: u64,
}

struct Replica {
    base: String,
    healthy: AtomicBool,
}

/// Why a request could not be forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("{0} is failing; its circuit breaker is open")]
    BreakerOpen(&'static str),
    #[error("no replica of {0} is ready")]
    NoReplica(&'static str),
    #[error("{0} did not answer in time")]
    Timeout(&'static str),
    #[error("{0} failed: {1}")]
    Failed(&'static str, String),
}

pub struct Pool {
    pub name: &'static str,
    replicas: Vec<Replica>,
    next: AtomicUsize,
    breaker: Breaker,
    http: reqwest::Client,
    /// For live streams: no overall timeout.
    streaming: reqwest::Client,
}

impl Pool {
    pub fn new(name: &'static str, settings: &PoolSettings) -> Arc<Pool> {
        let client = |timeout: Option<Duration>| {
            let builder = reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(Duration::from_millis(settings.timeout_ms));
            match timeout {
                Some(t) => builder.timeout(t),
                None => builder,
            }
            .build()
            .unwrap_or_default()
        };
        Arc::new(Pool {
            name,
            replicas: settings
                .replicas
                .iter()
                .map(|base| Replica {
                    base: base.trim_end_matches('/').to_string(),
                    healthy: AtomicBool::new(true),
                })
                .collect(),
            next: AtomicUsize::new(0),
            breaker: Breaker::new(
                &format!("gateway-{name}"),
                settings.breaker_failures_max,
                settings.breaker_open_s,
                settings.breaker_open_s * 8,
            ),
            http: client(Some(Duration::from_millis(settings.timeout_ms))),
            streaming: client(None),
        })
    }

    /// Checks every replica's readiness, for ever (a task per pool).
    pub async fn check_health(self: Arc<Pool>) {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(HEALTH_TIMEOUT_MS))
            .build()
            .unwrap_or_default();
        let mut tick = tokio::time::interval(Duration::from_millis(HEALTH_CHECK_MS));
        loop {
            tick.tick().await;
            for replica in &self.replicas {
                let ready = http
                    .get(format!("{}/health/ready", replica.base))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if replica.healthy.swap(ready, Ordering::Relaxed) != ready {
                    tracing::info!(upstream = self.name, replica = %replica.base, ready, "replica readiness changed");
                }
            }
        }
    }

    /// The next ready replica other than `not`, round robin. When none is ready the next one is
    /// tried anyway: readiness is advice, the breaker decides (so a dead upstream trips it
    /// either way).
    fn pick(&self, not: Option<usize>) -> Option<usize> {
        let count = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut candidates = (0..count)
            .map(|i| (start + i) % count)
            .filter(|&i| Some(i) != not);
        candidates
            .clone()
            .find(|&i| self.replicas[i].healthy.load(Ordering::Relaxed))
            .or_else(|| candidates.next())
    }

    pub fn is_call_permitted(&self) -> bool {
        self.breaker.is_call_permitted()
    }

    /// Sends the request to a ready replica through the breaker. A 5xx or no answer counts as a
    /// failure; a 4xx, and a 503 + Retry-After (shedding on purpose), is an answer. A replica that refuses the connection is out of rotation
    /// until its next readiness check passes; a `retry_safe` request (a read, or a command
    /// carrying its idempotency key) that did not reach a replica's answer is sent once more, to
    /// another replica (or the only one again), instead of failing.
    pub async fn send(
        &self,
        request: Outgoing,
        retry_safe: bool,
    ) -> Result<reqwest::Response, Failure> {
        let first = self.pick(None).ok_or(Failure::NoReplica(self.name))?;
        let attempt = async {
            match self.send_to(first, &request).await {
                Err(Failed::Unreached(error)) if retry_safe => {
                    // The only replica is tried again: a new connection may reach the process
                    // that took over its socket.
                    let other = self.pick(Some(first)).unwrap_or(first);
                    tracing::info!(upstream = self.name, %error, "retrying on another replica");
                    self.send_to(other, &request)
                        .await
                        .map_err(Failed::into_failure)
                }
                answered => answered.map_err(Failed::into_failure),
            }
        };
        match self.breaker.call(attempt).await {
            Ok(response) => Ok(response),
            Err(Tripped::Open) => Err(Failure::BreakerOpen(self.name)),
            Err(Tripped::Failed(failure)) => Err(failure),
        }
    }

    /// The request sent once to every process behind every replica — each address its host
    /// name resolves to, so a headless Kubernetes Service reaches each pod — not through the
    /// breaker (each answer, or why there is none, is wanted); with each process's URL.
    pub async fn send_to_each(
        &self,
        request: Outgoing,
    ) -> Vec<(String, Result<reqwest::Response, Failure>)> {
        let mut answers = Vec::new();
        for replica in &self.replicas {
            for base in processes_of(&replica.base).await {
                let mut builder = self
                    .http
                    .request(
                        request.method.clone(),
                        format!("{base}{}", request.path_and_query),
                    )
                    .headers(request.headers.clone());
                if let Some(body) = &request.body {
                    builder = builder.body(body.clone());
                }
                let answer = builder.send().await.map_err(|e| match e.is_timeout() {
                    true => Failure::Timeout(self.name),
                    false => Failure::Failed(self.name, e.to_string()),
                });
                answers.push((base, answer));
            }
        }
        answers
    }

    /// The pool's name while its breaker is open.
    pub fn breaker_open(&self) -> Option<&'static str> {
        (!self.is_call_permitted()).then_some(self.name)
    }

    /// `request` addressed to the process at `base`.
    fn request_to(&self, base: &str, request: &Outgoing) -> reqwest::RequestBuilder {
        let client = if request.live {
            &self.streaming
        } else {
            &self.http
        };
        let builder = client
            .request(
                request.method.clone(),
                format!("{base}{}", request.path_and_query),
            )
            .headers(request.headers.clone());
        match &request.body {
            Some(body) => builder.body(body.clone()),
            None => builder,
        }
    }

    /// One attempt at replica `at`.
    async fn send_to(&self, at: usize, request: &Outgoing) -> Result<reqwest::Response, Failed> {
        let replica = &self.replicas[at];
        let name = self.name;
        match self.request_to(&replica.base, request).send().await {
            Ok(response) if response.status().is_server_error() && !sheds(&response) => {
                Err(Failed::Answered(Failure::Failed(
                    name,
                    format!("answered {}", response.status()),
                )))
            }
            Ok(response) => Ok(response),
            // A replica that is slow is not retried: the caller would wait twice.
            Err(e) if e.is_timeout() => Err(Failed::Answered(Failure::Timeout(name))),
            Err(e) => {
                if e.is_connect() && replica.healthy.swap(false, Ordering::Relaxed) {
                    tracing::info!(upstream = name, replica = %replica.base, "replica refused a connection: out of rotation");
                }
                Err(Failed::Unreached(Failure::Failed(name, e.to_string())))
            }
        }
    }
}

/// Processes at most one replica URL's host name stands for.
const PROCESSES_PER_NAME_MAX: usize = 16;

/// The base URL of each process behind `base`: one per address its host resolves to (just
/// `base` when it is an address, or does not resolve).
async fn processes_of(base: &str) -> Vec<String> {
    let Ok(url) = reqwest::Url::parse(base) else {
        return vec![base.to_string()];
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return vec![base.to_string()];
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return vec![base.to_string()];
    }
    let resolved = tokio::net::lookup_host((host.to_string(), port)).await;
    match resolved {
        Ok(addrs) => {
            let mut found: Vec<String> = addrs
                .take(PROCESSES_PER_NAME_MAX)
                .map(|addr| format!("{}://{addr}", url.scheme()))
                .collect();
            found.dedup();
            if found.is_empty() {
                vec![base.to_string()]
            } else {
                found
            }
        }
        Err(_) => vec![base.to_string()],
    }
}

/// Whether an answer is a service shedding load on purpose (503 + Retry-After: it is busy, or
/// what it depends on is briefly away): an answer to pass on as it is, not the service failing.
fn sheds(response: &reqwest::Response) -> bool {
    response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE
        && response
            .headers()
            .contains_key(reqwest::header::RETRY_AFTER)
}

/// A request to forward upstream.
pub struct Outgoing {
    pub method: reqwest::Method,
    pub path_and_query: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Option<axum::body::Bytes>,
    /// A live stream: no overall timeout.
    pub live: bool,
}

/// How one attempt at a replica failed.
enum Failed {
    /// It answered with a server error, or too late: not retried.
    Answered(Failure),
    /// The request or its answer did not get through (refused, reset, closed): a retry-safe
    /// request goes to another replica.
    Unreached(Failure),
}

impl Failed {
    fn into_failure(self) -> Failure {
        match self {
            Failed::Answered(failure) | Failed::Unreached(failure) => failure,
        }
    }
}
