//! The API gateway: the shop's single entry point. It authenticates customers
//! and the seller (demo accounts, argon2 hashes, signed tokens), authorizes every route (a
//! customer acts on their own orders only; only the seller confirms deposits and manages stock),
//! and forwards `/api/...` to the services' replicas with the caller's identity and a request
//! id. Under overload it answers at once: 503 + Retry-After past the concurrency limit, 429 +
//! Retry-After past a client's rate; a circuit breaker per upstream fails fast while it is down.
//!
//! It must not: hold business rules or state beyond its accounts; it forwards, checks who may,
//! and sheds load.

pub mod accounts;
mod pool;
mod routes;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use servicekit::{Readiness, Running, StartError};
use tokio::sync::Semaphore;

pub use accounts::{hash_password, Account, Role, Secret};
pub use pool::PoolSettings;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where it takes connections: an address (port 0 picks a free one) or a socket it was handed.
    pub listen: servicekit::Listen,
    pub order: PoolSettings,
    pub payment: PoolSettings,
    pub inventory: PoolSettings,
    pub order_status: PoolSettings,
    /// The saga's instances: the operator's view asks each of them.
    pub saga: PoolSettings,
    pub accounts: Vec<Account>,
    pub token_secret: Secret,
    pub token_ttl: Duration,
    /// Signs the identity forwarded to the services.
    pub identity: servicekit::IdentityKey,
    /// Requests forwarded at once; beyond, 503 at once.
    pub concurrent_requests_max: usize,
    /// Live streams open at once; beyond, 503 at once.
    pub live_streams_max: usize,
    /// Requests per second one client (account, or address when anonymous) may make…
    pub client_requests_per_s: u32,
    /// …with bursts of this many.
    pub client_burst: u32,
    /// Seconds a shed request is told to wait.
    pub retry_after_s: u64,
    /// Password checks at once: each holds its hash's memory (argon2id, 19 MiB) while it runs,
    /// so this bounds the gateway's memory under a burst of logins.
    pub password_checks_max: usize,
    /// Longest a login waits for a free password check before 503, in milliseconds.
    pub password_check_wait_ms: u64,
    /// Proxies in front of the gateway whose `X-Forwarded-For` entries are trusted (0: none,
    /// anonymous clients are told apart by the connecting address; 1 behind an Ingress).
    pub trusted_proxies: usize,
}

impl Settings {
    /// Local defaults: one replica of each service at its default port.
    pub fn local(
        listen: impl Into<servicekit::Listen>,
        accounts: Vec<Account>,
        token_secret: Secret,
        identity: servicekit::IdentityKey,
    ) -> Settings {
        let pool = |url: &str| PoolSettings {
            replicas: vec![url.to_string()],
            timeout_ms: 5_000,
            breaker_failures_max: 5,
            breaker_open_s: 2,
        };
        Settings {
            listen: listen.into(),
            order: pool("http://127.0.0.1:8081"),
            payment: pool("http://127.0.0.1:8082"),
            inventory: pool("http://127.0.0.1:8083"),
            order_status: pool("http://127.0.0.1:8086"),
            saga: pool("http://127.0.0.1:8085"),
            accounts,
            token_secret,
            token_ttl: Duration::from_secs(12 * 3600),
            identity,
            concurrent_requests_max: 256,
            live_streams_max: 1_024,
            client_requests_per_s: 50,
            client_burst: 100,
            retry_after_s: 1,
            password_checks_max: 4,
            password_check_wait_ms: 2_000,
            trusted_proxies: 0,
        }
    }
}

/// How often clients whose rate allowance is full again are forgotten, in seconds.
const RATE_PRUNE_S: u64 = 60;

/// The rate limiter keeps a state per client: forgetting those that are idle (their allowance
/// refilled) keeps that map as small as the set of recently active clients.
async fn forget_idle_clients(gateway: Arc<Gateway>) {
    let mut tick = tokio::time::interval(Duration::from_secs(RATE_PRUNE_S));
    loop {
        tick.tick().await;
        gateway.rate.retain_recent();
        gateway.rate.shrink_to_fit();
    }
}

pub(crate) struct Gateway {
    accounts: accounts::Accounts,
    order: Arc<pool::Pool>,
    payment: Arc<pool::Pool>,
    inventory: Arc<pool::Pool>,
    order_status: Arc<pool::Pool>,
    saga: Arc<pool::Pool>,
    live_streams: Arc<Semaphore>,
    rate: DefaultKeyedRateLimiter<String>,
    retry_after_s: u64,
    identity: servicekit::IdentityKey,
    password_checks: Arc<Semaphore>,
    password_check_wait: Duration,
    trusted_proxies: usize,
}

pub async fn build(settings: Settings) -> Result<Running, StartError> {
    let per_s = NonZeroU32::new(settings.client_requests_per_s.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(settings.client_burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let gateway = Arc::new(Gateway {
        accounts: accounts::Accounts::new(
            settings.accounts.clone(),
            settings.token_secret.clone(),
            settings.token_ttl,
        ),
        order: pool::Pool::new("order", &settings.order),
        payment: pool::Pool::new("payment", &settings.payment),
        inventory: pool::Pool::new("inventory", &settings.inventory),
        order_status: pool::Pool::new("order-status", &settings.order_status),
        saga: pool::Pool::new("saga", &settings.saga),
        live_streams: Arc::new(Semaphore::new(settings.live_streams_max)),
        rate: RateLimiter::keyed(Quota::per_second(per_s).allow_burst(burst)),
        retry_after_s: settings.retry_after_s,
        identity: settings.identity.clone(),
        password_checks: Arc::new(Semaphore::new(settings.password_checks_max.max(1))),
        password_check_wait: Duration::from_millis(settings.password_check_wait_ms),
        trusted_proxies: settings.trusted_proxies,
    });
    let routes = routes::router(Arc::clone(&gateway), settings.concurrent_requests_max);
    let mut running = servicekit::serve(
        "gateway",
        settings.listen,
        routes,
        Readiness::always(),
        None,
        routes::openapi(),
    )
    .await?;
    running = running.with_worker(tokio::spawn(forget_idle_clients(Arc::clone(&gateway))));
    for pool in [
        &gateway.order,
        &gateway.payment,
        &gateway.inventory,
        &gateway.order_status,
    ] {
        running = running.with_worker(tokio::spawn(Arc::clone(pool).check_health()));
    }
    Ok(running)
}
