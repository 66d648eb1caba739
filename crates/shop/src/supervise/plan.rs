//! Which children the fleet runs, with which arguments and sockets, in the order they start.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use servicekit::Secret;
use tokio::sync::watch;

use super::{Child, ChildState, Handover, SuperviseSettings, REPLICAS_MAX};

/// The drain notice of a supervised part, in milliseconds: long enough for a client's next
/// request on a kept-alive connection to learn that the connection closes.
const SUPERVISED_DRAIN_MS: u64 = 250;

/// The children in tiers: each tier starts once the one before is ready.
pub(super) struct Plan {
    pub tiers: Vec<Vec<Child>>,
}

/// What the children of one plan share.
struct Shared<'a> {
    identity: PathBuf,
    store_url: String,
    changed: &'a Arc<tokio::sync::Notify>,
}

impl Plan {
    pub fn new(
        settings: &SuperviseSettings,
        changed: &Arc<tokio::sync::Notify>,
    ) -> anyhow::Result<Plan> {
        let replicas = settings.replicas.clamp(1, REPLICAS_MAX);
        let secrets = settings.data_dir.join("supervisor");
        std::fs::create_dir_all(&secrets).context("making the supervisor's directory")?;
        let mut sockets = Sockets {
            any: settings.any_port,
        };
        let mut tiers = Vec::new();
        let store_url = match &settings.store_url {
            Some(url) => url.clone(),
            None => {
                let (estore, url) = estore_child(settings, &mut sockets, changed)?;
                tiers.push(vec![estore]);
                url
            }
        };
        let shared = Shared {
            identity: write_secret(&secrets.join("identity-secret"), &settings.identity)?,
            store_url,
            changed,
        };
        let p = crate::Ports::DEFAULT;
        let mut replicas_of = |default_port: u16| -> anyhow::Result<Vec<(SocketAddr, OwnedFd)>> {
            (0..replicas)
                .map(|i| sockets.bind(default_port, i))
                .collect()
        };
        let order_status = replicas_of(p.order_status)?;
        let payment = replicas_of(p.payment)?;
        let inventory = replicas_of(p.inventory)?;
        let delivery = replicas_of(p.delivery)?;
        let order = replicas_of(p.order)?;
        let saga = replicas_of(p.saga)?;
        let saga_urls = addrs(&saga);
        let gateway = sockets.bind(p.gateway, 0)?;
        let urls = Replicas {
            order: addrs(&order),
            payment: addrs(&payment),
            inventory: addrs(&inventory),
            order_status: addrs(&order_status),
            delivery: addrs(&delivery),
        };

        let mut services = Vec::new();
        for (i, socket) in order_status.into_iter().enumerate() {
            // Each read-model replica follows the log into its own database (the first one's
            // is the one `minimall up` keeps).
            let file = match i {
                0 => crate::config::ORDER_STATUS_FILE.to_string(),
                _ => format!("order-status-{}.sqlite", i + 1),
            };
            let database = path(&settings.data_dir.join(file));
            let args = shared.with_store("order-status", ["--database".into(), database]);
            services.push(shared.child(
                replica("order-status", i),
                args,
                socket,
                Handover::StopFirst,
            ));
        }
        for (i, socket) in payment.into_iter().enumerate() {
            let args = shared.with_store(
                "payment",
                [
                    "--account".into(),
                    settings.account.clone(),
                    "--due-period-s".into(),
                    settings.due_period_s.to_string(),
                ],
            );
            services.push(shared.child(replica("payment", i), args, socket, Handover::Overlap));
        }
        for (i, socket) in inventory.into_iter().enumerate() {
            let args = shared.with_store("inventory", ["--demo-catalogue".into()]);
            services.push(shared.child(replica("inventory", i), args, socket, Handover::Overlap));
        }
        for (i, socket) in delivery.into_iter().enumerate() {
            let args = shared.with_store("delivery", []);
            services.push(shared.child(replica("delivery", i), args, socket, Handover::Overlap));
        }
        // The order service and the saga call one URL per service (replica 1); only the
        // gateway spreads its calls over the replicas.
        for (i, socket) in order.into_iter().enumerate() {
            let args =
                shared.with_store("order", ["--payment-url".into(), urls.payment[0].clone()]);
            services.push(shared.child(replica("order", i), args, socket, Handover::Overlap));
        }
        let saga_args = shared.with_store(
            "saga",
            [
                "--order-url".into(),
                urls.order[0].clone(),
                "--payment-url".into(),
                urls.payment[0].clone(),
                "--inventory-url".into(),
                urls.inventory[0].clone(),
                "--delivery-url".into(),
                urls.delivery[0].clone(),
            ],
        );
        // Saga replicas share the orders through the store's lease table, so a new process may
        // start beside the old one: the old one hands its partitions over as it stops.
        for (i, socket) in saga.into_iter().enumerate() {
            let args = saga_args.clone();
            services.push(shared.child(replica("saga", i), args, socket, Handover::Overlap));
        }
        tiers.push(services);

        let token = write_secret(&secrets.join("token-secret"), &settings.token)?;
        let mut gateway_args = shared.serve("gateway");
        gateway_args.extend([
            "--order-url".into(),
            urls.order.join(","),
            "--payment-url".into(),
            urls.payment.join(","),
            "--inventory-url".into(),
            urls.inventory.join(","),
            "--order-status-url".into(),
            urls.order_status.join(","),
            "--saga-url".into(),
            saga_urls.join(","),
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
        tiers.push(vec![shared.child(
            "gateway".into(),
            gateway_args,
            gateway,
            Handover::Overlap,
        )]);
        Ok(Plan { tiers })
    }
}

/// The URLs of each service's replicas.
struct Replicas {
    order: Vec<String>,
    payment: Vec<String>,
    inventory: Vec<String>,
    delivery: Vec<String>,
    order_status: Vec<String>,
}

fn addrs(sockets: &[(SocketAddr, OwnedFd)]) -> Vec<String> {
    sockets
        .iter()
        .map(|(addr, _)| format!("http://{addr}"))
        .collect()
}

fn replica(part: &str, i: usize) -> String {
    format!("{part}-{}", i + 1)
}

impl Shared<'_> {
    /// `serve <part>` with what every supervised part gets. A short drain notice: the socket
    /// stays open while a process stops, so nobody must take it out of rotation, but the
    /// clients on its kept-alive connections are told (`Connection: close`) to leave them.
    fn serve(&self, part: &str) -> Vec<String> {
        vec![
            "serve".into(),
            part.into(),
            "--identity-secret-file".into(),
            path(&self.identity),
            "--drain-ms".into(),
            SUPERVISED_DRAIN_MS.to_string(),
        ]
    }

    fn with_store<const N: usize>(&self, part: &str, own: [String; N]) -> Vec<String> {
        let mut args = self.serve(part);
        args.extend(["--store-url".into(), self.store_url.clone()]);
        args.extend(own);
        args
    }

    fn child(
        &self,
        name: String,
        args: Vec<String>,
        (addr, socket): (SocketAddr, OwnedFd),
        handover: Handover,
    ) -> Child {
        let url = format!("http://{addr}");
        child(name, args, url.clone(), url, socket, handover, self.changed)
    }
}

fn estore_child(
    settings: &SuperviseSettings,
    sockets: &mut Sockets,
    changed: &Arc<tokio::sync::Notify>,
) -> anyhow::Result<(Child, String)> {
    let (addr, socket) = sockets.bind(crate::Ports::DEFAULT.store, 0)?;
    let data = settings.data_dir.join(crate::config::ESTORE_DIR);
    let args = vec!["estore".into(), "--data-dir".into(), path(&data)];
    let connection = estore::connection_string(addr);
    let estore = child(
        "estore".into(),
        args,
        format!("http://{addr}"),
        connection.clone(),
        socket,
        Handover::Never,
        changed,
    );
    Ok((estore, connection))
}

fn child(
    name: String,
    args: Vec<String>,
    url: String,
    shown: String,
    socket: OwnedFd,
    handover: Handover,
    changed: &Arc<tokio::sync::Notify>,
) -> Child {
    Child {
        state: Mutex::new(ChildState {
            name: name.clone(),
            url: url.clone(),
            pid: None,
            restarts: 0,
            replaced: 0,
            last_exit: None,
        }),
        name,
        args,
        shown,
        url,
        socket,
        handover,
        ready: watch::channel(false).0,
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

/// The listening sockets of the parts: the first replica of a part at its default port
/// unless free ports are asked for, every other at a free port. Bound once, here, and kept for
/// the supervisor's life, so no other program can take a port between a part's processes.
struct Sockets {
    any: bool,
}

impl Sockets {
    fn addr(&self, default_port: u16, replica: usize) -> SocketAddr {
        let port = if self.any || replica > 0 {
            0
        } else {
            default_port
        };
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn bind(&mut self, default_port: u16, replica: usize) -> anyhow::Result<(SocketAddr, OwnedFd)> {
        let addr = self.addr(default_port, replica);
        let socket = std::net::TcpListener::bind(addr)
            .with_context(|| format!("listening on {addr} (is another shop running?)"))?;
        let bound = socket.local_addr()?;
        Ok((bound, super::process::kept(&socket)?))
    }
}
