//! One child process: started with its listening socket at file descriptor 3 and a readiness
//! pipe at 4, watched until it says it is ready, stopped with SIGTERM then SIGKILL.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::task::JoinHandle;

use super::{Child, READY_S_MAX, STOP_S_MAX};

/// Where a child finds what it was handed: its listening socket and its readiness pipe.
pub(super) const SOCKET_FD: RawFd = 3;
pub(super) const READY_FD: RawFd = 4;
/// Descriptors the supervisor keeps are moved at or above this one, so placing the handed ones
/// at 3 and 4 in a new process can never overwrite one another.
const KEPT_FD_MIN: RawFd = 10;
/// Most bytes read from a readiness pipe (the child writes `ready\n`).
const READY_BYTES_MAX: u64 = 64;

/// A running child process.
pub(super) struct Process {
    pub os: tokio::process::Child,
    /// Resolves once the process said it is ready, or with why it never will; taken when seen.
    pub ready: Option<JoinHandle<Result<(), String>>>,
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(ready) = &self.ready {
            ready.abort();
        }
    }
}

impl Process {
    pub fn pid(&self) -> Option<u32> {
        self.os.id()
    }

    /// Waits until the process is ready; an error if it exits or is not ready in time.
    pub async fn until_ready(&mut self) -> Result<Duration, String> {
        let since = Instant::now();
        if self.ready.is_none() {
            return Ok(Duration::ZERO);
        }
        tokio::select! {
            said = said_ready(&mut self.ready) => said.map(|()| since.elapsed()),
            status = self.os.wait() => Err(format!("{} before it was ready", describe_exit(status))),
        }
    }

    /// SIGTERM, then SIGKILL if the process has not exited within `STOP_S_MAX`. How long it
    /// took.
    pub async fn terminate(&mut self, name: &str) -> Duration {
        let since = Instant::now();
        if let Some(pid) = self.os.id() {
            // SAFETY: kill(2) on the pid of a child this supervisor owns and has not reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        let stopped = tokio::time::timeout(Duration::from_secs(STOP_S_MAX), self.os.wait()).await;
        if stopped.is_err() {
            tracing::warn!(part = %name, "did not stop within {STOP_S_MAX} s of SIGTERM; killed");
            let _ = self.os.kill().await;
        }
        since.elapsed()
    }
}

/// Resolves once the process said it is ready, or with why it never will, and forgets the
/// signal; never if it was seen already.
pub(super) async fn said_ready(
    ready: &mut Option<JoinHandle<Result<(), String>>>,
) -> Result<(), String> {
    let Some(signal) = ready.as_mut() else {
        return std::future::pending().await;
    };
    let said = signal.await.unwrap_or_else(|e| Err(e.to_string()));
    *ready = None;
    said
}

pub(super) fn describe_exit(status: io::Result<std::process::ExitStatus>) -> String {
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

/// A copy of `fd` at or above `KEPT_FD_MIN`, closed on exec.
pub(super) fn kept(fd: &impl AsRawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor for an open one and touches no memory.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, KEPT_FD_MIN) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `copy` was just made and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// A pipe, both ends closed on exec: (read, write).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into an array of two.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just made and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts a process of `child`: output appended to its log in `logs`, its socket handed over at
/// `SOCKET_FD` with a readiness pipe at `READY_FD`.
pub(super) fn spawn(binary: &Path, logs: &Path, child: &Child) -> io::Result<Process> {
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
    for name in crate::config::SECRET_ENV {
        command.env_remove(name);
    }
    let (read, pipe_write) = pipe()?;
    let write = kept(&pipe_write)?;
    drop(pipe_write);
    command.args([
        "--listen-fd".to_string(),
        SOCKET_FD.to_string(),
        "--ready-fd".to_string(),
        READY_FD.to_string(),
    ]);
    hand_over(&mut command, child.socket.as_raw_fd(), write.as_raw_fd());
    let os = command.spawn()?;
    // The write end is the child's now: closing this copy lets the read end see the end of the
    // file when the child exits.
    drop(write);
    let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(read)?;
    let ready = tokio::spawn(read_ready(pipe, child.name.clone()));
    Ok(Process {
        os,
        ready: Some(ready),
    })
}

/// Between fork and exec: the handed descriptors to 3 and 4, and a parent-death signal.
fn hand_over(command: &mut Command, socket: RawFd, ready: RawFd) {
    // SAFETY: dup2 and prctl allocate nothing and are async-signal-safe, as code between fork
    // and exec must be; the descriptors are the supervisor's, open until spawn returns, and at
    // or above KEPT_FD_MIN, so neither dup2 overwrites the other's source.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(socket, SOCKET_FD) < 0 || libc::dup2(ready, READY_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            // A child outlives no supervisor, even one killed with SIGKILL.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

async fn read_ready(pipe: tokio::net::unix::pipe::Receiver, name: String) -> Result<(), String> {
    let mut said = Vec::new();
    let mut pipe = pipe.take(READY_BYTES_MAX);
    let read = pipe.read_to_end(&mut said);
    match tokio::time::timeout(Duration::from_secs(READY_S_MAX), read).await {
        Ok(Ok(_)) if said.starts_with(b"ready") => Ok(()),
        Ok(Ok(_)) => Err(format!(
            "{name} ended before it was ready (see logs/{name}.log)"
        )),
        Ok(Err(error)) => Err(format!("reading {name}'s readiness: {error}")),
        Err(_) => Err(format!(
            "{name} not ready after {READY_S_MAX} s (see logs/{name}.log)"
        )),
    }
}
