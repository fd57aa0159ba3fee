//! Metrics: one set of OpenTelemetry instruments, scraped by Prometheus from
//! `CRM_METRICS_ADDR` and pushed over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Instruments are named by OpenTelemetry's conventions (`rpc.server.call.duration`,
//! unit `s`); the Prometheus exporter turns that into `rpc_server_call_duration_seconds`.
//! Labels stay low-cardinality: services, methods, queues, outcomes — never a
//! client, staff or referral id.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;

use crate::TelemetryError;

/// The registry Prometheus scrapes; set once, by the first meter provider.
static REGISTRY: OnceLock<prometheus::Registry> = OnceLock::new();

/// The meter every crate of the suite records with. Instruments made from it
/// before a provider is installed record nothing, so each crate makes its
/// instruments lazily, on first use, after `init`.
pub fn meter() -> Meter {
    opentelemetry::global::meter("crm")
}

/// `service.name` and `service.instance.id`: which process, of which replica, did
/// what. Kubernetes names a pod in `HOSTNAME`; elsewhere a fresh id per process.
pub(crate) fn resource(service_name: &str) -> Resource {
    let instance = std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .map(|host| format!("{host}-{}", std::process::id()))
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("service.instance.id", instance))
        .build()
}

/// Installs the global meter provider: a Prometheus reader always (the scrape
/// endpoint is served only where `CRM_METRICS_ADDR` is set), OTLP when asked.
/// A second call (tests share a process) keeps the first provider.
pub(crate) fn install_meter_provider(
    resource: Resource,
    otlp_endpoint: Option<&str>,
) -> Result<Option<SdkMeterProvider>, TelemetryError> {
    if REGISTRY.get().is_some() {
        return Ok(None);
    }
    let registry = prometheus::Registry::new();
    let prometheus = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        // Every series would repeat the scope name "crm".
        .scope_info_enabled(false)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let mut builder = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(prometheus);
    if let Some(endpoint) = otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.to_owned())
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let mut reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter);
        // Every 15 s, as often as Prometheus would scrape, unless the standard
        // OTEL_METRIC_EXPORT_INTERVAL says otherwise (the reader reads it).
        if std::env::var_os("OTEL_METRIC_EXPORT_INTERVAL").is_none() {
            reader = reader.with_interval(std::time::Duration::from_secs(15));
        }
        builder = builder.with_reader(reader.build());
    }
    let provider = builder.build();
    if REGISTRY.set(registry).is_err() {
        return Ok(None);
    }
    opentelemetry::global::set_meter_provider(provider.clone());
    Ok(Some(provider))
}

/// The current figures in Prometheus' text format (what `/metrics` answers).
pub fn render_prometheus() -> String {
    use prometheus::Encoder as _;
    let Some(registry) = REGISTRY.get() else {
        return String::new();
    };
    let mut text = Vec::new();
    // Encoding into a Vec fails only on a metric family the exporter itself
    // built wrongly; the scrape then shows what was encoded before it.
    if let Err(error) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut text) {
        tracing::warn!(%error, "could not encode metrics");
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Histogram boundaries for latencies in seconds: 1 ms to 30 s. OpenTelemetry's
/// default boundaries are for milliseconds and would put every call in one bucket.
pub const LATENCY_BOUNDARIES_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
