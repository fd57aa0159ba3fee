//! Tracing for every process of the suite, and the W3C trace context that makes one
//! trace of a teller's RPC, the outbox, RabbitMQ, the consumer and the RM's stream.
//!
//! A tracer provider is always installed so spans carry trace ids and the context
//! propagates even when nothing is exported; OTLP export is added only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

pub mod exposition;
mod metrics;
mod propagation;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use metrics::{LATENCY_BOUNDARIES_SECONDS, meter, render_prometheus};
pub use propagation::{
    current_traceparent, inject_traceparent, record_rpc_status, rpc_server_span,
    set_parent_from_traceparent, traceparent_of,
};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("could not build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// How a process logs.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub service_name: String,
    /// One JSON object per line instead of human-readable text.
    pub json: bool,
    /// `RUST_LOG` when set, else this.
    pub default_filter: String,
    /// From `OTEL_EXPORTER_OTLP_ENDPOINT`; unset means spans are not exported.
    pub otlp_endpoint: Option<String>,
}

impl TelemetryConfig {
    /// `OTEL_SERVICE_NAME`, when set, names the service instead of `service_name`.
    pub fn from_env(service_name: &str) -> Self {
        Self {
            service_name: std::env::var("OTEL_SERVICE_NAME")
                .ok()
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| service_name.to_owned()),
            json: std::env::var("CRM_LOG_JSON").is_ok_and(|v| v == "1" || v == "true"),
            default_filter: "info".to_owned(),
            otlp_endpoint: std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|v| !v.is_empty()),
        }
    }
}

/// Keep it for the life of the process; dropping it flushes pending spans.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    meters: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
}

impl TelemetryGuard {
    pub fn shutdown(self) {
        // Nothing to do about an exporter that can't flush at exit but say so.
        if let Err(error) = self.provider.shutdown() {
            eprintln!("telemetry shutdown: {error}");
        }
        if let Some(meters) = self.meters
            && let Err(error) = meters.shutdown()
        {
            eprintln!("metrics shutdown: {error}");
        }
    }
}

/// The env filter we always apply: sqlx would log statements with their (PII)
/// parameters, and lapin/h2 are noisy at debug.
fn env_filter(default_filter: &str) -> EnvFilter {
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| default_filter.to_owned());
    EnvFilter::new(format!(
        "{base},sqlx=warn,sea_orm=warn,h2=warn,tower=warn,hyper=warn"
    ))
}

fn tracer_provider(
    config: &TelemetryConfig,
    resource: Resource,
) -> Result<SdkTracerProvider, TelemetryError> {
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &config.otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// Installs the global subscriber and propagator. Call once, early in `main`.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = metrics::resource(&config.service_name);
    let provider = tracer_provider(config, resource.clone())?;
    let meters = metrics::install_meter_provider(resource, config.otlp_endpoint.as_deref())?;
    let tracer = provider.tracer("crm");
    opentelemetry::global::set_tracer_provider(provider.clone());
    // The log filter applies to the log output only: spans must exist for the
    // trace context to propagate, whatever RUST_LOG says.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(LevelFilter::INFO);
    let registry = tracing_subscriber::registry().with(otel);
    let installed = if config.json {
        let logs = tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_filter(env_filter(&config.default_filter));
        registry.with(logs).try_init()
    } else {
        let logs = tracing_subscriber::fmt::layer()
            .compact()
            .with_filter(env_filter(&config.default_filter));
        registry.with(logs).try_init()
    };
    installed.map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider, meters })
}

/// For tests: the same layers into a writer of the caller's choice, installed if no
/// subscriber is yet (tests share a process, so a second call is a no-op).
pub fn init_for_tests() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // Metrics are recorded as in production, so a test can scrape them.
    if let Err(error) = metrics::install_meter_provider(metrics::resource("crm-test"), None) {
        eprintln!("metrics for tests: {error}");
    }
    let provider = SdkTracerProvider::builder().build();
    let tracer = provider.tracer("crm-test");
    // The global handle keeps the provider alive for the life of the test process.
    opentelemetry::global::set_tracer_provider(provider);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(LevelFilter::INFO);
    let logs = tracing_subscriber::fmt::layer()
        .with_test_writer()
        .compact()
        .with_filter(env_filter("warn"));
    let _ = tracing_subscriber::registry()
        .with(otel)
        .with(logs)
        .try_init();
}
