//! The protocol's floor: a gRPC server on the store's own socket options that keeps nothing. It
//! answers every append at once, writing nothing, and streams a `$all` read of `count` copies of
//! one event built in memory. What the official client achieves against it is the most the
//! store could reach on this machine with that client, whatever its log did: the limit the
//! store's append latency and replay rate are measured against.

// A stream of `Result<_, Status>` is what tonic's generated trait asks for.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;

use bytes::Bytes;
use estore::proto::event_store::client::streams::read_resp::{self, read_event};
use estore::proto::event_store::client::streams::streams_server::{Streams, StreamsServer};
use estore::proto::event_store::client::streams::{
    append_resp, AppendReq, AppendResp, BatchAppendReq, BatchAppendResp, DeleteReq, DeleteResp,
    ReadReq, ReadResp,
};
use estore::proto::event_store::client::{self as shared, StreamIdentifier};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

/// Events one read streams, at most.
const READ_EVENTS_MAX: usize = 10_000_000;

struct Floor {
    data: Bytes,
}

#[tonic::async_trait]
impl Streams for Floor {
    async fn read(
        &self,
        request: Request<ReadReq>,
    ) -> Result<Response<BoxStream<ReadResp>>, Status> {
        use estore::proto::event_store::client::streams::read_req::options::CountOption;
        let count = match request.into_inner().options.and_then(|o| o.count_option) {
            Some(CountOption::Count(count)) => (count as usize).min(READ_EVENTS_MAX),
            _ => return Err(Status::unimplemented("the floor serves bounded reads only")),
        };
        let data = self.data.clone();
        let events = (0..count).map(move |n| Ok(event(n as u64, data.clone())));
        Ok(Response::new(Box::pin(futures::stream::iter(events))))
    }

    async fn append(
        &self,
        request: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        let mut messages = request.into_inner();
        let mut received = 0u64;
        while messages.message().await?.is_some() {
            received += 1;
        }
        use append_resp::success::{CurrentRevisionOption, PositionOption};
        Ok(Response::new(AppendResp {
            result: Some(append_resp::Result::Success(append_resp::Success {
                current_revision_option: Some(CurrentRevisionOption::CurrentRevision(received)),
                position_option: Some(PositionOption::Position(append_resp::Position {
                    commit_position: received,
                    prepare_position: received,
                })),
            })),
        }))
    }

    async fn delete(&self, _: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        Err(Status::unimplemented("the floor keeps nothing"))
    }

    async fn tombstone(&self, _: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        Err(Status::unimplemented("the floor keeps nothing"))
    }

    async fn batch_append(
        &self,
        _: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<BoxStream<BatchAppendResp>>, Status> {
        Err(Status::unimplemented("the floor keeps nothing"))
    }
}

/// One event as the store sends it (string id, the three metadata entries), at `position`.
fn event(position: u64, data: Bytes) -> ReadResp {
    let entry = |key: &'static str, value: &'static str| read_event::MetadataEntry {
        key: Bytes::from_static(key.as_bytes()),
        value: Bytes::from_static(value.as_bytes()),
    };
    let recorded = read_event::RecordedEvent {
        id: Some(shared::Uuid {
            value: Some(shared::uuid::Value::String(
                "5f0c2a3e-8d8b-4c61-9f3e-0c7a1b2d3e4f".into(),
            )),
        }),
        stream_identifier: Some(StreamIdentifier {
            stream_name: Bytes::from_static(b"order-floor"),
        }),
        stream_revision: position,
        prepare_position: position,
        commit_position: position,
        metadata: vec![
            entry("type", "PayPlaced"),
            entry("content-type", "application/json"),
            entry("created", "639001234567890000"),
        ],
        custom_metadata: Bytes::new(),
        data,
    };
    ReadResp {
        content: Some(read_resp::Content::Event(read_resp::ReadEvent {
            event: Some(recorded),
            link: None,
            position: Some(read_event::Position::CommitPosition(position)),
        })),
    }
}

/// Serves the floor on an ephemeral loopback port until the process ends; `data` is every
/// event's body.
pub async fn start(data: Vec<u8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind the floor");
    let addr = listener.local_addr().expect("floor address");
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener
            .accept()
            .await
            .map(|(socket, _)| estore::server::LowLatency::new(socket));
        Some((accepted, listener))
    });
    let floor = Floor {
        data: Bytes::from(data),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(StreamsServer::new(floor))
            .add_service(
                estore::proto::event_store::client::server_features::server_features_server::ServerFeaturesServer::new(
                    estore::features::FeaturesService,
                ),
            )
            .serve_with_incoming(incoming),
    );
    addr
}
