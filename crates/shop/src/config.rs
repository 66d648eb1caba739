//! The shop's configuration, 12-factor: every option is a flag or a `MINIMALL_…` environment
//! variable, every secret can also come from a file (`…_FILE`, how Docker and Kubernetes secrets
//! arrive), and the defaults are written here once for `up`, `serve` and `estore`.
//!
//! It must not: start anything. It turns what the command line and the environment say into
//! the settings the parts start with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use servicekit::{IdentityKey, Secret};

use crate::{PartSettings, Ports, Service, ShopSettings, Urls};

/// The embedded store at its default address.
pub const STORE_URL: &str = "esdb://127.0.0.1:2113?tls=false&discoveryInterval=0";
/// Where `minimall up` keeps its data, and the names inside it.
pub const DATA_DIR: &str = "./data";
pub const ESTORE_DIR: &str = "estore";
pub const ORDER_STATUS_FILE: &str = "order-status.sqlite";
/// The identity secret `up` keeps when given none (readable by its owner only).
pub const IDENTITY_FILE: &str = "identity.secret";
/// Time a customer has to pay, in seconds: a week.
pub const DUE_PERIOD_S: u64 = 7 * 24 * 3600;
/// The bank account customers pay into.
pub const BANK_ACCOUNT: &str = "DE02 1203 0000 0000 2020 51 (minimall demo)";
/// How long a part run alone keeps serving after its readiness went 503 when told to stop, in
/// milliseconds: two of the gateway's readiness polls (1 s apart, 0.5 s timeout).
pub const DRAIN_NOTICE_MS: u64 = 2_500;
/// Longest secret file read, in bytes: a key or an accounts file, not a disk image.
pub const SECRET_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// The environment variables that hold a secret or name its file. The supervisor hands its
/// children each secret as a file of its own, so it does not pass these on: an inherited value
/// would conflict with the file it names, and a child's environment is no place for a secret.
pub const SECRET_ENV: [&str; 6] = [
    "MINIMALL_IDENTITY_SECRET",
    "MINIMALL_IDENTITY_SECRET_FILE",
    "MINIMALL_TOKEN_SECRET",
    "MINIMALL_TOKEN_SECRET_FILE",
    "MINIMALL_ACCOUNTS",
    "MINIMALL_ACCOUNTS_FILE",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {what} from {path}: {source}")]
    SecretFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} in {path} is larger than {SECRET_FILE_BYTES_MAX} bytes")]
    SecretFileTooLarge { what: &'static str, path: PathBuf },
    #[error("{what} is empty")]
    EmptySecret { what: &'static str },
    #[error("the accounts ({from}) are not a JSON list of {{name, role, passwordHash}}: {source}")]
    Accounts {
        from: String,
        source: serde_json::Error,
    },
    #[error(
        "services need the identity secret the shop's parts share: --identity-secret \
         (MINIMALL_IDENTITY_SECRET) or --identity-secret-file (MINIMALL_IDENTITY_SECRET_FILE)"
    )]
    MissingIdentitySecret,
    #[error(
        "the gateway needs the secret its tokens are signed with: --token-secret \
         (MINIMALL_TOKEN_SECRET) or --token-secret-file (MINIMALL_TOKEN_SECRET_FILE)"
    )]
    MissingTokenSecret,
    #[error(
        "the gateway needs its accounts: --accounts (MINIMALL_ACCOUNTS) or --accounts-file \
         (MINIMALL_ACCOUNTS_FILE); --demo-accounts for the demo ones (password = name)"
    )]
    MissingAccounts,
    #[error(
        "signing calls to the shop's services needs its identity secret: --identity-secret, \
         --identity-secret-file, or the --data-dir of a shop started by `minimall up` (which \
         keeps it in {IDENTITY_FILE}); none in {0}"
    )]
    NoKeptIdentity(PathBuf),
}

/// The identity secret `up` keeps in its data directory when given none: made at the first
/// start (mode 0600) and read at every later one, so that tools run beside the shop
/// (`minimall projections rebuild`) can sign their calls to its services.
pub fn kept_identity(data_dir: &Path) -> Result<Secret, ConfigError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = data_dir.join(IDENTITY_FILE);
    let failed = |source| ConfigError::SecretFile {
        what: "the identity secret",
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(failed)?;
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match created {
        Ok(mut file) => file
            .write_all(Secret::random().expose().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(failed)?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(failed(e)),
    }
    read_secret_file("the identity secret", &path)
}

/// A secret's text from a file: one trailing line break (as `echo` and editors leave) is not
/// part of it.
fn read_secret_file(what: &'static str, path: &Path) -> Result<Secret, ConfigError> {
    let failed = |source| ConfigError::SecretFile {
        what,
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(failed)?.len();
    if size > SECRET_FILE_BYTES_MAX {
        return Err(ConfigError::SecretFileTooLarge {
            what,
            path: path.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(failed)?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    non_empty(what, Secret::new(text))
}

fn non_empty(what: &'static str, secret: Secret) -> Result<Secret, ConfigError> {
    if secret.expose().is_empty() {
        return Err(ConfigError::EmptySecret { what });
    }
    Ok(secret)
}

/// The value given directly, or read from the file given instead.
fn secret(
    what: &'static str,
    value: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    match (value, file) {
        (Some(value), _) => non_empty(what, value.clone()).map(Some),
        (None, Some(path)) => read_secret_file(what, path).map(Some),
        (None, None) => Ok(None),
    }
}

/// The secret the gateway and the services sign callers' identities with.
#[derive(Args, Debug, Clone)]
pub struct IdentityArgs {
    /// The secret the shop's parts sign callers' identities with (the same for all parts).
    #[arg(
        long,
        global = true,
        env = "MINIMALL_IDENTITY_SECRET",
        hide_env_values = true,
        conflicts_with = "identity_secret_file"
    )]
    pub identity_secret: Option<Secret>,
    /// A file holding the identity secret.
    #[arg(long, global = true, env = "MINIMALL_IDENTITY_SECRET_FILE")]
    pub identity_secret_file: Option<PathBuf>,
}

impl IdentityArgs {
    /// The key given, or else the one the shop on `data_dir` keeps (never a new one).
    pub fn key_or_kept(&self, data_dir: &Path) -> Result<IdentityKey, ConfigError> {
        if let Some(key) = self.key()? {
            return Ok(key);
        }
        let kept = data_dir.join(IDENTITY_FILE);
        if !kept.exists() {
            return Err(ConfigError::NoKeptIdentity(data_dir.to_path_buf()));
        }
        // Read only: a tool never makes the secret a shop it signs for does not have.
        let secret = read_secret_file("the identity secret", &kept)?;
        Ok(IdentityKey::new(secret.expose().as_bytes()))
    }

    pub fn key(&self) -> Result<Option<IdentityKey>, ConfigError> {
        let secret = secret(
            "the identity secret",
            &self.identity_secret,
            &self.identity_secret_file,
        )?;
        Ok(secret.map(|secret| IdentityKey::new(secret.expose().as_bytes())))
    }
}

/// The secret the gateway signs its tokens with.
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// Secret signing the gateway's tokens.
    #[arg(
        long,
        env = "MINIMALL_TOKEN_SECRET",
        hide_env_values = true,
        conflicts_with = "token_secret_file"
    )]
    pub token_secret: Option<Secret>,
    /// A file holding the token secret.
    #[arg(long, env = "MINIMALL_TOKEN_SECRET_FILE")]
    pub token_secret_file: Option<PathBuf>,
}

impl TokenArgs {
    pub fn secret(&self) -> Result<Option<Secret>, ConfigError> {
        secret(
            "the token secret",
            &self.token_secret,
            &self.token_secret_file,
        )
    }
}

/// Who may log in at the gateway.
#[derive(Args, Debug, Clone)]
pub struct AccountsArgs {
    /// The accounts as JSON: `[{"name", "role": "customer"|"seller", "passwordHash"}]`, hashes
    /// from `minimall hash-password`.
    #[arg(
        long,
        env = "MINIMALL_ACCOUNTS",
        hide_env_values = true,
        conflicts_with = "accounts_file"
    )]
    pub accounts: Option<Secret>,
    /// A file holding the accounts' JSON.
    #[arg(long, env = "MINIMALL_ACCOUNTS_FILE")]
    pub accounts_file: Option<PathBuf>,
}

impl AccountsArgs {
    /// The accounts given, `None` if none are.
    pub fn accounts(&self) -> Result<Option<Vec<gateway::Account>>, ConfigError> {
        let Some(text) = secret("the accounts", &self.accounts, &self.accounts_file)? else {
            return Ok(None);
        };
        let from = match &self.accounts_file {
            Some(path) if self.accounts.is_none() => path.display().to_string(),
            _ => "MINIMALL_ACCOUNTS".to_string(),
        };
        serde_json::from_str(text.expose())
            .map(Some)
            .map_err(|source| ConfigError::Accounts { from, source })
    }
}

/// The event store the part writes to or follows.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// The event store's connection string (its value is not shown here: it may carry
    /// credentials).
    #[arg(long, env = "MINIMALL_STORE_URL", hide_env_values = true, default_value = STORE_URL)]
    pub store_url: String,
}

/// The order service, for the parts that call it (the gateway takes comma-separated replicas
/// for each service it calls).
#[derive(Args, Debug, Clone)]
pub struct OrderUrl {
    #[arg(long, env = "MINIMALL_ORDER_URL", default_value_t = Urls::local().order)]
    pub order_url: String,
}

#[derive(Args, Debug, Clone)]
pub struct PaymentUrl {
    #[arg(long, env = "MINIMALL_PAYMENT_URL", default_value_t = Urls::local().payment)]
    pub payment_url: String,
}

#[derive(Args, Debug, Clone)]
pub struct InventoryUrl {
    #[arg(long, env = "MINIMALL_INVENTORY_URL", default_value_t = Urls::local().inventory)]
    pub inventory_url: String,
}

#[derive(Args, Debug, Clone)]
pub struct DeliveryUrl {
    #[arg(long, env = "MINIMALL_DELIVERY_URL", default_value_t = Urls::local().delivery)]
    pub delivery_url: String,
}

/// The saga's instances, for the gateway's operator view (comma-separated).
#[derive(Args, Debug, Clone)]
pub struct SagaUrl {
    #[arg(long, env = "MINIMALL_SAGA_URL", default_value_t = Urls::local().saga)]
    pub saga_url: String,
}

#[derive(Args, Debug, Clone)]
pub struct OrderStatusUrl {
    #[arg(long, env = "MINIMALL_ORDER_STATUS_URL", default_value_t = Urls::local().order_status)]
    pub order_status_url: String,
}

/// How customers pay.
#[derive(Args, Debug, Clone)]
pub struct PaymentArgs {
    /// The bank account customers pay into, as shown to them.
    #[arg(long, env = "MINIMALL_ACCOUNT", default_value = BANK_ACCOUNT)]
    pub account: String,
    /// Seconds a customer has to pay after ordering.
    #[arg(long, env = "MINIMALL_DUE_PERIOD_S", default_value_t = DUE_PERIOD_S)]
    pub due_period_s: u64,
}

/// `minimall up`: the whole shop in one process.
#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// Directory holding the shop's data.
    #[arg(long, env = "MINIMALL_DATA_DIR", default_value = DATA_DIR)]
    pub data_dir: PathBuf,
    /// Use this event store instead of the embedded one (an esdb:// connection string).
    #[arg(long, env = "MINIMALL_STORE_URL", hide_env_values = true)]
    pub store_url: Option<String>,
    #[command(flatten)]
    pub payment: PaymentArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub token: TokenArgs,
    #[command(flatten)]
    pub accounts: AccountsArgs,
    /// Let every part pick a free port instead of the defaults (the printed list says which):
    /// for tests and for running a second shop beside the first.
    #[arg(long)]
    pub any_port: bool,
    /// Run every part as its own child process of this binary (`ps` shows which is which),
    /// started again with a bounded pause whenever it exits or is killed.
    #[arg(long)]
    pub supervise: bool,
    /// With --supervise: replicas of order, payment, inventory, delivery, the saga (sharing the
    /// orders) and the read model (each with its own database), 1 to 8.
    #[arg(long, env = "MINIMALL_REPLICAS", default_value_t = 1, requires = "supervise",
          value_parser = clap::value_parser!(u16).range(1..=crate::supervise::REPLICAS_MAX as i64))]
    pub replicas: u16,
}

impl UpArgs {
    /// The shop's settings; the identity secret not given is the one kept in the data directory,
    /// the token secret not given a fresh one, valid for this run (tokens end with the run).
    pub fn settings(&self) -> Result<ShopSettings, ConfigError> {
        let ports = if self.any_port {
            Ports::ANY
        } else {
            Ports::DEFAULT
        };
        let mut settings = ShopSettings::new(&self.data_dir, ports);
        settings.store_url = self.store_url.clone();
        let parts = &mut settings.parts;
        parts.demo_catalogue = true;
        parts.account = self.payment.account.clone();
        parts.due_period = Duration::from_secs(self.payment.due_period_s);
        // One machine, one person: the demo accounts unless others are given.
        if let Some(accounts) = self.accounts.accounts()? {
            parts.gateway.accounts = accounts;
        }
        if let Some(secret) = self.token.secret()? {
            parts.gateway.token_secret = secret;
        }
        let identity = match self.identity.key()? {
            Some(key) => key,
            None => IdentityKey::new(kept_identity(&self.data_dir)?.expose().as_bytes()),
        };
        parts.identity = identity;
        Ok(settings)
    }
}

impl UpArgs {
    /// The supervised fleet's settings, its children running `binary`; secrets as for
    /// [`UpArgs::settings`].
    pub fn supervise_settings(
        &self,
        binary: PathBuf,
    ) -> Result<crate::supervise::SuperviseSettings, ConfigError> {
        let accounts = secret(
            "the accounts",
            &self.accounts.accounts,
            &self.accounts.accounts_file,
        )?;
        // Refused here, with the reason, rather than by the gateway child at start.
        self.accounts.accounts()?;
        let identity = secret(
            "the identity secret",
            &self.identity.identity_secret,
            &self.identity.identity_secret_file,
        )?;
        Ok(crate::supervise::SuperviseSettings {
            binary,
            data_dir: self.data_dir.clone(),
            any_port: self.any_port,
            replicas: usize::from(self.replicas),
            store_url: self.store_url.clone(),
            identity: match identity {
                Some(secret) => secret,
                None => kept_identity(&self.data_dir)?,
            },
            token: self.token.secret()?.unwrap_or_else(Secret::random),
            accounts,
            due_period_s: self.payment.due_period_s,
            account: self.payment.account.clone(),
        })
    }
}

/// `minimall serve <part>`: one part on its own.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on (the part's default port on 127.0.0.1 if not given).
    #[arg(long, global = true, env = "MINIMALL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Take connections on the listening socket inherited at this file descriptor instead of
    /// binding an address: how `up --supervise` hands each part its socket, which stays open
    /// across the part's restarts.
    #[arg(
        long,
        global = true,
        env = "MINIMALL_LISTEN_FD",
        conflicts_with = "listen"
    )]
    pub listen_fd: Option<i32>,
    /// Write `ready` to the pipe inherited at this file descriptor once the part is ready, then
    /// close it: how `up --supervise` learns that a new process can take over.
    #[arg(long, global = true, env = "MINIMALL_READY_FD")]
    pub ready_fd: Option<i32>,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// On SIGTERM or Ctrl-C, keep serving this long after readiness went 503, so the gateway and
    /// a kubelet take the part out of rotation before it stops (at most 60,000).
    #[arg(long, global = true, env = "MINIMALL_DRAIN_MS", default_value_t = DRAIN_NOTICE_MS)]
    pub drain_ms: u64,
}

/// The part `minimall serve` runs, with exactly the options it uses (an option a part would
/// ignore is refused, so a deployment cannot set one by mistake).
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Part {
    /// Orders: place, cancel, confirm receipt (port 8081).
    Order {
        #[command(flatten)]
        store: StoreArgs,
        /// Asked whether a customer's cancel may go ahead.
        #[command(flatten)]
        payment: PaymentUrl,
    },
    /// Payments by bank transfer (port 8082).
    Payment {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        payment: PaymentArgs,
    },
    /// Catalogue and stock (port 8083).
    Inventory {
        #[command(flatten)]
        store: StoreArgs,
        /// Register the demo catalogue on start (fixed ids: never twice).
        #[arg(long, env = "MINIMALL_DEMO_CATALOGUE")]
        demo_catalogue: bool,
    },
    /// Deliveries (port 8084).
    Delivery {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The order process manager (status on port 8085).
    Saga {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        order: OrderUrl,
        #[command(flatten)]
        payment: PaymentUrl,
        #[command(flatten)]
        inventory: InventoryUrl,
        #[command(flatten)]
        delivery: DeliveryUrl,
    },
    /// The order-status read model and its queries (port 8086).
    OrderStatus {
        #[command(flatten)]
        store: StoreArgs,
        /// The read model's SQLite file.
        #[arg(
            long,
            env = "MINIMALL_ORDER_STATUS_DB",
            default_value_os_t = Path::new(DATA_DIR).join(ORDER_STATUS_FILE)
        )]
        database: PathBuf,
    },
    /// The single entry point: web UI, authentication, routing, load shedding (port 8080).
    Gateway {
        #[command(flatten)]
        order: OrderUrl,
        #[command(flatten)]
        payment: PaymentUrl,
        #[command(flatten)]
        inventory: InventoryUrl,
        #[command(flatten)]
        order_status: OrderStatusUrl,
        #[command(flatten)]
        saga: SagaUrl,
        #[command(flatten)]
        token: TokenArgs,
        #[command(flatten)]
        accounts: AccountsArgs,
        /// Let the demo accounts log in (alice, bob, seller; password = name) when no accounts
        /// are given: for trying the shop, never for a shop open to others.
        #[arg(long, env = "MINIMALL_DEMO_ACCOUNTS", conflicts_with_all = ["accounts", "accounts_file"])]
        demo_accounts: bool,
        /// Proxies in front of the gateway (an Ingress: 1) whose X-Forwarded-For entries are
        /// trusted to tell anonymous clients apart for the rate limit; 0 trusts none.
        #[arg(long, env = "MINIMALL_TRUSTED_PROXIES", default_value_t = 0)]
        trusted_proxies: usize,
    },
}

impl Part {
    pub fn service(&self) -> Service {
        match self {
            Part::Order { .. } => Service::Order,
            Part::Payment { .. } => Service::Payment,
            Part::Inventory { .. } => Service::Inventory,
            Part::Delivery { .. } => Service::Delivery,
            Part::Saga { .. } => Service::Saga,
            Part::OrderStatus { .. } => Service::OrderStatus,
            Part::Gateway { .. } => Service::Gateway,
        }
    }

    /// The store the part uses; `None` for the gateway, which uses none.
    fn store(&self) -> Option<&StoreArgs> {
        match self {
            Part::Order { store, .. }
            | Part::Payment { store, .. }
            | Part::Inventory { store, .. }
            | Part::Delivery { store }
            | Part::Saga { store, .. }
            | Part::OrderStatus { store, .. } => Some(store),
            Part::Gateway { .. } => None,
        }
    }
}

impl ServeArgs {
    /// Where `part` listens and what it starts with.
    pub fn settings(&self, part: &Part) -> Result<(SocketAddr, PartSettings), ConfigError> {
        let service = part.service();
        let listen = self
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], Ports::DEFAULT.of(service))));
        let identity = self
            .identity
            .key()?
            .ok_or(ConfigError::MissingIdentitySecret)?;
        let mut parts = ShopSettings::new(DATA_DIR, Ports::DEFAULT).parts;
        parts.identity = identity;
        parts.drain_notice = Duration::from_millis(self.drain_ms);
        if let Some(store) = part.store() {
            parts.store_url = store.store_url.clone();
        }
        let urls = &mut parts.urls;
        match part {
            Part::Order { payment, .. } => urls.payment = payment.payment_url.clone(),
            Part::Payment { payment, .. } => {
                parts.account = payment.account.clone();
                parts.due_period = Duration::from_secs(payment.due_period_s);
            }
            Part::Inventory { demo_catalogue, .. } => parts.demo_catalogue = *demo_catalogue,
            Part::Delivery { .. } => {}
            Part::Saga {
                order,
                payment,
                inventory,
                delivery,
                ..
            } => {
                urls.order = order.order_url.clone();
                urls.payment = payment.payment_url.clone();
                urls.inventory = inventory.inventory_url.clone();
                urls.delivery = delivery.delivery_url.clone();
            }
            Part::OrderStatus { database, .. } => parts.order_status_database = database.clone(),
            Part::Gateway {
                order,
                payment,
                inventory,
                order_status,
                saga,
                token,
                accounts,
                demo_accounts,
                trusted_proxies,
            } => {
                parts.gateway.trusted_proxies = *trusted_proxies;
                urls.order = order.order_url.clone();
                urls.payment = payment.payment_url.clone();
                urls.inventory = inventory.inventory_url.clone();
                urls.order_status = order_status.order_status_url.clone();
                urls.saga = saga.saga_url.clone();
                parts.gateway.token_secret =
                    token.secret()?.ok_or(ConfigError::MissingTokenSecret)?;
                parts.gateway.accounts = match accounts.accounts()? {
                    Some(accounts) => accounts,
                    None if *demo_accounts => crate::demo_accounts(),
                    None => return Err(ConfigError::MissingAccounts),
                };
            }
        }
        Ok((listen, parts))
    }
}

impl ServeArgs {
    /// Where the part takes its connections: the inherited socket if one was handed
    /// (`--listen-fd`, taken over by this call, so made once), else `addr`.
    pub fn listener(&self, addr: SocketAddr) -> std::io::Result<servicekit::Listen> {
        match self.listen_fd {
            Some(fd) => servicekit::Listen::inherited(fd),
            None => Ok(addr.into()),
        }
    }

    /// The pipe to say "ready" on (`--ready-fd`, taken over by this call, so made once).
    pub fn ready_pipe(&self) -> std::io::Result<Option<servicekit::ReadyPipe>> {
        self.ready_fd
            .map(servicekit::ReadyPipe::inherited)
            .transpose()
    }
}

/// `minimall estore`: the embedded event store on its own.
#[derive(Args, Debug, Clone)]
pub struct EstoreArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "MINIMALL_ESTORE_LISTEN",
        default_value_t = SocketAddr::from(([127, 0, 0, 1], Ports::DEFAULT.store))
    )]
    pub listen: SocketAddr,
    /// Take connections on the listening socket inherited at this file descriptor instead of
    /// binding `--listen` (how `up --supervise` hands the store its socket).
    #[arg(long, env = "MINIMALL_ESTORE_LISTEN_FD")]
    pub listen_fd: Option<i32>,
    /// Write `ready` to the pipe inherited at this file descriptor once serving, then close it.
    #[arg(long, env = "MINIMALL_ESTORE_READY_FD")]
    pub ready_fd: Option<i32>,
    /// Directory holding the event log.
    #[arg(
        long,
        env = "MINIMALL_ESTORE_DATA_DIR",
        default_value_os_t = Path::new(DATA_DIR).join(ESTORE_DIR)
    )]
    pub data_dir: PathBuf,
}

impl EstoreArgs {
    /// The socket to serve on: the inherited one (`--listen-fd`, taken over by this call, so
    /// made once), else `--listen` bound.
    pub fn listener(&self) -> std::io::Result<std::net::TcpListener> {
        match self.listen_fd {
            Some(fd) => servicekit::Listen::inherited(fd)?.bound(),
            None => servicekit::Listen::Bind(self.listen).bound(),
        }
    }

    /// The pipe to say "ready" on (`--ready-fd`, taken over by this call, so made once).
    pub fn ready_pipe(&self) -> std::io::Result<Option<servicekit::ReadyPipe>> {
        self.ready_fd
            .map(servicekit::ReadyPipe::inherited)
            .transpose()
    }

    pub fn settings(&self) -> estore::Settings {
        estore::Settings::new(self.listen, &self.data_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        serve: ServeArgs,
        #[command(subcommand)]
        part: Part,
    }

    fn serve(args: &[&str]) -> Result<(SocketAddr, PartSettings), String> {
        let cli = Serve::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.serve.settings(&cli.part).map_err(|e| e.to_string())
    }

    #[test]
    fn the_secret_environment_is_every_secret_option_s() {
        use clap::Args;
        let mut command = clap::Command::new("secrets");
        command = IdentityArgs::augment_args(command);
        command = TokenArgs::augment_args(command);
        command = AccountsArgs::augment_args(command);
        let mut named: Vec<String> = command
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .collect();
        named.sort();
        let mut listed = SECRET_ENV.map(String::from).to_vec();
        listed.sort();
        assert_eq!(named, listed);
    }

    #[test]
    fn a_secret_comes_from_a_file_without_its_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("identity");
        std::fs::write(&file, "s3cret\n").unwrap();
        let key = IdentityArgs {
            identity_secret: None,
            identity_secret_file: Some(file),
        }
        .key()
        .unwrap()
        .unwrap();
        let direct = IdentityKey::new(b"s3cret");
        assert!(direct.verify("customer:alice", &key.prove("customer:alice")));
    }

    #[test]
    fn a_missing_or_empty_secret_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none");
        let error =
            serve(&["--identity-secret-file", missing.to_str().unwrap(), "order"]).unwrap_err();
        assert!(
            error.contains("reading the identity secret from"),
            "{error}"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let error =
            serve(&["--identity-secret-file", empty.to_str().unwrap(), "order"]).unwrap_err();
        assert_eq!(error, "the identity secret is empty");
    }

    #[test]
    fn a_service_without_the_identity_secret_does_not_start() {
        let error = serve(&["order"]).unwrap_err();
        assert!(error.contains("--identity-secret"), "{error}");
    }

    #[test]
    fn a_part_listens_at_its_default_port_unless_told() {
        let (listen, _) = serve(&["--identity-secret", "x", "payment"]).unwrap();
        assert_eq!(listen.to_string(), "127.0.0.1:8082");
        let (listen, settings) = serve(&[
            "--identity-secret",
            "x",
            "payment",
            "--listen",
            "0.0.0.0:9000",
            "--due-period-s",
            "60",
        ])
        .unwrap();
        assert_eq!(listen.to_string(), "0.0.0.0:9000");
        assert_eq!(settings.due_period, Duration::from_secs(60));
    }

    #[test]
    fn the_gateway_reads_its_accounts_from_a_file_and_refuses_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("accounts.json");
        let accounts = serde_json::to_string(&crate::demo_accounts()[..1]).unwrap();
        std::fs::write(&file, accounts).unwrap();
        let gateway = |file: &Path| {
            serve(&[
                "--identity-secret",
                "x",
                "gateway",
                "--token-secret",
                "t",
                "--accounts-file",
                file.to_str().unwrap(),
            ])
        };
        let (_, settings) = gateway(&file).unwrap();
        assert_eq!(settings.gateway.accounts.len(), 1);
        std::fs::write(&file, "{not json").unwrap();
        let error = gateway(&file).unwrap_err();
        assert!(error.contains("are not a JSON list"), "{error}");
    }

    #[test]
    fn a_part_refuses_an_option_it_would_ignore() {
        let gateway = ["--identity-secret", "x", "gateway", "--token-secret", "t"];
        let error =
            serve(&[&gateway[..], &["--store-url", "esdb://elsewhere:2113"]].concat()).unwrap_err();
        assert!(error.contains("--store-url"), "{error}");
        let error = serve(&[
            "--identity-secret",
            "x",
            "saga",
            "--order-status-url",
            "http://x",
        ])
        .unwrap_err();
        assert!(error.contains("--order-status-url"), "{error}");
    }

    #[test]
    fn the_gateway_needs_its_token_secret() {
        let error = serve(&["--identity-secret", "x", "gateway", "--demo-accounts"]).unwrap_err();
        assert!(error.contains("--token-secret"), "{error}");
    }

    #[test]
    fn the_gateway_lets_the_demo_accounts_in_only_when_told() {
        let gateway = ["--identity-secret", "x", "gateway", "--token-secret", "t"];
        let error = serve(&gateway).unwrap_err();
        assert!(error.contains("needs its accounts"), "{error}");
        let (_, settings) = serve(&[&gateway[..], &["--demo-accounts"]].concat()).unwrap();
        assert_eq!(settings.gateway.accounts, crate::demo_accounts());
    }
}
