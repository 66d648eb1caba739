//! The protocol's floor: a gRPC server on the store's own socket options that keeps nothing. It
//! answers every append at once, writing nothing, and streams a `$all` read of `count` copies of
//! one event built in memory. What the official client achieves against it is the most the
//! store could reach on this machine with that client, whatever its log did: the limit the
//! store's append latency and replay rate are measured against.

// A stream of `Result<_, Status>` is what tonic's generated trait asks for.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;

use bytes::Bytes;
use estore::proto::event_store::client::streams::streams_server::{Streams, StreamsServer};
use estore::proto::event_store::client::streams::{
    AppendReq, AppendResp, BatchAppendReq, BatchAppendResp, DeleteReq, DeleteResp, ReadReq,
    ReadResp,
};
use estore::storage::{AppendOutcome, RecordedEvent, Text};
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
        let template = event(self.data.clone());
        let events = (0..count as u64).map(move |position| {
            let mut event = template.clone();
            (event.position, event.revision) = (position, position);
            // As the store sends them: string ids, the clients' default.
            Ok(estore::wire::read_event(&event, true))
        });
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
        Ok(Response::new(estore::streams::append_success(
            AppendOutcome {
                current_revision: Some(received),
                position: Some(received),
            },
        )))
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

/// The one event every read is made of, as the log would hand it over.
fn event(data: Bytes) -> RecordedEvent {
    RecordedEvent {
        position: 0,
        stream: Text::from_static("order-floor"),
        revision: 0,
        id: uuid::Uuid::from_u128(0x5f0c2a3e_8d8b_4c61_9f3e_0c7a1b2d3e4f),
        event_type: Text::from_static("PayPlaced"),
        content_type: Text::from_static("application/json"),
        created_ticks: 639_001_234_567_890_000,
        custom_metadata: Bytes::new(),
        data,
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
