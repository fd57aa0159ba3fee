use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::Stream;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;

use crate::rpc_metrics::RpcMetricsLayer;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("could not bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection service: {0}")]
    Reflection(String),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("listener: {0}")]
    Io(std::io::Error),
}

/// How long a graceful shutdown waits for open connections (a stream whose client
/// stopped reading never ends by itself); well inside Kubernetes' default 30 s.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How often health asks whether the database is there (and the gauges read).
const READINESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// A gRPC server bound to its port (0 picks a free one: tests read it back).
pub struct Server {
    /// Shared: health answers on it while the process starts, then everything.
    listener: Arc<TcpListener>,
    routes: RoutesBuilder,
    /// Health and reflection alone, for while the process starts.
    startup_routes: RoutesBuilder,
    health: tonic_health::server::HealthReporter,
    service_names: Vec<&'static str>,
    /// TLS (mutual when it names client CAs) for both servers on the port.
    tls: Option<tonic::transport::ServerTlsConfig>,
}

/// Health answering NOT_SERVING while the process starts (migrations, the
/// broker's topology, the modules): a probe gets an answer, not a refused
/// connection, and no call reaches a service before its tables exist. Ended by
/// [`StartingUp::finish`], or when dropped (a start that failed).
pub struct StartingUp {
    stop: Option<DropGuard>,
    served: tokio::task::JoinHandle<()>,
}

impl StartingUp {
    /// Stops the startup server; connections arriving meanwhile wait in the
    /// listen queue for the full server.
    pub async fn finish(mut self) {
        drop(self.stop.take());
        // A probe that holds its connection open can't hold the start up.
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.served)
            .await
            .is_err()
        {
            self.served.abort();
        }
    }
}

/// Accepted connections of a shared listener, with TCP_NODELAY: without it a
/// response spanning several segments waits for the peer's delayed ACK (a page of
/// 50 clients took 40 ms longer than its work).
fn incoming(listener: Arc<TcpListener>) -> impl Stream<Item = std::io::Result<TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        if let Ok(stream) = &accepted
            && let Err(error) = stream.set_nodelay(true)
        {
            tracing::warn!(%error, "could not set TCP_NODELAY");
        }
        Some((accepted, listener))
    })
}

impl Server {
    /// Binds now, with health and reflection (v1 and v1alpha) already mounted;
    /// health says NOT_SERVING until [`Server::serve`]. With `tls`, every
    /// connection is TLS.
    pub async fn bind(
        addr: SocketAddr,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> Result<Server, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crm_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| ServerError::Reflection(e.to_string()))?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crm_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| ServerError::Reflection(e.to_string()))?;
        let mut routes = RoutesBuilder::default();
        routes
            .add_service(health_service.clone())
            .add_service(reflection_v1.clone())
            .add_service(reflection_v1alpha.clone());
        let mut startup_routes = RoutesBuilder::default();
        startup_routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        Ok(Server {
            listener: Arc::new(listener),
            routes,
            startup_routes,
            health,
            service_names: Vec::new(),
            tls,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves health (NOT_SERVING) and reflection on the port until the returned
    /// handle is finished or dropped; any other call is answered UNAVAILABLE, which
    /// clients retry (UNIMPLEMENTED would tell a teller app the call can never
    /// work).
    pub fn serve_health_while_starting(&self) -> Result<StartingUp, ServerError> {
        let stop = CancellationToken::new();
        let serving = self
            .builder()?
            .add_routes(tonic::service::Routes::from(
                self.startup_routes
                    .clone()
                    .routes()
                    .into_axum_router()
                    .fallback(still_starting),
            ))
            .serve_with_incoming_shutdown(
                incoming(self.listener.clone()),
                stop.clone().cancelled_owned(),
            );
        let served = tokio::spawn(async move {
            if let Err(error) = serving.await {
                tracing::warn!(%error, "startup health server failed");
            }
        });
        Ok(StartingUp {
            stop: Some(stop.drop_guard()),
            served,
        })
    }

    /// A tonic server, over TLS when the process has a certificate.
    fn builder(&self) -> Result<tonic::transport::Server, ServerError> {
        let builder = tonic::transport::Server::builder();
        Ok(match &self.tls {
            Some(tls) => builder.tls_config(tls.clone())?,
            None => builder,
        })
    }

    /// Mounts a service; `name` is its full gRPC name, reported by health.
    pub fn add_service<S>(&mut self, name: &'static str, service: S) -> &mut Self
    where
        S: tower_service::Service<
                http::Request<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.routes.add_service(service);
        self.service_names.push(name);
        self
    }

    /// Serves until `shutdown`, then stops accepting and lets calls in flight finish.
    /// Health follows `ready`, asked every few seconds: a load balancer stops
    /// sending calls while it says no (the database is away), and sends them again
    /// once it says yes.
    pub async fn serve(
        self,
        shutdown: CancellationToken,
        ready: impl Fn() -> futures::future::BoxFuture<'static, bool> + Send + 'static,
    ) -> Result<(), ServerError> {
        for name in &self.service_names {
            self.health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        self.health
            .set_service_status("", ServingStatus::Serving)
            .await;
        let watcher = self.health.clone();
        let watched = self.service_names.clone();
        let watching = shutdown.clone();
        tokio::spawn(async move {
            let mut serving = true;
            loop {
                tokio::select! {
                    _ = watching.cancelled() => return,
                    _ = tokio::time::sleep(READINESS_EVERY) => {}
                }
                let now_serving = ready().await;
                if now_serving == serving || watching.is_cancelled() {
                    continue;
                }
                serving = now_serving;
                let status = if serving {
                    tracing::info!("dependencies back: serving");
                    ServingStatus::Serving
                } else {
                    tracing::warn!("a dependency is away: not serving");
                    ServingStatus::NotServing
                };
                for name in watched.iter().copied().chain([""]) {
                    watcher.set_service_status(name, status).await;
                }
            }
        });
        let health = self.health.clone();
        let names = self.service_names.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            // Tell load balancers first, so no new calls arrive while draining.
            for name in names {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
        });
        let connections = incoming(self.listener.clone());
        let serving = self
            .builder()?
            // Outermost, so it sees the status the client will.
            .layer(RpcMetricsLayer)
            .layer(tower::util::MapResponseLayer::new(
                too_large_is_resource_exhausted::<tonic::body::Body>,
            ))
            .trace_fn(|request| {
                let (service, method) = crate::rpc_metrics::rpc_labels(request.uri().path());
                crm_telemetry::rpc_server_span(&service, &method, request.headers())
            })
            // A phone that vanished (tunnel, flight mode) leaves no FIN: pings find
            // the dead connection and end its stream, freeing its place.
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
            .add_routes(self.routes.routes())
            .serve_with_incoming_shutdown(connections, shutdown.clone().cancelled_owned());
        // Graceful shutdown waits for every open stream to end. Streams are told
        // to reconnect elsewhere at once, but a client that stopped reading can't
        // even take its stream's last frame: past the grace period the server
        // stops waiting for it, and the process exits (its connections with it).
        let grace_over = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            served = serving => served?,
            () = grace_over => tracing::warn!(
                grace_seconds = SHUTDOWN_GRACE.as_secs(),
                "connections still open after the shutdown grace period; closing them"
            ),
        }
        Ok(())
    }
}

/// tonic refuses a request over its decoding limit (4 MiB) with OUT_OF_RANGE; gRPC
/// says RESOURCE_EXHAUSTED, as every other implementation answers and as clients'
/// retry policies expect. Only the decoder's answer (a trailers-only response,
/// before any handler ran, with tonic's own message) is changed.
fn too_large_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers();
    let too_large = headers
        .get("grpc-status")
        .is_some_and(|status| status == "11")
        && headers.get("grpc-message").is_some_and(|message| {
            message
                .as_bytes()
                .starts_with(b"Error,%20decoded%20message%20length%20too%20large")
        });
    if too_large {
        response
            .headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}

/// Cancels `shutdown` on SIGTERM or ctrl-c.
pub fn shutdown_on_signals(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("ctrl-c: shutting down"),
            _ = terminate => tracing::info!("SIGTERM: shutting down"),
        }
        shutdown.cancel();
    });
}

/// The answer to a service's call while the process is still starting.
async fn still_starting() -> http::Response<tonic::body::Body> {
    tonic::Status::unavailable("starting: the database is being migrated; try again shortly")
        .into_http()
}
