//! Taking over from a previous process without refusing a connection: a service may be handed
//! its listening socket by whoever started it (a supervisor that keeps the socket open across
//! the service's restarts, so connections wait in the socket's queue while a new process comes
//! up instead of being refused), and may tell that supervisor through a pipe when it is ready.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::Running;

/// Where a service takes its connections.
#[derive(Debug, Clone)]
pub enum Listen {
    /// An address the service binds itself (port 0 picks a free one).
    Bind(SocketAddr),
    /// A listening socket it was handed, shared with whoever handed it.
    Socket(Arc<std::net::TcpListener>),
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Listen {
        Listen::Bind(addr)
    }
}

impl Listen {
    /// The listening TCP socket this process inherited at file descriptor `fd`. Called once per
    /// descriptor: the socket is this process's from then on.
    pub fn inherited(fd: RawFd) -> io::Result<Listen> {
        let mut accepting: libc::c_int = 0;
        let mut size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `size` bytes into `accepting`, which is that large;
        // on a descriptor that is not open or not a socket it fails without touching it.
        let asked = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ACCEPTCONN,
                (&mut accepting as *mut libc::c_int).cast(),
                &mut size,
            )
        };
        if asked != 0 {
            return Err(io::Error::other(format!(
                "file descriptor {fd} is not a socket: {}",
                io::Error::last_os_error()
            )));
        }
        if accepting == 0 {
            return Err(io::Error::other(format!(
                "file descriptor {fd} is a socket that does not listen"
            )));
        }
        // SAFETY: `fd` is an open listening socket (checked above) that nothing else in this
        // process owns: it was inherited, and this is called once per descriptor.
        let socket = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        let _ = socket.local_addr()?;
        Ok(Listen::Socket(Arc::new(socket)))
    }

    /// A listening socket of its own: bound at the address, or a copy of the socket handed.
    pub fn bound(&self) -> io::Result<std::net::TcpListener> {
        match self {
            Listen::Bind(addr) => std::net::TcpListener::bind(addr),
            Listen::Socket(socket) => socket.try_clone(),
        }
    }

    /// The socket to accept on.
    pub(crate) async fn listener(&self) -> io::Result<tokio::net::TcpListener> {
        match self {
            Listen::Bind(addr) => tokio::net::TcpListener::bind(addr).await,
            Listen::Socket(socket) => {
                let socket = socket.try_clone()?;
                socket.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(socket)
            }
        }
    }
}

/// How often a starting service checks whether it is ready, to tell its supervisor.
const READY_POLL_MS: u64 = 10;

/// The write end of a pipe this process inherited: it writes `ready` to it once its service is
/// ready, then closes it. The reader learns that the service is ready, or, on end of file
/// without it, that the process is gone.
#[derive(Debug)]
pub struct ReadyPipe(OwnedFd);

impl ReadyPipe {
    /// The pipe inherited at `fd`; called once per descriptor.
    pub fn inherited(fd: RawFd) -> io::Result<ReadyPipe> {
        // SAFETY: fcntl(F_GETFD) only asks whether the descriptor is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(io::Error::other(format!(
                "file descriptor {fd} is not open: {}",
                io::Error::last_os_error()
            )));
        }
        // SAFETY: `fd` is open (checked above), inherited, and taken once.
        Ok(ReadyPipe(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Waits until `running` is ready, then says so on the pipe and closes it.
    pub async fn tell_when_ready(self, running: &Running) -> io::Result<()> {
        while !running.is_ready() {
            tokio::time::sleep(Duration::from_millis(READY_POLL_MS)).await;
        }
        self.tell()
    }

    /// Says "ready" on the pipe now and closes it.
    pub fn tell(self) -> io::Result<()> {
        let mut pipe = std::fs::File::from(self.0);
        io::Write::write_all(&mut pipe, b"ready\n")
    }
}
