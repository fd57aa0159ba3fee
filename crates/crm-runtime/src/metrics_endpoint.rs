//! `GET /metrics` on `CRM_METRICS_ADDR`: the Prometheus scrape, on its own port so
//! the gRPC port stays gRPC-only (and the scrape can be left off the public
//! Service).

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ServerError;

/// Binds now and serves until `shutdown`; the bound address (port 0 picks one).
pub(crate) async fn serve(
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> Result<SocketAddr, ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(ServerError::Io)?;
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [(
                    http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                crm_telemetry::render_prometheus(),
            )
        }),
    );
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "metrics endpoint stopped");
        }
    });
    tracing::info!(%bound, "metrics at http://{bound}/metrics");
    Ok(bound)
}
