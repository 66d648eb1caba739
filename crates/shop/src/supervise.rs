//! The shop as a supervised fleet of OS processes (`minimall up --supervise`): every part is a
//! child process of the real binary (`minimall estore`, `minimall serve <part>`), stateless
//! services in as many replicas as asked behind the gateway, and a child that exits or is killed
//! is started again at the same address after a bounded, jittered pause. What runs, and how
//! often each part was restarted, is written to `supervisor.json` in the data directory
//! (`minimall status` reads it); each child's output goes to `logs/<name>.log` there.
//!
//! It must not: know what a part does. It starts, watches, restarts and stops processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use servicekit::Secret;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Replicas of each stateless service at most.
pub const REPLICAS_MAX: usize = 8;
/// First pause before a restart, and the longest, in milliseconds: the pause doubles with each
/// exit in a row, with up to half of it added at random.
const RESTART_PAUSE_MS: u64 = 100;
const RESTART_PAUSE_MS_MAX: u64 = 5_000;
/// A child that ran this long before exiting starts again after the first pause, in seconds.
const HEALTHY_RUN_S: u64 = 30;
/// Longest wait for a child to be ready after it starts, in seconds.
const READY_S_MAX: u64 = 30;
/// Longest wait for a child to exit after SIGTERM (its drain included), in seconds.
const STOP_S_MAX: u64 = 15;
/// The state file in the data directory.
pub const STATE_FILE: &str = "supervisor.json";

#[derive(Debug, Clone)]
pub struct SuperviseSettings {
    /// The minimall binary the children run.
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    /// Free ports for every child instead of the default ones.
    pub any_port: bool,
    /// Replicas of each service but the saga and the gateway: order, payment, inventory,
    /// delivery, and the read model (each replica with its own database).
    pub replicas: usize,
    /// An external store; `None` runs the embedded one as a child.
    pub store_url: Option<String>,
    pub identity: Secret,
    pub token: Secret,
    /// The gateway's accounts (their JSON); the demo accounts if `None`.
    pub accounts: Option<Secret>,
    pub due_period_s: u64,
    pub account: String,
}

/// What the state file says of one child.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildState {
    pub name: String,
    pub url: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
}

/// The state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetState {
    /// The supervisor's process id.
    pub pid: u32,
    pub children: Vec<ChildState>,
}

struct Child {
    name: String,
    args: Vec<String>,
    url: String,
    /// Where it is, for people (the store's connection string, a service's URL).
    shown: String,
    /// Answers 2xx once the child can work.
    ready_path: &'static str,
    state: Mutex<ChildState>,
    /// Told of every change of `state`.
    changed: Arc<tokio::sync::Notify>,
}

/// The running fleet.
pub struct Supervisor {
    /// Stopped in this order: the gateway, then the services, then the store.
    tiers: Vec<Vec<Running>>,
    children: Vec<Arc<Child>>,
    state_file: PathBuf,
    /// Writes the state file when a child changes.
    writer: Option<JoinHandle<()>>,
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Starts every part, each once the parts it calls are ready.
    pub async fn start(settings: SuperviseSettings) -> anyhow::Result<Supervisor> {
        let replicas = settings.replicas.clamp(1, REPLICAS_MAX);
        let changed = Arc::new(tokio::sync::Notify::new());
        let plan = Plan::new(&settings, replicas, &changed)?;
        let mut supervisor = Supervisor {
            tiers: Vec::new(),
            children: Vec::new(),
            state_file: settings.data_dir.join(STATE_FILE),
            writer: None,
        };
        let logs = settings.data_dir.join("logs");
        for tier in plan.tiers {
            let mut running = Vec::new();
            for child in tier {
                let child = Arc::new(child);
                let (stop, stopping) = watch::channel(false);
                let task = tokio::spawn(keep_running(
                    settings.binary.clone(),
                    logs.clone(),
                    Arc::clone(&child),
                    stopping,
                ));
                running.push(Running { stop, task });
                supervisor.children.push(child);
            }
            let started = supervisor.children.len() - running.len();
            supervisor.tiers.push(running);
            let waited = async {
                for child in &supervisor.children[started..] {
                    wait_ready(child).await?;
                }
                anyhow::Ok(())
            };
            if let Err(error) = waited.await {
                // What started is stopped again: a failed start leaves no process behind.
                supervisor.stop().await;
                return Err(error);
            }
        }
        let children = supervisor.children.clone();
        let file = supervisor.state_file.clone();
        write_fleet(&file, &children);
        supervisor.writer = Some(tokio::spawn(async move {
            loop {
                changed.notified().await;
                write_fleet(&file, &children);
            }
        }));
        Ok(supervisor)
    }

    /// Where each part listens, for people: the gateway first.
    pub fn describe(&self) -> Vec<(String, String)> {
        let mut parts: Vec<_> = self
            .children
            .iter()
            .map(|child| (child.name.clone(), child.shown.clone()))
            .collect();
        parts.sort_by_key(|(name, _)| !name.starts_with("gateway"));
        parts
    }

    pub fn url_of(&self, name: &str) -> Option<String> {
        self.children
            .iter()
            .find(|child| child.name == name)
            .map(|child| child.url.clone())
    }

    /// Stops every child: the gateway first, the store last, each tier's children at once.
    pub async fn stop(mut self) {
        for tier in self.tiers.drain(..).rev() {
            for running in &tier {
                running.stop.send_replace(true);
            }
            for running in tier {
                let _ = running.task.await;
            }
        }
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
        let _ = std::fs::remove_file(&self.state_file);
    }
}

fn write_fleet(file: &Path, children: &[Arc<Child>]) {
    let state = FleetState {
        pid: std::process::id(),
        children: children
            .iter()
            .map(|child| {
                child
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            })
            .collect(),
    };
    let temporary = file.with_extension("json.tmp");
    let written = serde_json::to_vec_pretty(&state)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&temporary, bytes))
        .and_then(|()| std::fs::rename(&temporary, file));
    if let Err(error) = written {
        tracing::warn!(%error, file = %file.display(), "cannot write the supervisor's state");
    }
}

/// Runs `child` until told to stop, starting it again whenever it exits.
async fn keep_running(
    binary: PathBuf,
    logs: PathBuf,
    child: Arc<Child>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut exits_in_a_row = 0u32;
    loop {
        let started = Instant::now();
        let exited = match spawn(&binary, &logs, &child) {
            Ok(mut process) => {
                child.update(|state| state.pid = process.id());
                tokio::select! {
                    status = process.wait() => describe_exit(status),
                    _ = stop_asked(&mut stopping) => {
                        terminate(&child, process).await;
                        return;
                    }
                }
            }
            Err(error) => format!("could not start: {error}"),
        };
        if started.elapsed() >= Duration::from_secs(HEALTHY_RUN_S) {
            exits_in_a_row = 0;
        }
        let pause = restart_pause(exits_in_a_row);
        exits_in_a_row = exits_in_a_row.saturating_add(1);
        child.update(|state| {
            state.pid = None;
            state.restarts += 1;
            state.last_exit = Some(exited.clone());
        });
        tracing::warn!(part = %child.name, exit = %exited, restart_in_ms = pause.as_millis() as u64, "part exited; restarting it");
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop_asked(&mut stopping) => return,
        }
    }
}

impl Child {
    fn update(&self, change: impl FnOnce(&mut ChildState)) {
        change(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_one();
    }
}

/// Resolves once the supervisor asks the child to stop.
async fn stop_asked(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

fn restart_pause(exits_in_a_row: u32) -> Duration {
    let base = RESTART_PAUSE_MS
        .saturating_mul(1 << exits_in_a_row.min(16))
        .min(RESTART_PAUSE_MS_MAX);
    let jitter = uuid::Uuid::new_v4().as_u128() as u64 % (base / 2 + 1);
    Duration::from_millis((base + jitter).min(RESTART_PAUSE_MS_MAX))
}

fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => "exited".to_string(),
        },
        Err(error) => format!("lost: {error}"),
    }
}

fn spawn(binary: &Path, logs: &Path, child: &Child) -> std::io::Result<tokio::process::Child> {
    std::fs::create_dir_all(logs)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("{}.log", child.name)))?;
    let mut command = Command::new(binary);
    command
        .args(&child.args)
        .env("MINIMALL_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    // SAFETY: prctl only sets this process's parent-death signal; it allocates nothing and is
    // async-signal-safe, as code between fork and exec must be.
    unsafe {
        command.pre_exec(|| {
            // A child outlives no supervisor, even one killed with SIGKILL.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    command.spawn()
}

/// SIGTERM, then SIGKILL if the child has not exited within `STOP_S_MAX`.
async fn terminate(child: &Child, mut process: tokio::process::Child) {
    if let Some(pid) = process.id() {
        // SAFETY: kill(2) on the pid of a child this task owns and has not reaped.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    let stopped = tokio::time::timeout(Duration::from_secs(STOP_S_MAX), process.wait()).await;
    if stopped.is_err() {
        tracing::warn!(part = %child.name, "did not stop within {STOP_S_MAX} s of SIGTERM; killed");
        let _ = process.kill().await;
    }
    child.update(|state| state.pid = None);
}

async fn wait_ready(child: &Child) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(500))
        .build()?;
    let url = format!("{}{}", child.url, child.ready_path);
    let deadline = Instant::now() + Duration::from_secs(READY_S_MAX);
    while Instant::now() < deadline {
        if http
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!(
        "{} not ready after {READY_S_MAX} s (see its log in logs/{}.log)",
        child.name,
        child.name
    )
}

/// Which children run with which arguments, in the order they start.
struct Plan {
    tiers: Vec<Vec<Child>>,
}

impl Plan {
    fn new(
        settings: &SuperviseSettings,
        replicas: usize,
        changed: &Arc<tokio::sync::Notify>,
    ) -> anyhow::Result<Plan> {
        let child =
            |name: &str, args, addr, ready_path| child(name, args, addr, ready_path, changed);
        let secrets = settings.data_dir.join("supervisor");
        std::fs::create_dir_all(&secrets).context("making the supervisor's directory")?;
        let identity = write_secret(&secrets.join("identity-secret"), &settings.identity)?;
        let token = write_secret(&secrets.join("token-secret"), &settings.token)?;
        let mut ports = PortPicker {
            any: settings.any_port,
        };
        let mut tiers = Vec::new();
        let store_url = match &settings.store_url {
            Some(url) => url.clone(),
            None => {
                let addr = ports.pick(crate::Ports::DEFAULT.store, 0)?;
                let data = settings.data_dir.join(crate::config::ESTORE_DIR);
                tiers.push(vec![child(
                    "estore",
                    vec![
                        "estore".into(),
                        "--listen".into(),
                        addr.to_string(),
                        "--data-dir".into(),
                        path(&data),
                    ],
                    addr,
                    "/health/live",
                )]);
                estore::connection_string(addr)
            }
        };
        let serve = |part: &str, addr: SocketAddr| -> Vec<String> {
            let mut args = vec![
                "serve".into(),
                part.into(),
                "--listen".into(),
                addr.to_string(),
            ];
            args.extend(["--identity-secret-file".into(), path(&identity)]);
            args
        };
        let with_store = |mut args: Vec<String>| {
            args.extend(["--store-url".into(), store_url.clone()]);
            args
        };
        let mut replicas_of = |default_port: u16| -> anyhow::Result<Vec<SocketAddr>> {
            (0..replicas).map(|i| ports.pick(default_port, i)).collect()
        };
        let p = crate::Ports::DEFAULT;
        let payment = replicas_of(p.payment)?;
        let inventory = replicas_of(p.inventory)?;
        let delivery = replicas_of(p.delivery)?;
        let order = replicas_of(p.order)?;
        let order_status = replicas_of(p.order_status)?;
        let saga = ports.pick(p.saga, 0)?;
        let gateway = ports.pick(p.gateway, 0)?;
        let url = |addr: &SocketAddr| format!("http://{addr}");
        let list = |addrs: &[SocketAddr]| addrs.iter().map(url).collect::<Vec<_>>().join(",");

        // Each read-model replica follows the log into its own database (the first one's is
        // the one `minimall up` keeps).
        let mut services = Vec::new();
        for (i, addr) in order_status.iter().enumerate() {
            let file = match i {
                0 => crate::config::ORDER_STATUS_FILE.to_string(),
                _ => format!("order-status-{}.sqlite", i + 1),
            };
            let mut args = with_store(serve("order-status", *addr));
            args.extend(["--database".into(), path(&settings.data_dir.join(file))]);
            services.push(child(
                &format!("order-status-{}", i + 1),
                args,
                *addr,
                "/health/ready",
            ));
        }
        for (i, addr) in payment.iter().enumerate() {
            let mut args = with_store(serve("payment", *addr));
            args.extend([
                "--account".into(),
                settings.account.clone(),
                "--due-period-s".into(),
                settings.due_period_s.to_string(),
            ]);
            services.push(child(
                &format!("payment-{}", i + 1),
                args,
                *addr,
                "/health/ready",
            ));
        }
        for (i, addr) in inventory.iter().enumerate() {
            let mut args = with_store(serve("inventory", *addr));
            args.push("--demo-catalogue".into());
            services.push(child(
                &format!("inventory-{}", i + 1),
                args,
                *addr,
                "/health/ready",
            ));
        }
        for (i, addr) in delivery.iter().enumerate() {
            services.push(child(
                &format!("delivery-{}", i + 1),
                with_store(serve("delivery", *addr)),
                *addr,
                "/health/ready",
            ));
        }
        // The order service and the saga call one URL per service (replica 1); only the
        // gateway spreads its calls over the replicas.
        for (i, addr) in order.iter().enumerate() {
            let mut args = with_store(serve("order", *addr));
            args.extend(["--payment-url".into(), url(&payment[0])]);
            services.push(child(
                &format!("order-{}", i + 1),
                args,
                *addr,
                "/health/ready",
            ));
        }
        let mut saga_args = with_store(serve("saga", saga));
        saga_args.extend([
            "--order-url".into(),
            url(&order[0]),
            "--payment-url".into(),
            url(&payment[0]),
            "--inventory-url".into(),
            url(&inventory[0]),
            "--delivery-url".into(),
            url(&delivery[0]),
        ]);
        services.push(child("saga", saga_args, saga, "/health/ready"));
        tiers.push(services);

        let mut gateway_args = serve("gateway", gateway);
        gateway_args.extend([
            "--order-url".into(),
            list(&order),
            "--payment-url".into(),
            list(&payment),
            "--inventory-url".into(),
            list(&inventory),
            "--order-status-url".into(),
            list(&order_status),
            "--token-secret-file".into(),
            path(&token),
        ]);
        match &settings.accounts {
            Some(accounts) => {
                let file = write_secret(&secrets.join("accounts.json"), accounts)?;
                gateway_args.extend(["--accounts-file".into(), path(&file)]);
            }
            None => gateway_args.push("--demo-accounts".into()),
        }
        tiers.push(vec![child(
            "gateway",
            gateway_args,
            gateway,
            "/health/ready",
        )]);
        Ok(Plan { tiers })
    }
}

fn child(
    name: &str,
    args: Vec<String>,
    addr: SocketAddr,
    ready_path: &'static str,
    changed: &Arc<tokio::sync::Notify>,
) -> Child {
    let url = format!("http://{addr}");
    let shown = if name == "estore" {
        estore::connection_string(addr)
    } else {
        url.clone()
    };
    Child {
        name: name.to_string(),
        args,
        shown,
        url: url.clone(),
        ready_path,
        state: Mutex::new(ChildState {
            name: name.to_string(),
            url,
            pid: None,
            restarts: 0,
            last_exit: None,
        }),
        changed: Arc::clone(changed),
    }
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

/// Writes a secret for the children to read (readable by this user only).
fn write_secret(file: &Path, secret: &Secret) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("writing {}", file.display()))?;
    out.write_all(secret.expose().as_bytes())?;
    Ok(file.to_path_buf())
}

/// The first replica of a part at its default port unless free ports are asked for; every
/// other at a free port, kept for the children's restarts.
struct PortPicker {
    any: bool,
}

impl PortPicker {
    fn pick(&mut self, default_port: u16, replica: usize) -> anyhow::Result<SocketAddr> {
        if !self.any && replica == 0 {
            return Ok(SocketAddr::from(([127, 0, 0, 1], default_port)));
        }
        let probe = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        Ok(probe.local_addr()?)
    }
}

/// The state file of the supervised shop on `data_dir`, if one runs there.
pub fn read_state(data_dir: &Path) -> anyhow::Result<FleetState> {
    let file = data_dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "no supervised shop on {} (no {}): start one with `minimall up --supervise`",
            data_dir.display(),
            STATE_FILE
        )
    })?;
    let state: FleetState =
        serde_json::from_str(&text).with_context(|| format!("reading {}", file.display()))?;
    // SAFETY: kill(2) with signal 0 only asks whether the process exists.
    let alive = unsafe { libc::kill(state.pid as libc::pid_t, 0) } == 0;
    anyhow::ensure!(
        alive,
        "the supervisor (pid {}) of {} is gone",
        state.pid,
        data_dir.display()
    );
    Ok(state)
}
