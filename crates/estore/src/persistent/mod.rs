//! The `PersistentSubscriptions` gRPC service: subscription groups the server keeps, so several
//! instances of a consumer share a stream's (or `$all`'s) events — each event to one of them,
//! acknowledged, retried on a nack or a timeout, parked after too many retries (a poison event
//! stops blocking the others), replayed from the parked stream on request.
//!
//! Each group runs as its own task ([`group`]); the groups' configuration is an event in the
//! log ([`config`]), their checkpoints and parked events are streams, so everything survives a
//! restart or a kill -9.

pub mod config;
pub mod group;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Code, Request, Response, Status, Streaming};
use uuid::Uuid;

use self::config::{
    group_name, Configuration, FilterSpec, GroupConfig, Settings, Source, Wire, CONFIG_EVENT_TYPE,
    CONFIG_STREAM, GROUPS_MAX,
};
use self::group::{Command, Delivery, Group, Info, NackAction, COMMANDS_QUEUED_MAX};
use crate::limits::Limits;
use crate::proto::event_store::client::persistent_subscriptions as proto;
use crate::proto::event_store::client::{self as shared, StreamIdentifier};
use crate::storage::metadata::metastream_of;
use crate::storage::{
    Direction, ExpectedRevision, NewEvent, RecordedEvent, Store, StreamPage, Text,
};
use crate::wire::{self, invalid, status_with_exception};

/// Longest wait for a group's figures in `GetInfo` / `List`, in milliseconds.
const INFO_WAIT_MS: u64 = 2_000;
/// Configuration events the config stream keeps (`$maxCount`): only the latest is read.
const CONFIG_EVENTS_KEPT: u64 = 10;

type Key = (Source, String);

struct Running {
    config: GroupConfig,
    commands: mpsc::Sender<Command>,
}

struct Registry {
    /// Revision of the latest configuration event (`None`: none written yet).
    revision: Option<u64>,
    groups: HashMap<Key, Running>,
    /// The stored configuration could not be read: writing a new one would lose it, so
    /// changes are refused until an operator mends it.
    unreadable: bool,
}

impl Registry {
    fn writable(&self) -> Result<(), Status> {
        if self.unreadable {
            return Err(Status::failed_precondition(format!(
                "the stored persistent subscription configuration ({CONFIG_STREAM}) is unreadable; \
                 groups cannot be changed until it is mended"
            )));
        }
        Ok(())
    }
}

pub struct PersistentService {
    store: Store,
    limits: Arc<Limits>,
    registry: Arc<Mutex<Registry>>,
    next_consumer: AtomicU64,
    closing: watch::Receiver<bool>,
}

/// A refusal about a group, with the trailers the clients read (`exception`, `stream-name`,
/// `group-name`).
pub(crate) fn refusal(
    code: Code,
    message: String,
    exception: &str,
    config: &GroupConfig,
) -> Status {
    refusal_for(code, message, exception, &config.source, &config.group)
}

fn refusal_for(
    code: Code,
    message: String,
    exception: &str,
    source: &Source,
    group: &str,
) -> Status {
    status_with_exception(
        code,
        message,
        &[
            ("exception", exception.to_string()),
            ("stream-name", source.name().to_string()),
            ("group-name", group.to_string()),
        ],
    )
}

fn not_found(source: &Source, group: &str) -> Status {
    refusal_for(
        Code::NotFound,
        format!(
            "Subscription group '{group}' on stream '{}' does not exist.",
            source.name()
        ),
        "persistent-subscription-does-not-exist",
        source,
        group,
    )
}

/// The group's source named by a request's `stream_option` (each request has its own oneof
/// type, with the same two cases).
macro_rules! source_of {
    ($service:expr, $option:expr, $oneof:ident, $what:literal) => {
        match $option {
            Some($oneof::StreamIdentifier(id)) => Source::Stream($service.stream_name(Some(id))?),
            Some($oneof::All(_)) => Source::All,
            None => return Err(invalid(concat!($what, " names neither a stream nor $all"))),
        }
    };
}

impl PersistentService {
    /// Loads the groups kept in the log and starts them.
    pub async fn start(
        store: Store,
        limits: Arc<Limits>,
        closing: watch::Receiver<bool>,
    ) -> PersistentService {
        let mut registry = Registry {
            revision: None,
            groups: HashMap::new(),
            unreadable: false,
        };
        if let Ok(StreamPage::Events(events)) = store
            .read_stream(CONFIG_STREAM.to_string(), u64::MAX, Direction::Backwards, 1)
            .await
        {
            if let Some(event) = events.first() {
                registry.revision = Some(event.revision);
                match serde_json::from_slice::<Configuration>(&event.data) {
                    Ok(configuration) => {
                        for config in configuration.groups {
                            let key = (config.source.clone(), config.group.clone());
                            registry.groups.insert(key, spawn(config, &store));
                        }
                    }
                    Err(error) => {
                        registry.unreadable = true;
                        tracing::error!(%error, "the persistent subscriptions' configuration is unreadable; no group runs")
                    }
                }
            }
        }
        PersistentService {
            store,
            limits,
            registry: Arc::new(Mutex::new(registry)),
            next_consumer: AtomicU64::new(1),
            closing,
        }
    }

    fn stream_name(&self, identifier: Option<StreamIdentifier>) -> Result<String, Status> {
        wire::stream_name(identifier, &self.limits)
    }

    /// Writes every group's configuration as the config stream's next event.
    async fn persist(&self, registry: &mut Registry) -> Result<(), Status> {
        let mut groups: Vec<GroupConfig> =
            registry.groups.values().map(|r| r.config.clone()).collect();
        groups.sort_by(|a, b| (a.source.name(), &a.group).cmp(&(b.source.name(), &b.group)));
        let data = serde_json::to_vec(&Configuration { groups })
            .map_err(|e| Status::internal(e.to_string()))?;
        let expected = match registry.revision {
            Some(revision) => ExpectedRevision::Exact(revision),
            None => ExpectedRevision::NoStream,
        };
        let outcome = self
            .store
            .append(
                CONFIG_STREAM.to_string(),
                expected,
                vec![json_event(CONFIG_EVENT_TYPE, data)],
            )
            .await
            .map_err(wire::status_from_store)?;
        if registry.revision.is_none() {
            self.keep_latest(CONFIG_STREAM, CONFIG_EVENTS_KEPT).await;
        }
        registry.revision = outcome.current_revision;
        Ok(())
    }

    /// Bounds a bookkeeping stream (`$maxCount`); a failure only leaves it unbounded.
    async fn keep_latest(&self, stream: &str, count: u64) {
        let data = serde_json::json!({ "$maxCount": count })
            .to_string()
            .into_bytes();
        let event = json_event(crate::storage::metadata::METADATA_EVENT_TYPE, data);
        if let Err(error) = self
            .store
            .append(metastream_of(stream), ExpectedRevision::Any, vec![event])
            .await
        {
            tracing::warn!(%error, stream, "cannot bound a bookkeeping stream");
        }
    }

    /// Where a new group starts: the first revision or position it delivers, and how it was
    /// asked for.
    async fn start_of(&self, source: &Source, start: Start) -> Result<(u64, String), Status> {
        Ok(match (source, start) {
            (_, Start::Beginning) => (0, "0".to_string()),
            (Source::Stream(name), Start::End) => {
                let last = self
                    .store
                    .stream_last_revision(name.clone())
                    .await
                    .map_err(wire::status_from_store)?;
                (last.map_or(0, |r| r + 1), "-1".to_string())
            }
            (Source::All, Start::End) => (self.store.last_position() + 1, "-1".to_string()),
            (Source::Stream(_), Start::At(revision)) => (revision, revision.to_string()),
            (Source::All, Start::At(position)) => (position, group::shown(&Source::All, position)),
        })
    }

    async fn stop(running: &Running, why: Status) {
        let (done, ended) = oneshot::channel();
        if running
            .commands
            .send(Command::Stop { why, done })
            .await
            .is_ok()
        {
            // A task that already ended drops `done`: the wait ends either way.
            let _ = ended.await;
        }
    }

    async fn command_for(&self, key: &Key) -> Result<mpsc::Sender<Command>, Status> {
        let registry = self.registry.lock().await;
        registry
            .groups
            .get(key)
            .map(|r| r.commands.clone())
            .ok_or_else(|| not_found(&key.0, &key.1))
    }

    async fn info_of(
        &self,
        config: &GroupConfig,
        commands: &mpsc::Sender<Command>,
    ) -> proto::SubscriptionInfo {
        let (reply, answer) = oneshot::channel();
        let asked = async {
            commands.send(Command::Info { reply }).await.ok()?;
            answer.await.ok()
        };
        // A group busy for longer than this shows its settings without its figures.
        let info = tokio::time::timeout(Duration::from_millis(INFO_WAIT_MS), asked)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        subscription_info(config, info)
    }
}

enum Start {
    Beginning,
    End,
    At(u64),
}

fn spawn(config: GroupConfig, store: &Store) -> Running {
    let (commands, inbox) = mpsc::channel(COMMANDS_QUEUED_MAX);
    tokio::spawn(Group::new(config.clone(), store.clone(), inbox).run());
    Running { config, commands }
}

fn json_event(event_type: &'static str, data: Vec<u8>) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: Text::from_static(event_type),
        content_type: Text::from_static(wire::CONTENT_TYPE_JSON),
        custom_metadata: Bytes::new(),
        data: Bytes::from(data),
    }
}

fn all_position(commit: u64, prepare: u64) -> Result<u64, Status> {
    if commit == prepare {
        Ok(commit)
    } else {
        Err(invalid(format!(
            "Trying to read from an invalid position: commit {commit}, prepare {prepare}"
        )))
    }
}

/// A create request's source, start and filter.
fn create_target(
    service: &PersistentService,
    options: &mut proto::create_req::Options,
) -> Result<(Source, Start, Option<FilterSpec>), Status> {
    use proto::create_req::{all_options, options::StreamOption, stream_options};
    #[allow(deprecated)]
    let legacy = options.stream_identifier.take();
    match options.stream_option.take() {
        Some(StreamOption::Stream(stream)) => {
            let name = service.stream_name(stream.stream_identifier)?;
            let start = match stream.revision_option {
                Some(stream_options::RevisionOption::Revision(r)) => Start::At(r),
                Some(stream_options::RevisionOption::End(_)) => Start::End,
                Some(stream_options::RevisionOption::Start(_)) | None => Start::Beginning,
            };
            Ok((Source::Stream(name), start, None))
        }
        Some(StreamOption::All(all)) => {
            let start = match all.all_option {
                Some(all_options::AllOption::Position(p)) => {
                    Start::At(all_position(p.commit_position, p.prepare_position)?)
                }
                Some(all_options::AllOption::End(_)) => Start::End,
                Some(all_options::AllOption::Start(_)) | None => Start::Beginning,
            };
            let filter = match all.filter_option {
                Some(all_options::FilterOption::Filter(filter)) => Some(FilterSpec::of(filter)?),
                _ => None,
            };
            Ok((Source::All, start, filter))
        }
        None => Ok((
            Source::Stream(service.stream_name(legacy)?),
            Start::Beginning,
            None,
        )),
    }
}

fn update_target(
    service: &PersistentService,
    options: &mut proto::update_req::Options,
) -> Result<(Source, Option<Start>), Status> {
    use proto::update_req::{all_options, options::StreamOption, stream_options};
    #[allow(deprecated)]
    let legacy = options.stream_identifier.take();
    match options.stream_option.take() {
        Some(StreamOption::Stream(stream)) => {
            let name = service.stream_name(stream.stream_identifier)?;
            let start = stream.revision_option.map(|r| match r {
                stream_options::RevisionOption::Revision(r) => Start::At(r),
                stream_options::RevisionOption::End(_) => Start::End,
                stream_options::RevisionOption::Start(_) => Start::Beginning,
            });
            Ok((Source::Stream(name), start))
        }
        Some(StreamOption::All(all)) => {
            let start = match all.all_option {
                Some(all_options::AllOption::Position(p)) => Some(Start::At(all_position(
                    p.commit_position,
                    p.prepare_position,
                )?)),
                Some(all_options::AllOption::End(_)) => Some(Start::End),
                Some(all_options::AllOption::Start(_)) => Some(Start::Beginning),
                None => None,
            };
            Ok((Source::All, start))
        }
        None => Ok((Source::Stream(service.stream_name(legacy)?), None)),
    }
}

#[tonic::async_trait]
impl proto::persistent_subscriptions_server::PersistentSubscriptions for PersistentService {
    async fn create(
        &self,
        request: Request<proto::CreateReq>,
    ) -> Result<Response<proto::CreateResp>, Status> {
        let mut options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("create options are missing"))?;
        let group = group_name(std::mem::take(&mut options.group_name))?;
        let (source, start, filter) = create_target(self, &mut options)?;
        let settings = Settings::validate(Wire::from(
            options
                .settings
                .ok_or_else(|| invalid("settings are missing"))?,
        ))?;
        let mut registry = self.registry.lock().await;
        registry.writable()?;
        let key = (source.clone(), group.clone());
        if registry.groups.contains_key(&key) {
            return Err(refusal_for(
                Code::AlreadyExists,
                format!(
                    "Subscription group '{group}' on stream '{}' exists.",
                    source.name()
                ),
                "persistent-subscription-exists",
                &source,
                &group,
            ));
        }
        if registry.groups.len() >= GROUPS_MAX {
            return Err(Status::resource_exhausted(format!(
                "the store keeps at most {GROUPS_MAX} subscription groups"
            )));
        }
        let (start_at, start_from) = self.start_of(&source, start).await?;
        let config = GroupConfig {
            source,
            group,
            start_at,
            start_from,
            filter,
            settings,
        };
        // Checkpoints are bookkeeping: only the latest is read.
        self.keep_latest(&config.checkpoint_stream(), 1).await;
        registry
            .groups
            .insert(key.clone(), spawn(config, &self.store));
        if let Err(status) = self.persist(&mut registry).await {
            if let Some(running) = registry.groups.remove(&key) {
                Self::stop(&running, Status::unavailable("the group could not be kept")).await;
            }
            return Err(status);
        }
        Ok(Response::new(proto::CreateResp {}))
    }

    async fn update(
        &self,
        request: Request<proto::UpdateReq>,
    ) -> Result<Response<proto::UpdateResp>, Status> {
        let mut options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("update options are missing"))?;
        let group = group_name(std::mem::take(&mut options.group_name))?;
        let (source, start) = update_target(self, &mut options)?;
        let settings = Settings::validate(Wire::from(
            options
                .settings
                .ok_or_else(|| invalid("settings are missing"))?,
        ))?;
        let mut registry = self.registry.lock().await;
        registry.writable()?;
        let key = (source.clone(), group.clone());
        let Some(current) = registry.groups.get(&key) else {
            return Err(not_found(&source, &group));
        };
        let mut config = current.config.clone();
        config.settings = settings;
        if let Some(start) = start {
            (config.start_at, config.start_from) = self.start_of(&source, start).await?;
        }
        let running = registry.groups.remove(&key).expect("looked up above");
        Self::stop(
            &running,
            refusal(
                Code::Cancelled,
                "the group was updated; connect again".into(),
                "persistent-subscription-dropped",
                &config,
            ),
        )
        .await;
        registry.groups.insert(key, spawn(config, &self.store));
        self.persist(&mut registry).await?;
        Ok(Response::new(proto::UpdateResp {}))
    }

    async fn delete(
        &self,
        request: Request<proto::DeleteReq>,
    ) -> Result<Response<proto::DeleteResp>, Status> {
        use proto::delete_req::options::StreamOption;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("delete options are missing"))?;
        let source = source_of!(self, options.stream_option, StreamOption, "delete");
        let group = group_name(options.group_name)?;
        let mut registry = self.registry.lock().await;
        registry.writable()?;
        let Some(running) = registry.groups.remove(&(source.clone(), group.clone())) else {
            return Err(not_found(&source, &group));
        };
        Self::stop(
            &running,
            refusal(
                Code::Cancelled,
                "the group was deleted".into(),
                "persistent-subscription-dropped",
                &running.config,
            ),
        )
        .await;
        self.persist(&mut registry).await?;
        for stream in [
            running.config.checkpoint_stream(),
            running.config.parked_stream(),
        ] {
            // A stream never written cannot be deleted: nothing to do then.
            let _ = self
                .store
                .delete(stream, ExpectedRevision::Any, false)
                .await;
        }
        Ok(Response::new(proto::DeleteResp {}))
    }

    async fn read(
        &self,
        request: Request<Streaming<proto::ReadReq>>,
    ) -> Result<Response<BoxStream<proto::ReadResp>>, Status> {
        use proto::read_req::{options::StreamOption, Content};
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut inbound = request.into_inner();
        let Some(Content::Options(options)) = inbound.message().await?.and_then(|m| m.content)
        else {
            return Err(invalid(
                "a persistent subscription read must start with its options",
            ));
        };
        let source = source_of!(self, options.stream_option, StreamOption, "read");
        let group = group_name(options.group_name)?;
        let string_ids = !matches!(
            options.uuid_option.and_then(|o| o.content),
            Some(proto::read_req::options::uuid_option::Content::Structured(
                _
            ))
        );
        let buffer_size =
            usize::try_from(options.buffer_size.clamp(1, config::BUFFER_EVENTS_MAX)).unwrap_or(1);
        let key = (source.clone(), group.clone());
        let commands = self.command_for(&key).await?;
        let consumer = self.next_consumer.fetch_add(1, Ordering::Relaxed);
        let (deliveries, mut incoming) = mpsc::channel(buffer_size + 1);
        let (reply, joined) = oneshot::channel();
        commands
            .send(Command::Join {
                consumer,
                name: peer,
                buffer_size,
                deliveries,
                reply,
            })
            .await
            .map_err(|_| not_found(&source, &group))?;
        joined.await.map_err(|_| not_found(&source, &group))??;

        let (outbox, inbox) = mpsc::channel::<Result<proto::ReadResp, Status>>(buffer_size + 2);
        let confirmation = proto::ReadResp {
            content: Some(proto::read_resp::Content::SubscriptionConfirmation(
                proto::read_resp::SubscriptionConfirmation {
                    subscription_id: format!("{}::{}", source.name(), group),
                },
            )),
        };
        let _ = outbox.send(Ok(confirmation)).await;
        // Acks and nacks from the consumer; its going away hands its events to the others.
        let answers = commands.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                let command = match message.content {
                    Some(Content::Ack(ack)) => Command::Ack {
                        consumer,
                        ids: ids_of(ack.ids),
                    },
                    Some(Content::Nack(nack)) => Command::Nack {
                        consumer,
                        action: nack_action(nack.action),
                        ids: ids_of(nack.ids),
                        reason: nack.reason,
                    },
                    _ => continue,
                };
                if answers.send(command).await.is_err() {
                    break;
                }
            }
            let _ = answers.send(Command::Leave { consumer }).await;
        });
        let mut closing = self.closing.clone();
        tokio::spawn(async move {
            loop {
                let delivery = tokio::select! {
                    delivery = incoming.recv() => delivery,
                    _ = closing.wait_for(|c| *c) => Some(Err(Status::unavailable("the event store is stopping; reconnect"))),
                };
                let Some(delivery) = delivery else { break };
                let message = delivery.map(|d| read_event(&d, string_ids));
                let ended = message.is_err();
                if outbox.send(message).await.is_err() || ended {
                    break;
                }
            }
            let _ = commands.send(Command::Leave { consumer }).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(inbox))))
    }

    async fn get_info(
        &self,
        request: Request<proto::GetInfoReq>,
    ) -> Result<Response<proto::GetInfoResp>, Status> {
        use proto::get_info_req::options::StreamOption;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("get-info options are missing"))?;
        let source = source_of!(self, options.stream_option, StreamOption, "get-info");
        let key = (source.clone(), group_name(options.group_name)?);
        let (config, commands) = {
            let registry = self.registry.lock().await;
            let running = registry
                .groups
                .get(&key)
                .ok_or_else(|| not_found(&key.0, &key.1))?;
            (running.config.clone(), running.commands.clone())
        };
        let info = self.info_of(&config, &commands).await;
        Ok(Response::new(proto::GetInfoResp {
            subscription_info: Some(info),
        }))
    }

    async fn replay_parked(
        &self,
        request: Request<proto::ReplayParkedReq>,
    ) -> Result<Response<proto::ReplayParkedResp>, Status> {
        use proto::replay_parked_req::options::{StopAtOption, StreamOption};
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("replay options are missing"))?;
        let source = source_of!(self, options.stream_option, StreamOption, "replay");
        let key = (source, group_name(options.group_name)?);
        let stop_at = match options.stop_at_option {
            Some(StopAtOption::StopAt(n)) if n >= 0 => Some(n as u64),
            Some(StopAtOption::StopAt(n)) => {
                return Err(invalid(format!("stop_at must not be negative, got {n}")))
            }
            _ => None,
        };
        let commands = self.command_for(&key).await?;
        let (reply, done) = oneshot::channel();
        commands
            .send(Command::ReplayParked { stop_at, reply })
            .await
            .map_err(|_| not_found(&key.0, &key.1))?;
        done.await.map_err(|_| not_found(&key.0, &key.1))??;
        Ok(Response::new(proto::ReplayParkedResp {}))
    }

    async fn list(
        &self,
        request: Request<proto::ListReq>,
    ) -> Result<Response<proto::ListResp>, Status> {
        use proto::list_req::{options::ListOption, stream_option::StreamOption};
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("list options are missing"))?;
        let only = match options.list_option {
            Some(ListOption::ListForStream(s)) => match s.stream_option {
                Some(StreamOption::Stream(id)) => Some(Source::Stream(self.stream_name(Some(id))?)),
                Some(StreamOption::All(_)) => Some(Source::All),
                None => return Err(invalid("list names neither a stream nor $all")),
            },
            _ => None,
        };
        let running: Vec<(GroupConfig, mpsc::Sender<Command>)> = {
            let registry = self.registry.lock().await;
            registry
                .groups
                .values()
                .filter(|r| only.as_ref().is_none_or(|s| *s == r.config.source))
                .map(|r| (r.config.clone(), r.commands.clone()))
                .collect()
        };
        if let (Some(source), true) = (&only, running.is_empty()) {
            // As a node: listing the groups of a stream that has none is not found.
            return Err(refusal_for(
                Code::NotFound,
                format!("No subscription groups on stream '{}'.", source.name()),
                "persistent-subscription-does-not-exist",
                source,
                "",
            ));
        }
        let mut subscriptions = Vec::with_capacity(running.len());
        for (config, commands) in &running {
            subscriptions.push(self.info_of(config, commands).await);
        }
        Ok(Response::new(proto::ListResp { subscriptions }))
    }

    async fn restart_subsystem(
        &self,
        _request: Request<shared::Empty>,
    ) -> Result<Response<shared::Empty>, Status> {
        let mut registry = self.registry.lock().await;
        let keys: Vec<Key> = registry.groups.keys().cloned().collect();
        for key in keys {
            let running = registry.groups.remove(&key).expect("listed above");
            Self::stop(
                &running,
                refusal(
                    Code::Cancelled,
                    "the subsystem restarted; connect again".into(),
                    "persistent-subscription-dropped",
                    &running.config,
                ),
            )
            .await;
            registry
                .groups
                .insert(key, spawn(running.config, &self.store));
        }
        Ok(Response::new(shared::Empty {}))
    }
}

fn ids_of(ids: Vec<shared::Uuid>) -> Vec<Uuid> {
    ids.into_iter()
        .filter_map(|id| wire::parse_uuid(Some(id), "event id").ok())
        .collect()
}

fn nack_action(action: i32) -> NackAction {
    use proto::read_req::nack::Action;
    match Action::try_from(action) {
        Ok(Action::Park) => NackAction::Park,
        Ok(Action::Skip) => NackAction::Skip,
        Ok(Action::Stop) => NackAction::Stop,
        // Unknown is a retry, as on a node.
        Ok(Action::Retry) | Ok(Action::Unknown) | Err(_) => NackAction::Retry,
    }
}

fn recorded(
    event: &RecordedEvent,
    string_ids: bool,
) -> proto::read_resp::read_event::RecordedEvent {
    let metadata = HashMap::from([
        ("type".to_string(), event.event_type.as_str().to_string()),
        (
            "content-type".to_string(),
            event.content_type.as_str().to_string(),
        ),
        ("created".to_string(), event.created_ticks.to_string()),
    ]);
    proto::read_resp::read_event::RecordedEvent {
        id: Some(wire::uuid_to_proto(event.id, string_ids)),
        stream_identifier: Some(StreamIdentifier {
            stream_name: event.stream.bytes(),
        }),
        stream_revision: event.revision,
        prepare_position: event.position,
        commit_position: event.position,
        metadata,
        custom_metadata: event.custom_metadata.clone(),
        data: event.data.clone(),
    }
}

fn read_event(delivery: &Delivery, string_ids: bool) -> proto::ReadResp {
    use proto::read_resp::read_event::{Count, Position};
    let original = delivery.link.as_ref().unwrap_or(&delivery.event);
    proto::ReadResp {
        content: Some(proto::read_resp::Content::Event(
            proto::read_resp::ReadEvent {
                event: Some(recorded(&delivery.event, string_ids)),
                link: delivery.link.as_ref().map(|l| recorded(l, string_ids)),
                position: Some(Position::CommitPosition(original.position)),
                count: Some(Count::RetryCount(delivery.retry_count as i32)),
            },
        )),
    }
}

fn subscription_info(config: &GroupConfig, info: Info) -> proto::SubscriptionInfo {
    let settings = &config.settings;
    let shown = |cursor: Option<u64>| {
        cursor
            .map(|c| group::shown(&config.source, c))
            .unwrap_or_default()
    };
    proto::SubscriptionInfo {
        event_source: config.source.name().to_string(),
        group_name: config.group.clone(),
        status: info.status.to_string(),
        connections: info
            .connections
            .iter()
            .map(|c| proto::subscription_info::ConnectionInfo {
                from: c.name.clone(),
                username: String::new(),
                average_items_per_second: 0,
                total_items: c.total_items as i64,
                count_since_last_measurement: 0,
                observed_measurements: Vec::new(),
                available_slots: c.available_slots as i32,
                in_flight_messages: c.in_flight as i32,
                connection_name: c.name.clone(),
            })
            .collect(),
        average_per_second: 0,
        total_items: info.total_items as i64,
        count_since_last_measurement: 0,
        last_checkpointed_event_position: shown(info.last_checkpoint),
        last_known_event_position: shown(info.last_known),
        resolve_link_tos: settings.resolve_links,
        start_from: config.start_from.clone(),
        message_timeout_milliseconds: settings.message_timeout_ms as i32,
        extra_statistics: settings.extra_statistics,
        max_retry_count: settings.max_retry_count as i32,
        live_buffer_size: settings.live_buffer_size as i32,
        buffer_size: settings.history_buffer_size as i32,
        read_batch_size: settings.read_batch_size as i32,
        check_point_after_milliseconds: settings.checkpoint_after_ms as i32,
        min_check_point_count: settings.min_checkpoint_count as i32,
        max_check_point_count: settings.max_checkpoint_count as i32,
        read_buffer_count: info.read_buffer as i32,
        live_buffer_count: 0,
        retry_buffer_count: info.retry_buffer as i32,
        total_in_flight_messages: info.in_flight as i32,
        outstanding_messages_count: info.outstanding as i32,
        named_consumer_strategy: settings.strategy.name().to_string(),
        max_subscriber_count: settings.max_subscriber_count as i32,
        parked_message_count: info.parked as i64,
    }
}
