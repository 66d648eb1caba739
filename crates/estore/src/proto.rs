//! Generated protocol types. The module nesting mirrors the proto packages because the generated
//! code refers across packages with relative `super::` paths.

#![allow(clippy::all, missing_docs)]

pub mod event_store {
    pub mod client {
        tonic::include_proto!("event_store.client");

        pub mod streams {
            tonic::include_proto!("event_store.client.streams");
        }

        pub mod persistent_subscriptions {
            tonic::include_proto!("event_store.client.persistent_subscriptions");
        }

        pub mod server_features {
            tonic::include_proto!("event_store.client.server_features");
        }
    }
}

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}
