//! How the shop's parts are configured and started: `config` turns flags, `MINIMALL_…`
//! variables and secret files into settings (the defaults written once), `start_part` starts any
//! one part from them (`minimall serve <part>`), and `Shop` runs the whole shop in one process —
//! what `minimall up` runs and what the black-box tests start: the embedded event store (or an
//! external one), the order, payment, inventory and delivery services, the saga, the read model
//! and the gateway, wired to each other by URL; plus the demo catalogue.
//!
//! It must not: hold business behaviour. It only configures, starts, wires and stops the parts.

pub mod config;
mod parts;
pub mod supervise;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use servicekit::{Running, Secret, UpstreamSettings};

pub use parts::{start_part, GatewaySettings, PartSettings, Ports, Urls};

/// Where the shop's parts listen and keep their data, and what they share.
#[derive(Debug, Clone)]
pub struct ShopSettings {
    /// Data of the embedded event store and the read model.
    pub data_dir: PathBuf,
    /// An external event store's connection string; `None` runs the embedded one.
    pub store_url: Option<String>,
    pub host: IpAddr,
    /// Ports of every part; 0 picks free ones.
    pub ports: Ports,
    /// What every part is started with; its store URL, service URLs and read-model file are
    /// filled in by the shop from the fields above.
    pub parts: PartSettings,
}

impl ShopSettings {
    pub fn new(data_dir: impl Into<PathBuf>, ports: Ports) -> ShopSettings {
        let data_dir = data_dir.into();
        ShopSettings {
            store_url: None,
            host: IpAddr::from([127, 0, 0, 1]),
            ports,
            parts: PartSettings {
                store_url: config::STORE_URL.to_string(),
                urls: Urls::local(),
                // A fresh secret per start unless one is configured: tokens then end with the
                // run.
                identity: servicekit::IdentityKey::new(Secret::random().expose().as_bytes()),
                calls: UpstreamSettings::new(""),
                saga_retry_pause: Duration::from_millis(500),
                due_period: Duration::from_secs(config::DUE_PERIOD_S),
                account: config::BANK_ACCOUNT.to_string(),
                order_status_database: data_dir.join(config::ORDER_STATUS_FILE),
                demo_catalogue: false,
                // In one process every part stops at once: nobody is left to notice.
                drain_notice: Duration::ZERO,
                gateway: GatewaySettings {
                    accounts: demo_accounts(),
                    token_secret: Secret::random(),
                    concurrent_requests_max: 256,
                    client_requests_per_s: 50,
                    client_burst: 100,
                    trusted_proxies: 0,
                },
            },
            data_dir,
        }
    }
}

/// One of the shop's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Order,
    Payment,
    Inventory,
    Delivery,
    Saga,
    /// The order-status read model.
    OrderStatus,
    /// The single entry point.
    Gateway,
}

impl Service {
    /// The part's name, as `minimall serve` takes it.
    pub fn name(&self) -> &'static str {
        match self {
            Service::Order => "order",
            Service::Payment => "payment",
            Service::Inventory => "inventory",
            Service::Delivery => "delivery",
            Service::Saga => "saga",
            Service::OrderStatus => "order-status",
            Service::Gateway => "gateway",
        }
    }
}

/// The running shop.
pub struct Shop {
    settings: ShopSettings,
    store: Option<estore::RunningStore>,
    /// Where the embedded store listens (kept across its restarts).
    store_addr: Option<SocketAddr>,
    store_url: String,
    order: Option<Running>,
    payment: Option<Running>,
    inventory: Option<Running>,
    delivery: Option<Running>,
    saga: Option<Running>,
    order_status: Option<Running>,
    gateway: Option<Running>,
    /// Where each service listens (kept across restarts, so the others still find it).
    addrs: [SocketAddr; 7],
}

const SERVICES: [Service; 7] = [
    Service::OrderStatus,
    Service::Inventory,
    Service::Payment,
    Service::Delivery,
    Service::Order,
    Service::Saga,
    Service::Gateway,
];

fn index(service: Service) -> usize {
    match service {
        Service::Order => 0,
        Service::Payment => 1,
        Service::Inventory => 2,
        Service::Delivery => 3,
        Service::Saga => 4,
        Service::OrderStatus => 5,
        Service::Gateway => 6,
    }
}

impl Shop {
    /// Starts the store and every service, in an order where each finds those it calls.
    pub async fn start(settings: ShopSettings) -> anyhow::Result<Shop> {
        let (store, store_url) = match &settings.store_url {
            Some(url) => (None, url.clone()),
            None => {
                let listen = SocketAddr::new(settings.host, settings.ports.store);
                let store = start_store(&settings, listen).await?;
                let url = store.connection_string();
                (Some(store), url)
            }
        };
        let store_addr = store.as_ref().map(|store| store.local_addr());
        let p = settings.ports;
        let addr = |port| SocketAddr::new(settings.host, port);
        let mut shop = Shop {
            store,
            store_addr,
            store_url,
            order: None,
            payment: None,
            inventory: None,
            delivery: None,
            saga: None,
            order_status: None,
            gateway: None,
            addrs: [
                addr(p.order),
                addr(p.payment),
                addr(p.inventory),
                addr(p.delivery),
                addr(p.saga),
                addr(p.order_status),
                addr(p.gateway),
            ],
            settings,
        };
        for service in SERVICES {
            shop.start_service(service).await?;
        }
        Ok(shop)
    }

    pub fn store_url(&self) -> &str {
        &self.store_url
    }

    /// The key the shop's parts sign identities with (for callers that talk to services
    /// directly: the shop's own tools and tests).
    pub fn identity(&self) -> &servicekit::IdentityKey {
        &self.settings.parts.identity
    }

    pub fn url(&self, service: Service) -> String {
        format!("http://{}", self.addrs[index(service)])
    }

    /// The parts' settings, wired to where the store and each service are now.
    fn part_settings(&self) -> PartSettings {
        PartSettings {
            store_url: self.store_url.clone(),
            urls: Urls {
                order: self.url(Service::Order),
                payment: self.url(Service::Payment),
                inventory: self.url(Service::Inventory),
                delivery: self.url(Service::Delivery),
                order_status: self.url(Service::OrderStatus),
                saga: self.url(Service::Saga),
            },
            order_status_database: self.settings.data_dir.join(config::ORDER_STATUS_FILE),
            ..self.settings.parts.clone()
        }
    }

    fn slot(&mut self, service: Service) -> &mut Option<Running> {
        match service {
            Service::Order => &mut self.order,
            Service::Payment => &mut self.payment,
            Service::Inventory => &mut self.inventory,
            Service::Delivery => &mut self.delivery,
            Service::Saga => &mut self.saga,
            Service::OrderStatus => &mut self.order_status,
            Service::Gateway => &mut self.gateway,
        }
    }

    /// Starts a service (again) where it listened before.
    pub async fn start_service(&mut self, service: Service) -> anyhow::Result<()> {
        if self.slot(service).is_some() {
            return Ok(());
        }
        let listen = self.addrs[index(service)];
        let running = start_part(service, listen, &self.part_settings()).await?;
        self.addrs[index(service)] = running.local_addr();
        *self.slot(service) = Some(running);
        Ok(())
    }

    /// Starts one more instance of a service on a free port, wired as the shop's own (for the
    /// saga: another instance sharing the orders with it); the caller stops it.
    pub async fn start_another(&self, service: Service) -> anyhow::Result<Running> {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        start_part(service, listen, &self.part_settings()).await
    }

    /// Stops the embedded store; the services keep running and find it again when it is back.
    pub async fn stop_store(&mut self) {
        if let Some(store) = self.store.take() {
            store.stop().await;
        }
    }

    /// Starts the embedded store again where it listened, on its data.
    pub async fn start_store(&mut self) -> anyhow::Result<()> {
        let Some(listen) = self.store_addr else {
            anyhow::bail!("the shop runs on an external store");
        };
        if self.store.is_none() {
            self.store = Some(start_store(&self.settings, listen).await?);
        }
        Ok(())
    }

    /// Stops one service (its address is kept for its restart).
    pub async fn stop_service(&mut self, service: Service) {
        if let Some(running) = self.slot(service).take() {
            running.stop().await;
        }
    }

    /// Hands a running service over, e.g. to stop it while the caller goes on (its address is
    /// kept for its restart).
    pub fn take_service(&mut self, service: Service) -> Option<Running> {
        self.slot(service).take()
    }

    /// Where each part listens, for people.
    pub fn describe(&self) -> Vec<(String, String)> {
        let mut parts = vec![
            ("gateway".to_string(), self.url(Service::Gateway)),
            ("event store".to_string(), self.store_url.clone()),
        ];
        for (name, service) in [
            ("order", Service::Order),
            ("payment", Service::Payment),
            ("inventory", Service::Inventory),
            ("delivery", Service::Delivery),
            ("saga", Service::Saga),
            ("order-status", Service::OrderStatus),
        ] {
            parts.push((name.to_string(), self.url(service)));
        }
        parts
    }

    /// Stops everything: the services first, then the store they write to.
    pub async fn stop(mut self) {
        for service in SERVICES.into_iter().rev() {
            self.stop_service(service).await;
        }
        if let Some(store) = self.store.take() {
            store.stop().await;
        }
    }
}

async fn start_store(
    settings: &ShopSettings,
    listen: SocketAddr,
) -> anyhow::Result<estore::RunningStore> {
    let data_dir = settings.data_dir.join(config::ESTORE_DIR);
    estore::start(estore::Settings::new(listen, data_dir))
        .await
        .context("starting the event store")
}

/// The demo accounts (password = name): customers alice and bob, and the seller. Only the
/// argon2 hashes are kept (made with `minimall hash-password`).
pub fn demo_accounts() -> Vec<gateway::Account> {
    [
        ("alice", gateway::Role::Customer, "$argon2id$v=19$m=19456,t=2,p=1$c26ZI6lgQ/aMrs0ylG+FeQ$3JKs0qFpwKwScuAu4vhEC0hHiuGWoeOIudOJWjzsJVU"),
        ("bob", gateway::Role::Customer, "$argon2id$v=19$m=19456,t=2,p=1$XPxH0R+CSsGDd12MhHSEKA$tZsTkiwSqnbg1w+POtOK05nz3Hht4dxTJ74pHrfL89Y"),
        ("seller", gateway::Role::Seller, "$argon2id$v=19$m=19456,t=2,p=1$I/3wDvUcSJCoPnaF07/ovg$MNOdNTXjCARxTpWqkG+2I5s4SklhNjrgT6xPYPGtLtk"),
    ]
    .into_iter()
    .map(|(name, role, hash)| gateway::Account {
        name: name.to_string(),
        role,
        password_hash: hash.to_string(),
    })
    .collect()
}

/// The demo catalogue: fixed ids, so seeding again registers nothing twice.
pub const DEMO_CATALOGUE: [(&str, &str, i64, i64); 3] = [
    (
        "6d1f2c1e-3b1a-4c55-9a57-0d2a4f1e9b01",
        "Sencha green tea, 100 g",
        1250,
        50,
    ),
    (
        "6d1f2c1e-3b1a-4c55-9a57-0d2a4f1e9b02",
        "Stoneware tea cup",
        1800,
        20,
    ),
    (
        "6d1f2c1e-3b1a-4c55-9a57-0d2a4f1e9b03",
        "Cast-iron teapot",
        6400,
        5,
    ),
];

/// Registers the demo catalogue through the inventory's API, as the seller. Products already
/// registered are left as they are (their stock is not added again).
pub async fn seed_demo_catalogue(
    inventory_url: &str,
    identity: &servicekit::IdentityKey,
) -> anyhow::Result<usize> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut registered = 0;
    for (id, name, price, stock) in DEMO_CATALOGUE {
        let response = http
            .post(format!("{inventory_url}/products"))
            .header(servicekit::ACTOR_HEADER, "seller:shop")
            .header(servicekit::PROOF_HEADER, identity.prove("seller:shop"))
            .json(&serde_json::json!({
                "productId": id, "name": name, "price": price, "stock": stock
            }))
            .send()
            .await
            .context("seeding the demo catalogue")?;
        match response.status().as_u16() {
            201 => registered += 1,
            200 | 409 => {}
            status => anyhow::bail!("seeding {name} answered {status}"),
        }
    }
    Ok(registered)
}
