//! W3C `traceparent` in and out of gRPC metadata and message headers.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";

/// The current span's context as a `traceparent` value, if it has one.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// `span`'s context as a `traceparent` value, if it has one: what a message
/// published under that span carries, so its consumer continues the trace there.
pub fn traceparent_of(span: &Span) -> Option<String> {
    let context = span.context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the remote span described by `traceparent`.
pub fn set_parent_from_traceparent(span: &Span, traceparent: &str) {
    let mut carrier: HashMap<String, String> = HashMap::new();
    carrier.insert(TRACEPARENT.to_owned(), traceparent.to_owned());
    let context = TraceContextPropagator::new().extract(&carrier);
    // A span already closed or without an OTel layer can't take a parent: the
    // trace then starts here, which is the best we can do.
    let _ = span.set_parent(context);
}

/// Adds the current trace context to an outgoing gRPC request.
pub fn inject_traceparent<T>(request: &mut tonic::Request<T>) {
    if let Some(value) = current_traceparent()
        && let Ok(value) = value.parse()
    {
        request.metadata_mut().insert(TRACEPARENT, value);
    }
}

/// The span of one incoming RPC, named as OpenTelemetry's RPC conventions say
/// (`crm.v1.ReferralService/CreateReferral`, with `rpc.system`, `rpc.service`,
/// `rpc.method`; `rpc.grpc.status_code` recorded when the call ends), continuing
/// the caller's trace when it sent one. `service` and `method` are `_OTHER` for a
/// path that is no method of the suite, so names stay few.
pub fn rpc_server_span(service: &str, method: &str, headers: &http::HeaderMap) -> Span {
    let span = tracing::info_span!(
        "grpc",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    if let Some(traceparent) = headers
        .get(TRACEPARENT)
        .and_then(|value| value.to_str().ok())
    {
        set_parent_from_traceparent(&span, traceparent);
    }
    span
}

/// Records how an RPC ended on its span: the gRPC code, and an error status for
/// the codes OpenTelemetry counts as the server's fault (UNKNOWN, DEADLINE_EXCEEDED,
/// UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS); a refused request is the
/// caller's.
pub fn record_rpc_status(span: &Span, code: i64) {
    span.record("rpc.grpc.status_code", code);
    if matches!(code, 2 | 4 | 12 | 13 | 14 | 15) {
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_survives_a_round_trip_through_a_span() {
        crate::init_for_tests();
        let remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = tracing::info_span!("consumer");
        set_parent_from_traceparent(&span, remote);
        let _entered = span.enter();
        let propagated = current_traceparent().unwrap_or_default();
        assert!(
            propagated.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "trace id lost: {propagated}"
        );
    }
}
