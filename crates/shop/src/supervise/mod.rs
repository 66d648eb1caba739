//! The shop as a supervised fleet of OS processes (`minimall up --supervise`): every part is a
//! child process of the real binary (`minimall estore`, `minimall serve <part>`), stateless
//! services in as many replicas as asked behind the gateway.
//!
//! The supervisor binds each service's listening socket once and hands it to every process of
//! that service, so the socket outlives them: while a process is restarted (after a crash, a
//! bounded and jittered pause later) or replaced (`minimall rollout`), connections wait in the
//! socket's queue instead of being refused. A rollout replaces each part's process in turn: a
//! stateless part's new process starts beside the old one, which stops once the new one said it
//! is ready (saga replicas too: they hand their share of the orders over as they stop); each
//! read-model replica stops first, so one process at a time writes a replica's database.
//!
//! What runs, and how often each part was restarted, is written to `supervisor.json` in the
//! data directory (`minimall status` reads it); each child's output goes to `logs/<name>.log`
//! there; the control socket `supervisor.sock` there takes `minimall rollout`.
//!
//! It must not: know what a part does. It starts, watches, restarts, replaces and stops
//! processes.

mod control;
mod plan;
mod process;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use servicekit::Secret;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use control::{rollout, Said, CONTROL_SOCKET};
use process::Process;

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
/// How often a ready child's liveness is asked, how long one answer may take, and how many
/// failed answers in a row make the supervisor kill it (to start it again), in milliseconds and
/// answers: a frozen or wedged process is replaced within about 8 s.
const LIVENESS_CHECK_MS: u64 = 2_000;
const LIVENESS_WAIT_MS: u64 = 2_000;
const LIVENESS_FAILURES_MAX: u32 = 3;
/// The state file in the data directory.
pub const STATE_FILE: &str = "supervisor.json";
/// The supervisor's metrics in the data directory, Prometheus text rewritten on every change
/// (what node_exporter's textfile collector reads): restarts and replacements per part.
pub const METRICS_FILE: &str = "supervisor.prom";

#[derive(Debug, Clone)]
pub struct SuperviseSettings {
    /// The minimall binary the children run.
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    /// Free ports for every child instead of the default ones.
    pub any_port: bool,
    /// Replicas of each service but the gateway: order, payment, inventory, delivery, the saga
    /// (sharing the orders) and the read model (each replica with its own database).
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
    /// Starts after the process exited by itself or was killed.
    pub restarts: u32,
    /// Processes replaced by a rollout.
    #[serde(default)]
    pub replaced: u32,
    pub last_exit: Option<String>,
}

/// The state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetState {
    /// The supervisor's process id.
    pub pid: u32,
    pub children: Vec<ChildState>,
}

/// How a rollout replaces a part's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handover {
    /// The new process starts on the same socket; the old one stops once the new one is ready.
    /// For the stateless services, the gateway and the saga (whose processes share the orders
    /// by lease, never one order at once).
    Overlap,
    /// The old process stops, then the new one starts; meanwhile requests wait in the socket's
    /// queue. For a read-model replica, whose database one process writes.
    StopFirst,
    /// Not replaced: the event store stops only with the shop.
    Never,
}

/// A part the supervisor keeps running.
struct Child {
    name: String,
    args: Vec<String>,
    url: String,
    /// Where it is, for people (the store's connection string, a service's URL).
    shown: String,
    /// The listening socket handed to each of its processes.
    socket: OwnedFd,
    handover: Handover,
    state: Mutex<ChildState>,
    /// Whether its current process said it is ready.
    ready: watch::Sender<bool>,
    /// Told of every change of `state`.
    changed: Arc<tokio::sync::Notify>,
}

impl Child {
    /// One more of its processes was replaced by a rollout.
    fn replaced(&self) {
        self.update(|state| state.replaced += 1);
        metrics::counter!("minimall_supervisor_replaced_total", "part" => self.name.clone())
            .increment(1);
    }

    fn update(&self, change: impl FnOnce(&mut ChildState)) {
        change(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_one();
    }

    /// Waits until its first process is ready.
    async fn first_ready(&self) -> anyhow::Result<()> {
        let mut ready = self.ready.subscribe();
        let waited = tokio::time::timeout(
            Duration::from_secs(READY_S_MAX),
            ready.wait_for(|ready| *ready),
        )
        .await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => anyhow::bail!(
                "{} not ready after {READY_S_MAX} s (see its log in logs/{}.log)",
                self.name,
                self.name
            ),
        }
    }
}

/// A rollout's request to a child's keeper: replace the process, then say what was done.
struct Replace(oneshot::Sender<Result<String, String>>);

/// The running fleet.
pub struct Supervisor {
    /// Stopped in this order: the gateway, then the services, then the store.
    tiers: Vec<Vec<Running>>,
    children: Vec<Arc<Child>>,
    data_dir: PathBuf,
    /// Writes the state file when a child changes; answers the control socket.
    tasks: Vec<JoinHandle<()>>,
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What every keeper needs to start a process.
struct Launch {
    binary: PathBuf,
    logs: PathBuf,
}

impl Supervisor {
    /// Starts every part, each once the parts it calls are ready.
    pub async fn start(settings: SuperviseSettings) -> anyhow::Result<Supervisor> {
        refuse_a_second(&settings.data_dir)?;
        // Restarts and replacements are counted from the start.
        servicekit::metered::recorder();
        let changed = Arc::new(tokio::sync::Notify::new());
        let plan = plan::Plan::new(&settings, &changed)?;
        let (control, _) = control::bind(&settings.data_dir)?;
        let launch = Arc::new(Launch {
            binary: settings.binary.clone(),
            logs: settings.data_dir.join("logs"),
        });
        let mut supervisor = Supervisor {
            tiers: Vec::new(),
            children: Vec::new(),
            data_dir: settings.data_dir.clone(),
            tasks: Vec::new(),
        };
        let mut keepers = Vec::new();
        for tier in plan.tiers {
            let mut running = Vec::new();
            for child in tier {
                let child = Arc::new(child);
                let (stop, stopping) = watch::channel(false);
                let (replace, replacing) = mpsc::channel(1);
                let task = tokio::spawn(keep_running(
                    Arc::clone(&launch),
                    Arc::clone(&child),
                    stopping,
                    replacing,
                ));
                running.push(Running { stop, task });
                if child.handover != Handover::Never {
                    keepers.push((Arc::clone(&child), replace));
                }
                supervisor.children.push(child);
            }
            let started = supervisor.children.len() - running.len();
            supervisor.tiers.push(running);
            let waited = async {
                for child in &supervisor.children[started..] {
                    child.first_ready().await?;
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
        let file = supervisor.data_dir.join(STATE_FILE);
        write_fleet(&file, &children);
        supervisor.tasks.push(tokio::spawn(async move {
            loop {
                changed.notified().await;
                write_fleet(&file, &children);
            }
        }));
        supervisor
            .tasks
            .push(tokio::spawn(control::serve(control, Arc::new(keepers))));
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
        for task in self.tasks.drain(..) {
            task.abort();
        }
        for tier in self.tiers.drain(..).rev() {
            for running in &tier {
                running.stop.send_replace(true);
            }
            for running in tier {
                let _ = running.task.await;
            }
        }
        let _ = std::fs::remove_file(self.data_dir.join(STATE_FILE));
        let _ = std::fs::remove_file(self.data_dir.join(METRICS_FILE));
        let _ = std::fs::remove_file(self.data_dir.join(CONTROL_SOCKET));
    }
}

/// One supervisor per data directory: a second would fight the first over its ports and files.
fn refuse_a_second(data_dir: &Path) -> anyhow::Result<()> {
    if let Ok(running) = read_state(data_dir) {
        anyhow::bail!(
            "a supervised shop already runs on {} (pid {}); `minimall status` shows it",
            data_dir.display(),
            running.pid
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("making the data directory {}", data_dir.display()))
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
    let written = serde_json::to_vec_pretty(&state)
        .map_err(std::io::Error::other)
        .and_then(|bytes| replace_file(file, &bytes))
        .and_then(|()| {
            let metrics = file.with_file_name(METRICS_FILE);
            replace_file(&metrics, servicekit::metered::render().as_bytes())
        });
    if let Err(error) = written {
        tracing::warn!(%error, file = %file.display(), "cannot write the supervisor's state");
    }
}

/// Writes `file` whole or not at all (a reader never sees half of it).
fn replace_file(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temporary = file.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, file)
}

/// How a process's run ended.
enum Ended {
    /// It exited, for this reason: start another.
    Exited(String),
    /// The supervisor stopped it.
    Stopped,
}

/// Runs `child` until told to stop, starting it again whenever it exits and replacing its
/// process when a rollout asks.
async fn keep_running(
    launch: Arc<Launch>,
    child: Arc<Child>,
    mut stopping: watch::Receiver<bool>,
    mut replacing: mpsc::Receiver<Replace>,
) {
    let mut exits_in_a_row = 0u32;
    // Both counters show from the start, at 0.
    metrics::counter!("minimall_supervisor_restarts_total", "part" => child.name.clone())
        .increment(0);
    metrics::counter!("minimall_supervisor_replaced_total", "part" => child.name.clone())
        .increment(0);
    loop {
        let started = Instant::now();
        let exited = match launch.spawn(&child) {
            Ok(process) => {
                match run(&launch, &child, process, &mut stopping, &mut replacing).await {
                    Ended::Exited(why) => why,
                    Ended::Stopped => return,
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
            metrics::counter!("minimall_supervisor_restarts_total", "part" => child.name.clone())
                .increment(1);
            state.last_exit = Some(exited.clone());
        });
        tracing::warn!(part = %child.name, exit = %exited, restart_in_ms = pause.as_millis() as u64, "part exited; restarting it");
        let until = tokio::time::sleep(pause);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => break,
                _ = stop_asked(&mut stopping) => return,
                Some(Replace(done)) = replacing.recv() => {
                    let _ = done.send(Err(format!("it is being restarted after it exited ({exited})")));
                }
            }
        }
    }
}

/// Watches one process (and those that replace it) until it exits or the supervisor stops it.
async fn run(
    launch: &Launch,
    child: &Child,
    mut process: Process,
    stopping: &mut watch::Receiver<bool>,
    replacing: &mut mpsc::Receiver<Replace>,
) -> Ended {
    child.update(|state| state.pid = process.pid());
    let mut liveness = Liveness::new(child);
    loop {
        let Process { os, ready } = &mut process;
        tokio::select! {
            said = process::said_ready(ready) => match said {
                Ok(()) => {
                    child.ready.send_replace(true);
                }
                Err(why) => tracing::warn!(part = %child.name, %why, "not ready"),
            },
            status = os.wait() => {
                child.ready.send_replace(false);
                let exit = process::describe_exit(status);
                return Ended::Exited(match liveness.wedged.take() {
                    Some(why) => format!("not live ({why}); {exit}"),
                    None => exit,
                });
            }
            _ = liveness.tick.tick(), if ready.is_none() && liveness.wedged.is_none() => {
                if let Some(why) = liveness.check().await {
                    tracing::warn!(part = %child.name, %why, "not live; killing it to start it again");
                    let _ = os.start_kill();
                    liveness.wedged = Some(why);
                }
            }
            _ = stop_asked(stopping) => {
                process.terminate(&child.name).await;
                child.ready.send_replace(false);
                child.update(|state| state.pid = None);
                return Ended::Stopped;
            }
            Some(Replace(done)) = replacing.recv() => {
                let (outcome, next) = launch.replace(child, process).await;
                let _ = done.send(outcome);
                match next {
                    Some(next) => process = next,
                    None => return Ended::Exited("its replacement did not start".to_string()),
                }
                child.update(|state| state.pid = process.pid());
            }
        }
    }
}

/// Asks a child's `/health/live` and counts the failed answers in a row.
struct Liveness {
    url: String,
    http: reqwest::Client,
    tick: tokio::time::Interval,
    failures_in_a_row: u32,
    /// Why the process was killed, once it was.
    wedged: Option<String>,
}

impl Liveness {
    fn new(child: &Child) -> Liveness {
        let period = Duration::from_millis(LIVENESS_CHECK_MS);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Liveness {
            url: format!("{}/health/live", child.url),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_millis(LIVENESS_WAIT_MS))
                .build()
                .unwrap_or_default(),
            tick,
            failures_in_a_row: 0,
            wedged: None,
        }
    }

    /// Why the child must be replaced, once it failed `LIVENESS_FAILURES_MAX` answers in a row.
    async fn check(&mut self) -> Option<String> {
        let failed = match self.http.get(&self.url).send().await {
            Ok(answer) if answer.status().is_success() => None,
            Ok(answer) => Some(format!("liveness answered {}", answer.status())),
            Err(error) if error.is_timeout() => Some(format!(
                "liveness did not answer within {LIVENESS_WAIT_MS} ms"
            )),
            Err(error) => Some(format!("liveness unreachable: {error}")),
        };
        match failed {
            None => {
                self.failures_in_a_row = 0;
                None
            }
            Some(why) => {
                self.failures_in_a_row += 1;
                (self.failures_in_a_row >= LIVENESS_FAILURES_MAX)
                    .then(|| format!("{why}, {} times in a row", self.failures_in_a_row))
            }
        }
    }
}

impl Launch {
    fn spawn(&self, child: &Child) -> std::io::Result<Process> {
        process::spawn(&self.binary, &self.logs, child)
    }

    /// Replaces `old` with a new process the way `child` hands over; says what it did, and
    /// gives back the process that runs now (none if the new one could not start after the
    /// old one stopped).
    async fn replace(
        &self,
        child: &Child,
        mut old: Process,
    ) -> (Result<String, String>, Option<Process>) {
        let old_pid = old.pid().unwrap_or_default();
        match child.handover {
            Handover::Never => (
                Ok("kept: a rollout does not restart the store".to_string()),
                Some(old),
            ),
            Handover::Overlap => {
                let mut new = match self.spawn(child) {
                    Ok(new) => new,
                    Err(error) => return (Err(format!("could not start: {error}")), Some(old)),
                };
                if let Err(why) = new.until_ready().await {
                    new.terminate(&child.name).await;
                    return (Err(why), Some(old));
                }
                let stopped = old.terminate(&child.name).await;
                child.replaced();
                let what = format!(
                    "process {} ready beside {old_pid}, which then stopped in {} ms",
                    new.pid().unwrap_or_default(),
                    stopped.as_millis()
                );
                (Ok(what), Some(new))
            }
            Handover::StopFirst => {
                child.ready.send_replace(false);
                let stopped = old.terminate(&child.name).await;
                let mut new = match self.spawn(child) {
                    Ok(new) => new,
                    Err(error) => return (Err(format!("could not start: {error}")), None),
                };
                child.replaced();
                match new.until_ready().await {
                    Ok(took) => {
                        child.ready.send_replace(true);
                        let what = format!(
                            "process {old_pid} stopped in {} ms, then {} ready in {} ms",
                            stopped.as_millis(),
                            new.pid().unwrap_or_default(),
                            took.as_millis()
                        );
                        (Ok(what), Some(new))
                    }
                    Err(why) => (Err(why), Some(new)),
                }
            }
        }
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
