//! How each part of the shop is started from the shop's settings: the one place a service's
//! `Settings` are filled in, used by `minimall up` (every part in one process) and by
//! `minimall serve <part>` (one part per process, container or pod).

use std::path::PathBuf;
use std::time::Duration;

use servicekit::{Listen, Running, Secret, UpstreamSettings};

use crate::Service;

/// Where the shop's parts listen by default.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub store: u16,
    pub order: u16,
    pub payment: u16,
    pub inventory: u16,
    pub delivery: u16,
    pub saga: u16,
    pub order_status: u16,
    pub gateway: u16,
}

impl Ports {
    pub const DEFAULT: Ports = Ports {
        store: 2113,
        order: 8081,
        payment: 8082,
        inventory: 8083,
        delivery: 8084,
        saga: 8085,
        order_status: 8086,
        gateway: 8080,
    };
    pub const ANY: Ports = Ports {
        store: 0,
        order: 0,
        payment: 0,
        inventory: 0,
        delivery: 0,
        saga: 0,
        order_status: 0,
        gateway: 0,
    };

    pub fn of(&self, service: Service) -> u16 {
        match service {
            Service::Order => self.order,
            Service::Payment => self.payment,
            Service::Inventory => self.inventory,
            Service::Delivery => self.delivery,
            Service::Saga => self.saga,
            Service::OrderStatus => self.order_status,
            Service::Gateway => self.gateway,
        }
    }
}

/// The base URL of each service the parts call. The gateway takes a comma-separated list of
/// replicas for each; the other callers one URL (a load-balanced name, e.g. a Kubernetes Service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urls {
    pub order: String,
    pub payment: String,
    pub inventory: String,
    pub delivery: String,
    pub order_status: String,
    /// The saga's instances (the gateway asks each for the operator's view).
    pub saga: String,
}

impl Urls {
    /// Every service at its default port on 127.0.0.1.
    pub fn local() -> Urls {
        let url = |service| format!("http://127.0.0.1:{}", Ports::DEFAULT.of(service));
        Urls {
            order: url(Service::Order),
            payment: url(Service::Payment),
            inventory: url(Service::Inventory),
            delivery: url(Service::Delivery),
            order_status: url(Service::OrderStatus),
            saga: url(Service::Saga),
        }
    }
}

/// Everything a part needs but where it listens.
#[derive(Debug, Clone)]
pub struct PartSettings {
    pub store_url: String,
    pub urls: Urls,
    /// Signs and verifies the identities the gateway and the services send each other.
    pub identity: servicekit::IdentityKey,
    /// Settings of every service-to-service call (the base URL is filled in per service).
    pub calls: UpstreamSettings,
    /// Pause of the saga between rounds of calls to a service that is down.
    pub saga_retry_pause: Duration,
    /// Time a customer has to pay.
    pub due_period: Duration,
    /// Bank account customers pay into.
    pub account: String,
    /// The read model's SQLite file.
    pub order_status_database: PathBuf,
    /// Whether the inventory registers the demo catalogue when it starts.
    pub demo_catalogue: bool,
    /// How long a stopping part keeps serving after its readiness went 503, for whoever routes
    /// to it (the gateway's readiness polls, a kubelet) to take it out of rotation.
    pub drain_notice: Duration,
    pub gateway: GatewaySettings,
}

/// What only the gateway needs.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Who may log in.
    pub accounts: Vec<gateway::Account>,
    /// Signs the tokens.
    pub token_secret: Secret,
    /// Requests forwarded at once; beyond, 503 at once.
    pub concurrent_requests_max: usize,
    /// Requests per second one client may make, with bursts of `client_burst`.
    pub client_requests_per_s: u32,
    pub client_burst: u32,
    /// Proxies in front of the gateway whose `X-Forwarded-For` entries are trusted.
    pub trusted_proxies: usize,
}

/// Starts `service` on `listen` (an address, where port 0 picks a free one, or a socket it was
/// handed), stopping with the drain notice.
pub async fn start_part(
    service: Service,
    listen: impl Into<Listen>,
    settings: &PartSettings,
) -> anyhow::Result<Running> {
    let running = start(service, listen.into(), settings).await?;
    Ok(running.with_drain_notice(settings.drain_notice))
}

async fn start(
    service: Service,
    listen: Listen,
    settings: &PartSettings,
) -> anyhow::Result<Running> {
    let store_url = settings.store_url.clone();
    let identity = settings.identity.clone();
    let calls = |base_url: &str| UpstreamSettings {
        base_url: base_url.to_string(),
        ..settings.calls.clone()
    };
    let urls = &settings.urls;
    Ok(match service {
        Service::Order => {
            order::build(order::Settings {
                listen,
                store_url,
                identity,
                payment: calls(&urls.payment),
            })
            .await?
        }
        Service::Payment => {
            payment::build(payment::Settings {
                listen,
                store_url,
                identity,
                account: settings.account.clone(),
                due_period: settings.due_period,
            })
            .await?
        }
        Service::Inventory => {
            let running = inventory::build(inventory::Settings {
                listen,
                store_url,
                identity,
            })
            .await?;
            if settings.demo_catalogue {
                let seeded = crate::seed_demo_catalogue(&running.url(), &settings.identity).await?;
                tracing::info!(seeded, "demo catalogue registered");
            }
            running
        }
        Service::Delivery => {
            delivery::build(delivery::Settings {
                listen,
                store_url,
                identity,
            })
            .await?
        }
        Service::Saga => {
            saga::build(saga::Settings {
                order: calls(&urls.order),
                payment: calls(&urls.payment),
                inventory: calls(&urls.inventory),
                delivery: calls(&urls.delivery),
                retry_pause: settings.saga_retry_pause,
                ..saga::Settings::local(listen, store_url, identity)
            })
            .await?
        }
        Service::OrderStatus => {
            order_status::build(order_status::Settings {
                listen,
                store_url,
                identity,
                database: settings.order_status_database.clone(),
            })
            .await?
        }
        Service::Gateway => gateway::build(gateway_settings(listen, settings)).await?,
    })
}

fn gateway_settings(listen: Listen, settings: &PartSettings) -> gateway::Settings {
    let own = &settings.gateway;
    let defaults = gateway::Settings::local(
        listen,
        own.accounts.clone(),
        own.token_secret.clone(),
        settings.identity.clone(),
    );
    let pool = |urls: &str| gateway::PoolSettings {
        replicas: urls.split(',').map(|url| url.trim().to_string()).collect(),
        ..defaults.order.clone()
    };
    gateway::Settings {
        order: pool(&settings.urls.order),
        payment: pool(&settings.urls.payment),
        inventory: pool(&settings.urls.inventory),
        order_status: pool(&settings.urls.order_status),
        saga: pool(&settings.urls.saga),
        concurrent_requests_max: own.concurrent_requests_max,
        client_requests_per_s: own.client_requests_per_s,
        client_burst: own.client_burst,
        trusted_proxies: own.trusted_proxies,
        ..defaults
    }
}
