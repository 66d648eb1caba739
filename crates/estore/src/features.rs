//! `ServerFeatures.GetSupportedMethods`: tells clients exactly what this server implements, so
//! they switch on what is there (the Node client uses BatchAppend when it is listed) and nothing
//! else.

use tonic::{Request, Response, Status};

use crate::proto::event_store::client::server_features::{
    server_features_server, SupportedMethod, SupportedMethods,
};
use crate::proto::event_store::client::Empty;

/// The protocol version we answer as: clients parse it as digits and dots.
pub const SERVER_VERSION: &str = "24.10.0";

const STREAMS_SERVICE: &str = "event_store.client.streams.streams";
const FEATURES_SERVICE: &str = "event_store.client.server_features.serverfeatures";
const PERSISTENT_SERVICE: &str =
    "event_store.client.persistent_subscriptions.persistentsubscriptions";

pub struct FeaturesService;

#[tonic::async_trait]
impl server_features_server::ServerFeatures for FeaturesService {
    async fn get_supported_methods(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<SupportedMethods>, Status> {
        let method = |name: &str, service: &str, features: &[&str]| SupportedMethod {
            method_name: name.to_string(),
            service_name: service.to_string(),
            features: features.iter().map(|f| f.to_string()).collect(),
        };
        let methods = vec![
            method("read", STREAMS_SERVICE, &[]),
            method("append", STREAMS_SERVICE, &[]),
            method("batchappend", STREAMS_SERVICE, &[]),
            method("delete", STREAMS_SERVICE, &[]),
            method("tombstone", STREAMS_SERVICE, &[]),
            method("create", PERSISTENT_SERVICE, &["stream", "all"]),
            method("update", PERSISTENT_SERVICE, &["stream", "all"]),
            method("delete", PERSISTENT_SERVICE, &["stream", "all"]),
            method("read", PERSISTENT_SERVICE, &["stream", "all"]),
            method("getinfo", PERSISTENT_SERVICE, &["stream", "all"]),
            method("replayparked", PERSISTENT_SERVICE, &["stream", "all"]),
            method("list", PERSISTENT_SERVICE, &["stream", "all"]),
            method("restartsubsystem", PERSISTENT_SERVICE, &[]),
            method("getsupportedmethods", FEATURES_SERVICE, &[]),
        ];
        Ok(Response::new(SupportedMethods {
            methods,
            event_store_server_version: SERVER_VERSION.to_string(),
        }))
    }
}
