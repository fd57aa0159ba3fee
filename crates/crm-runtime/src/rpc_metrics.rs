//! `rpc.server.call.duration` for every RPC: a histogram (its count is the calls)
//! labelled by service, method and gRPC status code; the same status on the RPC's
//! span, which stays open until the answer's last frame.
//!
//! A unary call that fails answers its status in the response headers; one that
//! succeeds, and every stream, in the trailers at the end of the body. So the call
//! is recorded when its body ends (or is dropped: a client that went away is
//! CANCELLED), not when the handler returns.

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;

static CALL_DURATION: LazyLock<Histogram<f64>> = LazyLock::new(|| {
    crm_telemetry::meter()
        .f64_histogram("rpc.server.call.duration")
        .with_unit("s")
        .with_description("Time from a call's arrival to its last response frame, by status code")
        .with_boundaries(crm_telemetry::LATENCY_BOUNDARIES_SECONDS.to_vec())
        .build()
});

/// gRPC's CANCELLED: the client went away before the answer ended.
const CANCELLED: i64 = 1;

/// The `rpc.service` and `rpc.method` labels of a request path. Anything but a
/// real method of the suite (or health, or reflection) is `_OTHER`, as the
/// conventions say for unknown values, so labels stay few whatever callers send.
pub(crate) fn rpc_labels(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let known = crm_proto::is_crm_method(service, method)
        || service == "grpc.health.v1.Health"
        || service.starts_with("grpc.reflection.");
    if known {
        (service.to_owned(), method.to_owned())
    } else {
        ("_OTHER".to_owned(), "_OTHER".to_owned())
    }
}

#[derive(Clone, Copy, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, RequestBody> tower::Service<http::Request<RequestBody>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let (service, method) = rpc_labels(request.uri().path());
        let started = Instant::now();
        let answered = self.inner.call(request);
        Box::pin(async move {
            let response = answered.await?;
            // Polled inside the RPC's span (the server's `trace_fn`).
            let span = tracing::Span::current();
            let status = grpc_status(response.headers());
            Ok(response.map(|body| {
                tonic::body::Body::new(MeteredBody {
                    inner: body,
                    call: Some(Call {
                        started,
                        service,
                        method,
                        status,
                        span,
                    }),
                })
            }))
        })
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i64> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

struct Call {
    started: Instant,
    service: String,
    method: String,
    /// From the headers (a trailers-only answer) or, later, the trailers.
    status: Option<i64>,
    /// The RPC's span, ended when this is dropped.
    span: tracing::Span,
}

impl Call {
    fn record(self) {
        let status = self.status.unwrap_or(CANCELLED);
        crm_telemetry::record_rpc_status(&self.span, status);
        CALL_DURATION.record(
            self.started.elapsed().as_secs_f64(),
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", self.service),
                KeyValue::new("rpc.method", self.method),
                KeyValue::new("rpc.grpc.status_code", status),
            ],
        );
    }
}

/// The response body, recording its call once when it ends.
struct MeteredBody {
    inner: tonic::body::Body,
    /// Taken when recorded.
    call: Option<Call>,
}

impl http_body::Body for MeteredBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(grpc_status)
                    && let Some(call) = self.call.as_mut()
                {
                    call.status = Some(status);
                }
            }
            Poll::Ready(None) => {
                if let Some(call) = self.call.take() {
                    call.record();
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // The body was dropped before it ended: the client went away (status
        // unknown, so CANCELLED), or hyper stopped polling a finished answer.
        if let Some(call) = self.call.take() {
            call.record();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rpc_labels;

    #[test]
    fn only_known_methods_become_labels() {
        let cases = [
            (
                "/crm.v1.ReferralService/CreateReferral",
                ("crm.v1.ReferralService", "CreateReferral"),
            ),
            (
                "/grpc.health.v1.Health/Check",
                ("grpc.health.v1.Health", "Check"),
            ),
            ("/crm.v1.ReferralService/Invented", ("_OTHER", "_OTHER")),
            ("/anything/else", ("_OTHER", "_OTHER")),
            ("", ("_OTHER", "_OTHER")),
        ];
        for (path, (service, method)) in cases {
            assert_eq!(
                rpc_labels(path),
                (service.to_owned(), method.to_owned()),
                "{path}"
            );
        }
    }
}
