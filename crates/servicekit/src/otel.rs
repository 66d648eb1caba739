//! OpenTelemetry export: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (e.g. `http://127.0.0.1:4318`)
//! every `tracing` span is also exported over OTLP (HTTP/protobuf, `…/v1/traces`) in batches;
//! when it is not, nothing is exported and nothing is set up. Either way the spans' trace ids
//! are the ones the shop propagates (`traceparent`): `continue_trace` makes a span part of the
//! caller's trace and says which span context to pass on.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig as _;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::TraceParent;

/// The variable that turns export on.
pub const ENDPOINT_VARIABLE: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The exporter, to flush and stop when the process ends.
pub struct Export(opentelemetry_sdk::trace::SdkTracerProvider);

impl Export {
    /// Sends what is still buffered and stops (blocking: call it last).
    pub fn shutdown(self) {
        if let Err(error) = self.0.shutdown() {
            eprintln!("OpenTelemetry export did not flush: {error}");
        }
    }
}

/// The `tracing` layer that exports spans.
pub type ExportLayer<S> =
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>;

/// The layer exporting spans as `service`, if `OTEL_EXPORTER_OTLP_ENDPOINT` is set; `None` (no
/// export, nothing started) otherwise.
pub fn layer<S>(service: &str) -> Result<Option<(ExportLayer<S>, Export)>, String>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let Some(endpoint) = std::env::var(ENDPOINT_VARIABLE)
        .ok()
        .filter(|e| !e.is_empty())
    else {
        return Ok(None);
    };
    let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces)
        .build()
        .map_err(|e| format!("{ENDPOINT_VARIABLE}={endpoint}: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_string())
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("minimall");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok(Some((layer, Export(provider))))
}

/// Makes `span` a span of `parent`'s trace (a new trace without one) and gives the context to
/// pass on from it: the exported span's own ids when export is on, a new span id of the same
/// trace otherwise.
pub fn continue_trace(span: &tracing::Span, parent: Option<TraceParent>) -> TraceParent {
    if let Some(parent) = parent {
        let remote = SpanContext::new(
            TraceId::from(parent.trace_id),
            SpanId::from(parent.span_id),
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        );
        span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let exported = span.context().span().span_context().clone();
    if exported.is_valid() {
        return TraceParent {
            trace_id: u128::from_be_bytes(exported.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(exported.span_id().to_bytes()),
            flags: exported.trace_flags().to_u8(),
        };
    }
    parent.map_or_else(TraceParent::root, |parent| parent.child())
}
