//! The `minimall` executable: one binary whose subcommands run the shop's parts. It only parses
//! the command line, sets up logging and wires libraries together; all behaviour lives in the
//! crates it calls.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// mimalloc: the store's read and append paths allocate per event and per call; measured in
/// `scripts/bench-estore`, it raised $all replay from ~0.32M to ~0.5M events/s and appends by
/// 10-20% over the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "minimall",
    version,
    about = "A small shop built on event sourcing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole shop: the embedded event store, every service and the saga; seeds the demo
    /// catalogue on first start. Ctrl-C stops it cleanly.
    Up {
        /// Directory holding the shop's data.
        #[arg(long, default_value = "./data", env = "MINIMALL_DATA_DIR")]
        data_dir: PathBuf,
        /// Use this event store instead of the embedded one (an esdb:// connection string).
        #[arg(long, env = "MINIMALL_STORE_URL")]
        store_url: Option<String>,
        /// Seconds a customer has to pay after ordering.
        #[arg(long, default_value_t = 7 * 24 * 3600, env = "MINIMALL_DUE_PERIOD_S")]
        due_period_s: u64,
        /// Secret signing the gateway's tokens (a fresh one per start if not given).
        #[arg(long, env = "MINIMALL_TOKEN_SECRET", hide_env_values = true)]
        token_secret: Option<String>,
        /// Secret the gateway and services sign identities with (a fresh one per start if not
        /// given).
        #[arg(long, env = "MINIMALL_IDENTITY_SECRET", hide_env_values = true)]
        identity_secret: Option<String>,
        /// Let every part pick a free port instead of the defaults (the printed list says
        /// which): for tests and for running a second shop beside the first.
        #[arg(long)]
        any_port: bool,
        /// A JSON file of accounts (`[{"name", "role": "customer"|"seller", "passwordHash"}]`,
        /// hashes from `minimall hash-password`); the demo accounts if not given.
        #[arg(long, env = "MINIMALL_ACCOUNTS")]
        accounts: Option<PathBuf>,
    },
    /// Print the argon2 hash (PHC string) of a password, for the gateway's accounts.
    HashPassword { password: String },
    /// Work on a read model.
    Projections {
        #[command(subcommand)]
        action: ProjectionsCommand,
    },
    /// Run one service on its own.
    Serve {
        #[command(subcommand)]
        service: ServeCommand,
        /// Address to listen on (the service's default port if not given).
        #[arg(long, global = true, env = "MINIMALL_LISTEN")]
        listen: Option<SocketAddr>,
        /// The secret the gateway and services sign callers' identities with (the same for all).
        #[arg(
            long,
            global = true,
            env = "MINIMALL_IDENTITY_SECRET",
            hide_env_values = true
        )]
        identity_secret: Option<String>,
        /// The event store's connection string.
        #[arg(
            long,
            global = true,
            default_value = "esdb://127.0.0.1:2113?tls=false&discoveryInterval=0",
            env = "MINIMALL_STORE_URL"
        )]
        store_url: String,
    },
    /// Run the embedded event store (EventStoreDB gRPC protocol, h2c).
    Estore {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:2113", env = "MINIMALL_ESTORE_LISTEN")]
        listen: SocketAddr,
        /// Directory holding the event log.
        #[arg(
            long,
            default_value = "./data/estore",
            env = "MINIMALL_ESTORE_DATA_DIR"
        )]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Replay the whole log into a fresh database and swap it in atomically while the running
    /// service keeps answering; shows progress until done.
    Rebuild {
        /// The projection: only `order-status` exists.
        #[arg(value_parser = ["order-status"])]
        projection: String,
        /// Where the projection's service listens.
        #[arg(
            long,
            default_value = "http://127.0.0.1:8086",
            env = "MINIMALL_ORDER_STATUS_URL"
        )]
        url: String,
    },
}

/// Where the other services are (comma-separated replicas where the gateway is concerned).
#[derive(clap::Args)]
struct ServiceUrls {
    #[arg(
        long,
        default_value = "http://127.0.0.1:8081",
        env = "MINIMALL_ORDER_URL"
    )]
    order_url: String,
    #[arg(
        long,
        default_value = "http://127.0.0.1:8082",
        env = "MINIMALL_PAYMENT_URL"
    )]
    payment_url: String,
    #[arg(
        long,
        default_value = "http://127.0.0.1:8083",
        env = "MINIMALL_INVENTORY_URL"
    )]
    inventory_url: String,
    #[arg(
        long,
        default_value = "http://127.0.0.1:8084",
        env = "MINIMALL_DELIVERY_URL"
    )]
    delivery_url: String,
    #[arg(
        long,
        default_value = "http://127.0.0.1:8086",
        env = "MINIMALL_ORDER_STATUS_URL"
    )]
    order_status_url: String,
}

#[derive(Subcommand)]
enum ServeCommand {
    /// Orders: place, cancel, confirm receipt (port 8081).
    Order {
        #[arg(
            long,
            default_value = "http://127.0.0.1:8082",
            env = "MINIMALL_PAYMENT_URL"
        )]
        payment_url: String,
    },
    /// Payments by bank transfer (port 8082).
    Payment {
        #[arg(
            long,
            default_value = "DE02 1203 0000 0000 2020 51 (minimall demo)",
            env = "MINIMALL_ACCOUNT"
        )]
        account: String,
        #[arg(long, default_value_t = 7 * 24 * 3600, env = "MINIMALL_DUE_PERIOD_S")]
        due_period_s: u64,
    },
    /// Catalogue and stock (port 8083).
    Inventory,
    /// Deliveries (port 8084).
    Delivery,
    /// The single entry point: authentication, routing, load shedding (port 8080).
    Gateway {
        #[command(flatten)]
        services: ServiceUrls,
        /// Secret signing tokens.
        #[arg(long, env = "MINIMALL_TOKEN_SECRET", hide_env_values = true)]
        token_secret: String,
        /// A JSON file of accounts (`[{"name", "role": "customer"|"seller", "passwordHash"}]`,
        /// hashes from `minimall hash-password`); the demo accounts if not given.
        #[arg(long, env = "MINIMALL_ACCOUNTS")]
        accounts: Option<PathBuf>,
    },
    /// The order-status read model and its queries (port 8086).
    OrderStatus {
        /// The read model's SQLite file.
        #[arg(
            long,
            default_value = "./data/order-status.sqlite",
            env = "MINIMALL_ORDER_STATUS_DB"
        )]
        database: PathBuf,
    },
    /// The order process manager (status on port 8085).
    Saga {
        #[command(flatten)]
        services: ServiceUrls,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Estore { listen, data_dir } => run_estore(listen, data_dir).await,
        Command::Up {
            data_dir,
            store_url,
            due_period_s,
            token_secret,
            identity_secret,
            any_port,
            accounts,
        } => {
            let ports = if any_port {
                shop::Ports::ANY
            } else {
                shop::Ports::DEFAULT
            };
            let mut settings = shop::ShopSettings::new(data_dir, ports);
            settings.store_url = store_url;
            settings.due_period = std::time::Duration::from_secs(due_period_s);
            if let Some(secret) = token_secret {
                settings.token_secret = gateway::Secret::new(secret);
            }
            settings.accounts = load_accounts(accounts.as_deref())?;
            if let Some(secret) = identity_secret {
                settings.identity = servicekit::IdentityKey::new(secret.as_bytes());
            }
            run_shop(settings).await
        }
        Command::Serve {
            service,
            listen,
            identity_secret,
            store_url,
        } => {
            let secret = identity_secret
                .context("services need --identity-secret (or MINIMALL_IDENTITY_SECRET)")?;
            let identity = servicekit::IdentityKey::new(secret.as_bytes());
            run_service(service, listen, store_url, identity).await
        }
        Command::HashPassword { password } => {
            println!(
                "{}",
                gateway::hash_password(&password).map_err(anyhow::Error::msg)?
            );
            Ok(())
        }
        Command::Projections {
            action: ProjectionsCommand::Rebuild { projection: _, url },
        } => rebuild(&url).await,
    }
}

/// Longest a rebuild is followed, in seconds, before the command gives up waiting (the rebuild
/// itself goes on in the service).
const REBUILD_WAIT_S_MAX: u64 = 3_600;

async fn rebuild(url: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let started = http
        .post(format!("{url}/admin/rebuild"))
        .send()
        .await
        .with_context(|| format!("reaching the read model at {url}"))?;
    if !started.status().is_success() {
        let problem: serde_json::Value = started.json().await.unwrap_or_default();
        anyhow::bail!("the rebuild did not start: {}", problem["detail"]);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(REBUILD_WAIT_S_MAX);
    while std::time::Instant::now() < deadline {
        let progress: serde_json::Value = http
            .get(format!("{url}/admin/rebuild"))
            .send()
            .await?
            .json()
            .await?;
        let reached = progress["reached"].as_u64().unwrap_or(0);
        let target = progress["target"].as_u64().unwrap_or(0).max(1);
        let done = progress["done"] == true;
        // The target is the log's end when the rebuild started; the saga's own streams, which
        // the read model skips, may sit past its last event.
        let share = if done && progress["error"].is_null() {
            1.0
        } else {
            (reached as f64 / target as f64).min(1.0)
        };
        let filled = (share * 40.0) as usize;
        print!(
            "\r[{}{}] {:>3.0}%  {} events",
            "#".repeat(filled),
            " ".repeat(40 - filled),
            share * 100.0,
            progress["events"]
        );
        std::io::stdout().flush()?;
        if done {
            println!();
            return match progress["error"].as_str() {
                None => {
                    println!("rebuilt and swapped in");
                    Ok(())
                }
                Some(error) => anyhow::bail!("the rebuild failed: {error}"),
            };
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    anyhow::bail!("still rebuilding after {REBUILD_WAIT_S_MAX} s; see GET {url}/admin/rebuild")
}

async fn run_shop(settings: shop::ShopSettings) -> anyhow::Result<()> {
    let shop = shop::Shop::start(settings).await?;
    let seeded =
        shop::seed_demo_catalogue(&shop.url(shop::Service::Inventory), shop.identity()).await?;
    println!("minimall is up");
    for (part, url) in shop.describe() {
        println!("  {part:<12} {url}");
    }
    if seeded > 0 {
        println!("  seeded the demo catalogue ({seeded} products)");
    }
    println!("Demo accounts (password = name): alice, bob (customers), seller. Log in with");
    let gateway = shop.url(shop::Service::Gateway);
    println!("  curl -s {gateway}/api/login -H 'content-type: application/json' -d '{{\"name\":\"alice\",\"password\":\"alice\"}}'");
    println!("Ctrl-C stops it.");
    shutdown_signal().await?;
    shop.stop().await;
    Ok(())
}

async fn run_service(
    service: ServeCommand,
    listen: Option<SocketAddr>,
    store_url: String,
    identity: servicekit::IdentityKey,
) -> anyhow::Result<()> {
    let ports = shop::Ports::DEFAULT;
    let at = |port: u16| listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)));
    let calls = servicekit::UpstreamSettings::new;
    let running = match service {
        ServeCommand::Order { payment_url } => {
            order::build(order::Settings {
                listen: at(ports.order),
                store_url,
                identity,
                payment: calls(payment_url),
            })
            .await?
        }
        ServeCommand::Payment {
            account,
            due_period_s,
        } => {
            payment::build(payment::Settings {
                listen: at(ports.payment),
                store_url,
                identity,
                account,
                due_period: std::time::Duration::from_secs(due_period_s),
            })
            .await?
        }
        ServeCommand::Inventory => {
            inventory::build(inventory::Settings {
                listen: at(ports.inventory),
                store_url,
                identity,
            })
            .await?
        }
        ServeCommand::Gateway {
            services,
            token_secret,
            accounts,
        } => {
            let defaults = gateway::Settings::local(
                at(ports.gateway),
                load_accounts(accounts.as_deref())?,
                gateway::Secret::new(token_secret),
                identity,
            );
            let pool = |url: String| gateway::PoolSettings {
                replicas: url.split(',').map(str::to_string).collect(),
                ..defaults.order.clone()
            };
            gateway::build(gateway::Settings {
                order: pool(services.order_url),
                payment: pool(services.payment_url),
                inventory: pool(services.inventory_url),
                order_status: pool(services.order_status_url),
                ..defaults
            })
            .await?
        }
        ServeCommand::OrderStatus { database } => {
            order_status::build(order_status::Settings {
                listen: at(ports.order_status),
                store_url,
                identity,
                database,
            })
            .await?
        }
        ServeCommand::Delivery => {
            delivery::build(delivery::Settings {
                listen: at(ports.delivery),
                store_url,
                identity,
            })
            .await?
        }
        ServeCommand::Saga { services } => {
            saga::build(saga::Settings {
                order: calls(services.order_url),
                payment: calls(services.payment_url),
                inventory: calls(services.inventory_url),
                delivery: calls(services.delivery_url),
                ..saga::Settings::local(at(ports.saga), store_url, identity)
            })
            .await?
        }
    };
    println!("{} listening on {}", running.name(), running.local_addr());
    shutdown_signal().await?;
    running.stop().await;
    Ok(())
}

async fn run_estore(listen: SocketAddr, data_dir: PathBuf) -> anyhow::Result<()> {
    let settings = estore::Settings {
        listen,
        data_dir,
        limits: estore::Limits::default(),
    };
    let store = estore::start(settings)
        .await
        .context("starting the event store")?;
    // The line scripts and tests wait for: it carries the bound address (port 0 is allowed).
    println!(
        "estore listening on {} ({})",
        store.local_addr(),
        store.connection_string()
    );
    shutdown_signal().await?;
    store.stop().await;
    Ok(())
}

/// The accounts from a JSON file, or the demo accounts.
fn load_accounts(path: Option<&std::path::Path>) -> anyhow::Result<Vec<gateway::Account>> {
    let Some(path) = path else {
        return Ok(shop::demo_accounts());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the accounts in {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("the accounts in {}", path.display()))
}

/// Ctrl-C or SIGTERM (what a supervisor or Kubernetes sends).
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}
