//! The process's metrics: one Prometheus recorder behind the `metrics` crate's facade, so any
//! crate records with `metrics::counter!`/`histogram!`/`gauge!` and every service's `/metrics`
//! renders them all. Durations are histograms in seconds with fixed buckets.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds of every `…_seconds` histogram, in seconds: from a loopback call to a timeout.
const SECONDS_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How often histograms are compacted between scrapes, in seconds.
const UPKEEP_S: u64 = 5;

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use (`None` if another recorder was installed
/// first, e.g. by a test harness: then nothing is rendered).
pub fn recorder() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            let upkeep = handle.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(UPKEEP_S));
                    loop {
                        tick.tick().await;
                        upkeep.run_upkeep();
                    }
                });
            }
            Some(handle)
        })
        .as_ref()
}

/// Every metric of the process, as Prometheus text.
pub fn render() -> String {
    recorder().map(PrometheusHandle::render).unwrap_or_default()
}
