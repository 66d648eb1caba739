//! What the shop's benchmarks share: signed calls, the do-nothing service of the same HTTP stack
//! (the machine's own limit), percentiles.

use std::sync::OnceLock;

use axum::routing::post;
use serde_json::{json, Value};

/// The shop's identity key: services answer only signed callers.
pub static IDENTITY: OnceLock<servicekit::IdentityKey> = OnceLock::new();

pub trait Signed {
    fn signed(self, actor: &str) -> Self;
}

impl Signed for reqwest::RequestBuilder {
    fn signed(self, actor: &str) -> Self {
        let proof = IDENTITY
            .get()
            .map(|key| key.prove(actor))
            .unwrap_or_default();
        self.header("x-actor", actor)
            .header(servicekit::PROOF_HEADER, proof)
    }
}

/// A do-nothing JSON POST (`/hello`) served by `servicekit::serve`, the services' own stack.
pub async fn do_nothing_service() -> servicekit::Running {
    let routes = axum::Router::new().route("/hello", post(|| async { axum::Json(json!({})) }));
    servicekit::serve(
        "hello",
        servicekit::Listen::Bind("127.0.0.1:0".parse().unwrap()),
        routes,
        servicekit::Readiness::always(),
        None,
        json!({}),
    )
    .await
    .unwrap()
}

/// Registers a product with a million units in stock; returns its id.
pub async fn register(http: &reqwest::Client, inventory: &str, name: &str) -> String {
    let answer: Value = http
        .post(format!("{inventory}/products"))
        .signed("seller:bench")
        .json(&json!({ "name": name, "price": 100, "stock": 1_000_000 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["productId"].as_str().unwrap().to_string()
}

pub fn percentile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
