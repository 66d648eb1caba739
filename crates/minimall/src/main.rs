//! The `minimall` executable: one binary whose subcommands run the shop's parts. It only parses
//! the command line, sets up logging and wires libraries together; all behaviour lives in the
//! crates it calls.

use anyhow::Context;
use clap::{Parser, Subcommand};

/// mimalloc: the store's read and append paths allocate per event and per call; measured in
/// `scripts/bench-estore`, it raised $all replay from ~0.32M to ~0.5M events/s and appends by
/// 10-20% over the system allocator. Without transparent huge pages (`without_huge_pages`).
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
    /// Log lines as human text or JSON (default: text on a terminal, JSON otherwise).
    #[arg(long, global = true, env = "MINIMALL_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole shop: the embedded event store, every service and the saga; seeds the demo
    /// catalogue on first start. Ctrl-C stops it cleanly.
    Up(shop::config::UpArgs),
    /// Run one part on its own.
    Serve {
        #[command(subcommand)]
        part: shop::config::Part,
        #[command(flatten)]
        args: shop::config::ServeArgs,
    },
    /// Run the embedded event store (EventStoreDB gRPC protocol, h2c).
    Estore(shop::config::EstoreArgs),
    /// What the supervised shop (`up --supervise`) on a data directory runs: each part's
    /// address, process, restarts and readiness.
    Status {
        /// The supervised shop's data directory.
        #[arg(long, env = "MINIMALL_DATA_DIR", default_value = shop::config::DATA_DIR)]
        data_dir: std::path::PathBuf,
    },
    /// Replace every process of the supervised shop (`up --supervise`) on a data directory, one
    /// at a time, with no request refused: each stateless part's new process starts beside the
    /// old one, which stops once the new one is ready; the saga and each read-model replica stop
    /// first, then start again. Prints what it did.
    Rollout {
        /// The supervised shop's data directory.
        #[arg(long, env = "MINIMALL_DATA_DIR", default_value = shop::config::DATA_DIR)]
        data_dir: std::path::PathBuf,
    },
    /// Exit 0 if URL answers 2xx within 2 s, 1 otherwise: a health check for containers,
    /// which have no shell or curl.
    Probe { url: String },
    /// Print the argon2 hash (PHC string) of a password, for the gateway's accounts.
    HashPassword { password: String },
    /// Print the demo accounts (password = name) as an accounts file.
    DemoAccounts,
    /// Work on a read model.
    Projections {
        #[command(subcommand)]
        action: ProjectionsCommand,
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
            default_value_t = shop::Urls::local().order_status,
            env = "MINIMALL_ORDER_STATUS_URL"
        )]
        url: String,
        /// The data directory of the shop `minimall up` runs, whose kept identity secret signs
        /// the calls when none is given.
        #[arg(long, env = "MINIMALL_DATA_DIR", default_value = shop::config::DATA_DIR)]
        data_dir: std::path::PathBuf,
        #[command(flatten)]
        identity: shop::config::IdentityArgs,
    },
}

/// Human text where a person reads the logs (a terminal), JSON lines for a log collector;
/// colours only on a terminal. Spans are also exported over OTLP as `service` when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the export is returned, to flush at the end).
fn init_logging(
    format: Option<LogFormat>,
    service: Option<String>,
) -> anyhow::Result<Option<servicekit::otel::Export>> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{Layer, Registry};
    let terminal = std::io::stderr().is_terminal();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let json = format.unwrap_or(if terminal {
        LogFormat::Text
    } else {
        LogFormat::Json
    }) == LogFormat::Json;
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(terminal);
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![if json {
        logs.json().boxed()
    } else {
        logs.boxed()
    }];
    let mut exporting = None;
    if let Some(service) = service {
        if let Some((layer, export)) =
            servicekit::otel::layer::<Registry>(&service).map_err(anyhow::Error::msg)?
        {
            layers.push(layer.boxed());
            exporting = Some(export);
        }
    }
    tracing_subscriber::registry()
        .with(layers.with_filter(filter))
        .init();
    Ok(exporting)
}

impl Command {
    /// The name the command's spans are exported as, for commands that serve.
    fn service(&self) -> Option<String> {
        match self {
            Command::Up(_) => Some("minimall".to_string()),
            Command::Serve { part, .. } => Some(format!("minimall-{}", part.service().name())),
            Command::Estore(_) => Some("minimall-estore".to_string()),
            _ => None,
        }
    }
}

/// Threads for blocking work (the store's SQLite reads, the read model's writes and queries,
/// password checks); past them such work waits its turn.
const BLOCKING_THREADS_MAX: usize = 16;

/// Longest a probe waits for its answer, in milliseconds.
const PROBE_MS_MAX: u64 = 2_000;

fn main() -> anyhow::Result<()> {
    without_huge_pages();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS_MAX)
        .build()
        .context("starting the runtime")?
        .block_on(start())
}

/// Transparent huge pages off for this process. mimalloc asks for them on every region it maps,
/// and then each 4 KiB of a region a thread touched may hold a whole 2 MiB page: the whole shop
/// in one process was 280 MiB resident after 20 s of orders with them and 140 MiB without
/// (`scripts/bench-memory`), and appends and replays were no faster with them
/// (`scripts/bench-estore`). Set before any thread starts, so every thread inherits it.
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag on this process.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        eprintln!(
            "transparent huge pages stay on: {}",
            std::io::Error::last_os_error()
        );
    }
}

async fn start() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let export = init_logging(cli.log_format, cli.command.service())?;
    let outcome = run(cli.command).await;
    if let Some(export) = export {
        // Blocking: it sends what is still buffered.
        let _ = tokio::task::spawn_blocking(move || export.shutdown()).await;
    }
    outcome
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Estore(args) => {
            let listener = args.listener().context("listening")?;
            let ready = args.ready_pipe().context("taking the readiness pipe")?;
            run_estore(args.settings(), listener, ready).await
        }
        Command::Up(args) if args.supervise => {
            let binary = std::env::current_exe().context("finding this binary")?;
            run_supervised(args.supervise_settings(binary)?).await
        }
        Command::Up(args) => run_shop(args.settings()?).await,
        Command::Status { data_dir } => status(&data_dir).await,
        Command::Rollout { data_dir } => rollout(&data_dir).await,
        Command::Serve { part, args } => {
            let (addr, settings) = args.settings(&part)?;
            let listen = args.listener(addr).context("taking the inherited socket")?;
            let ready = args.ready_pipe().context("taking the readiness pipe")?;
            run_part(part.service(), listen, settings, ready).await
        }
        Command::Probe { url } => probe(&url).await,
        Command::HashPassword { password } => {
            println!(
                "{}",
                gateway::hash_password(&password).map_err(anyhow::Error::msg)?
            );
            Ok(())
        }
        Command::DemoAccounts => {
            println!("{}", serde_json::to_string_pretty(&shop::demo_accounts())?);
            Ok(())
        }
        Command::Projections {
            action:
                ProjectionsCommand::Rebuild {
                    projection: _,
                    url,
                    data_dir,
                    identity,
                },
        } => rebuild(&url, identity.key_or_kept(&data_dir)?).await,
    }
}

async fn probe(url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_millis(PROBE_MS_MAX))
        .build()?;
    let status = http.get(url).send().await?.status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(())
}

/// Longest a rebuild is followed, in seconds, before the command gives up waiting (the rebuild
/// itself goes on in the service).
const REBUILD_WAIT_S_MAX: u64 = 3_600;

/// Who the rebuild command is in its calls.
const OPERATOR_ACTOR: &str = "system:operator";

async fn rebuild(url: &str, identity: servicekit::IdentityKey) -> anyhow::Result<()> {
    use std::io::Write;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let signed = |request: reqwest::RequestBuilder| {
        request
            .header(servicekit::ACTOR_HEADER, OPERATOR_ACTOR)
            .header(servicekit::PROOF_HEADER, identity.prove(OPERATOR_ACTOR))
    };
    let started = signed(http.post(format!("{url}/admin/rebuild")))
        .send()
        .await
        .with_context(|| format!("reaching the read model at {url}"))?;
    if !started.status().is_success() {
        let problem: serde_json::Value = started.json().await.unwrap_or_default();
        anyhow::bail!("the rebuild did not start: {}", problem["detail"]);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(REBUILD_WAIT_S_MAX);
    while std::time::Instant::now() < deadline {
        let progress: serde_json::Value = signed(http.get(format!("{url}/admin/rebuild")))
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
    announce(&shop.describe(), &shop.url(shop::Service::Gateway));
    shutdown_signal().await?;
    shop.stop().await;
    Ok(())
}

async fn run_supervised(settings: shop::supervise::SuperviseSettings) -> anyhow::Result<()> {
    let fleet = shop::supervise::Supervisor::start(settings).await?;
    let gateway = fleet.url_of("gateway").unwrap_or_default();
    announce(&fleet.describe(), &gateway);
    shutdown_signal().await?;
    tracing::info!("stopping every part");
    fleet.stop().await;
    Ok(())
}

/// The lines `up` starts with: where each part is, and how to log in.
fn announce(parts: &[(String, String)], gateway: &str) {
    println!("minimall is up");
    for (part, url) in parts {
        println!("  {part:<14} {url}");
    }
    println!("Demo accounts (password = name): alice, bob (customers), seller. Log in with");
    println!("  curl -s {gateway}/api/login -H 'content-type: application/json' -d '{{\"name\":\"alice\",\"password\":\"alice\"}}'");
    println!("Ctrl-C stops it.");
}

async fn rollout(data_dir: &std::path::Path) -> anyhow::Result<()> {
    use shop::supervise::Said;
    println!("rolling out the shop on {}", data_dir.display());
    shop::supervise::rollout(data_dir, |said| match said {
        Said::Replaced { part, what } => println!("  {part:<14} {what}"),
        Said::Done { parts, elapsed_ms } => {
            println!("done: {parts} parts replaced one at a time in {elapsed_ms} ms")
        }
        Said::Failed { .. } => {}
    })
    .await
}

/// Longest wait for one part's readiness in `minimall status`, in milliseconds.
const STATUS_PROBE_MS_MAX: u64 = 500;

async fn status(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let fleet = shop::supervise::read_state(data_dir)?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_millis(STATUS_PROBE_MS_MAX))
        .build()?;
    println!("supervisor pid {} on {}", fleet.pid, data_dir.display());
    println!(
        "  {:<14} {:<24} {:>8} {:>8} {:>8}  {:<6} last exit",
        "part", "address", "pid", "restarts", "replaced", "ready"
    );
    for child in &fleet.children {
        let path = if child.name == "estore" {
            "/health/live"
        } else {
            "/health/ready"
        };
        let ready = http
            .get(format!("{}{path}", child.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let pid = child.pid.map_or("-".to_string(), |pid| pid.to_string());
        println!(
            "  {:<14} {:<24} {:>8} {:>8} {:>8}  {:<6} {}",
            child.name,
            child.url.trim_start_matches("http://"),
            pid,
            child.restarts,
            child.replaced,
            if ready { "yes" } else { "no" },
            child.last_exit.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

async fn run_part(
    service: shop::Service,
    listen: servicekit::Listen,
    settings: shop::PartSettings,
    ready: Option<servicekit::ReadyPipe>,
) -> anyhow::Result<()> {
    let running = shop::start_part(service, listen, &settings).await?;
    println!("{} listening on {}", running.name(), running.local_addr());
    let told = async {
        match ready {
            Some(pipe) => pipe.tell_when_ready(&running).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        signal = shutdown_signal() => signal?,
        told = told => {
            // A supervisor that stopped reading has gone; the part serves on either way.
            if let Err(error) = told {
                tracing::warn!(%error, "could not say ready on the readiness pipe");
            }
            shutdown_signal().await?;
        }
    }
    running.stop().await;
    Ok(())
}

async fn run_estore(
    settings: estore::Settings,
    listener: std::net::TcpListener,
    ready: Option<servicekit::ReadyPipe>,
) -> anyhow::Result<()> {
    let store = estore::start_on(settings, listener)
        .await
        .context("starting the event store")?;
    if let Some(ready) = ready {
        ready.tell().context("saying ready on the readiness pipe")?;
    }
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

/// Ctrl-C or SIGTERM (what a supervisor or Kubernetes sends).
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}
