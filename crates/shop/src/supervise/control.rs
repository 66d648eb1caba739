//! The supervisor's control socket (`supervisor.sock` in the data directory, this user only):
//! one JSON line asked, JSON lines answered until the work is done. `minimall rollout` asks
//! through it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{Child, Replace, READY_S_MAX, STOP_S_MAX};

/// The control socket in the data directory.
pub const CONTROL_SOCKET: &str = "supervisor.sock";
/// Longest question, in bytes.
const ASK_BYTES_MAX: u64 = 1_024;
/// Longest wait for a question once connected, in milliseconds.
const ASK_MS_MAX: u64 = 2_000;
/// Connections answered at once; one more is closed unanswered.
const CONNECTIONS_MAX: usize = 8;
/// Pause after a failed accept (e.g. out of file descriptors), in milliseconds.
const ACCEPT_PAUSE_MS: u64 = 100;

/// What the control socket is asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum Ask {
    /// Replace every part's process, one at a time.
    Rollout,
}

/// What it answers, line by line; the last line is `Done` or `Failed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Said {
    /// One part's process was replaced (or, for the store, kept).
    Replaced {
        part: String,
        what: String,
    },
    Done {
        parts: usize,
        elapsed_ms: u64,
    },
    Failed {
        reason: String,
    },
}

/// The parts a rollout goes through, in order, each with the way to ask its keeper.
pub(super) type Keepers = Vec<(Arc<Child>, tokio::sync::mpsc::Sender<Replace>)>;

/// Answers the control socket until the task is aborted.
pub(super) async fn serve(listener: UnixListener, keepers: Arc<Keepers>) {
    let rollout = Arc::new(tokio::sync::Mutex::new(()));
    let connections = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "control socket: cannot accept");
                tokio::time::sleep(Duration::from_millis(ACCEPT_PAUSE_MS)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            continue;
        };
        let keepers = Arc::clone(&keepers);
        let rollout = Arc::clone(&rollout);
        tokio::spawn(async move {
            if let Err(error) = answer(stream, &keepers, &rollout).await {
                tracing::warn!(%error, "control socket");
            }
            drop(permit);
        });
    }
}

async fn answer(
    stream: UnixStream,
    keepers: &Keepers,
    rollout: &tokio::sync::Mutex<()>,
) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut read = BufReader::new(read.take(ASK_BYTES_MAX));
    tokio::time::timeout(Duration::from_millis(ASK_MS_MAX), read.read_line(&mut line))
        .await
        .context("no question in time")??;
    let ask = serde_json::from_str::<Ask>(&line);
    let say = |said: Said| {
        let mut text = serde_json::to_string(&said).unwrap_or_default();
        text.push('\n');
        text
    };
    let Ok(Ask::Rollout) = ask else {
        let reason = format!("not a question this supervisor answers: {}", line.trim());
        write
            .write_all(say(Said::Failed { reason }).as_bytes())
            .await?;
        return Ok(());
    };
    let Ok(_only) = rollout.try_lock() else {
        let reason = "a rollout is already running".to_string();
        write
            .write_all(say(Said::Failed { reason }).as_bytes())
            .await?;
        return Ok(());
    };
    let started = std::time::Instant::now();
    for (child, keeper) in keepers {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let asked = keeper.send(Replace(done)).await;
        let outcome = match asked {
            Ok(()) => outcome
                .await
                .unwrap_or_else(|_| Err("the shop is stopping".to_string())),
            Err(_) => Err("the shop is stopping".to_string()),
        };
        match outcome {
            Ok(what) => {
                tracing::info!(part = %child.name, %what, "rollout");
                let said = Said::Replaced {
                    part: child.name.clone(),
                    what,
                };
                write.write_all(say(said).as_bytes()).await?;
            }
            Err(reason) => {
                let reason = format!("{}: {reason}; the rollout stopped there", child.name);
                tracing::warn!(%reason, "rollout");
                write
                    .write_all(say(Said::Failed { reason }).as_bytes())
                    .await?;
                return Ok(());
            }
        }
    }
    let said = Said::Done {
        parts: keepers.len(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    write.write_all(say(said).as_bytes()).await?;
    Ok(())
}

/// Binds the control socket of `data_dir` (this user only), replacing a stale one.
pub(super) fn bind(data_dir: &Path) -> anyhow::Result<(UnixListener, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let path = data_dir.join(CONTROL_SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok((listener, path))
}

/// Asks the supervised shop on `data_dir` for a rollout, telling `each` every line it answers.
pub async fn rollout(data_dir: &Path, mut each: impl FnMut(&Said)) -> anyhow::Result<()> {
    super::read_state(data_dir)?;
    let path = data_dir.join(CONTROL_SOCKET);
    let stream = UnixStream::connect(&path)
        .await
        .with_context(|| format!("reaching the supervisor at {}", path.display()))?;
    let (read, mut write) = stream.into_split();
    let mut ask = serde_json::to_string(&Ask::Rollout)?;
    ask.push('\n');
    write.write_all(ask.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    // Each part takes at most its start and its stop.
    let line_wait = Duration::from_secs(READY_S_MAX + STOP_S_MAX + 5);
    loop {
        let line = tokio::time::timeout(line_wait, lines.next_line())
            .await
            .context("the supervisor stopped answering")??
            .context("the supervisor hung up before the rollout was done")?;
        let said: Said = serde_json::from_str(&line)
            .with_context(|| format!("not an answer of the supervisor: {line}"))?;
        each(&said);
        match said {
            Said::Replaced { .. } => {}
            Said::Done { .. } => return Ok(()),
            Said::Failed { reason } => anyhow::bail!("rollout failed: {reason}"),
        }
    }
}
