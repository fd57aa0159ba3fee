//! One process of the suite: settings → database → bus → the services asked for →
//! a gRPC server, and one shutdown token that drains it all.

use std::net::SocketAddr;
use std::sync::Arc;

use crm_auth::AuthInterceptor;
use crm_bus::Bus;
use crm_domain::sla::BusinessCalendar;
use crm_store::{Db, Vault};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::module::{self, ModuleError, ModuleSettings, ServiceModule};
use crate::{Server, ServerError, Settings, SettingsError};

/// What every service module gets to build itself with.
#[derive(Clone)]
pub struct Infra {
    pub db: Db,
    pub bus: Bus,
    pub auth: AuthInterceptor,
    pub shutdown: CancellationToken,
    /// Background work (relays, consumers) the process waits for on shutdown.
    pub tasks: TaskTracker,
    /// Seals personal data at rest and signs page tokens.
    pub vault: Arc<Vault>,
    /// Business hours and bank holidays, before each branch's time zone.
    pub calendar: BusinessCalendar,
    /// Every module's settings section; each module reads its own.
    pub settings: ModuleSettings,
    /// Where `/metrics` is served, when `CRM_METRICS_ADDR` asked for it.
    pub metrics_addr: Option<SocketAddr>,
    /// How a service calls another over gRPC: TLS (mutual when the servers ask
    /// for client certificates) when this process serves TLS.
    pub grpc_client_tls: Option<tonic::transport::ClientTlsConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("database: {0}")]
    Store(#[from] crm_store::StoreError),
    #[error("migration failed: {0}")]
    Migrate(#[from] sea_orm::DbErr),
    #[error("message bus: {0}")]
    Bus(#[from] crm_bus::BusError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("service {service}: {source}")]
    Module {
        service: &'static str,
        source: ModuleError,
    },
}

pub struct App {
    server: Server,
    infra: Infra,
    /// The services mounted: their outbox backlogs are reported, 0 included.
    services: Vec<&'static str>,
    /// The health checks' own connection (`crm_store::db::probe`).
    health_probe: Db,
}

impl App {
    /// Opens everything and binds the listener; nothing is served until [`App::run`].
    ///
    /// `suite` is every module of the suite (the bus declares all their queues);
    /// the process mounts, and migrates the tables of, those `settings.services`
    /// names (all when unset).
    pub async fn build(
        settings: &Settings,
        sections: &ModuleSettings,
        suite: &[&dyn ServiceModule],
        shutdown: CancellationToken,
    ) -> Result<App, AppError> {
        crate::install_crypto_provider();
        let mounted = module::select(suite, &settings.services)?;
        // The in-process transport lives in one process: a process with only some
        // of the services would never hear from the others, nor they from it.
        if settings.amqp_url.is_none() && mounted.len() < suite.len() {
            return Err(SettingsError::InProcessBusNeedsEveryService {
                mounted: mounted.iter().map(|module| module.name()).collect(),
            }
            .into());
        }
        for module in &mounted {
            module
                .check_settings(sections)
                .map_err(|source| AppError::Module {
                    service: module.name(),
                    source: source.into(),
                })?;
        }
        let keys = settings.jwt_keys()?;
        let vault = settings.vault()?;
        let database_url = settings.database_url()?;
        let mut server = Server::bind(settings.listen_addr, settings.server_tls()?).await?;
        let metrics_addr = match settings.metrics_addr {
            Some(addr) => Some(crate::metrics_endpoint::serve(addr, shutdown.clone()).await?),
            None => None,
        };
        let starting = server.serve_health_while_starting()?;
        let db = crm_store::connect(&database_url, settings.database_schema.as_deref()).await?;
        let health_probe =
            crm_store::db::probe(&database_url, settings.database_schema.as_deref(), &db).await?;
        module::migrate(&db, &mounted).await?;
        let bus = Bus::start(&settings.bus_config(suite)?, shutdown.clone()).await?;
        let infra = Infra {
            db,
            bus,
            auth: AuthInterceptor::new(keys),
            shutdown,
            tasks: TaskTracker::new(),
            vault,
            calendar: settings.business_calendar(),
            settings: sections.clone(),
            metrics_addr,
            grpc_client_tls: settings.client_tls()?,
        };
        for module in &mounted {
            module
                .mount(&infra, &mut server)
                .map_err(|source| AppError::Module {
                    service: module.name(),
                    source,
                })?;
            tracing::info!(service = module.name(), "mounted");
        }
        // One process holds the whole suite on the embedded default: it is also
        // the scheduler. With RabbitMQ the platform's CronJobs run the jobs.
        if settings.run_schedules && matches!(infra.bus, Bus::InProcess(_)) {
            crate::job_runs::Scheduler {
                db: infra.db.clone(),
                settings: infra.settings.clone(),
                calendar: infra.calendar.clone(),
                vault: infra.vault.clone(),
                jobs: mounted.iter().flat_map(|module| module.jobs()).collect(),
            }
            .spawn(&infra.tasks, infra.shutdown.clone());
        }
        starting.finish().await;
        let services = mounted.iter().map(|module| module.name()).collect();
        Ok(App {
            server,
            infra,
            services,
            health_probe,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.server.local_addr()
    }

    pub fn infra(&self) -> &Infra {
        &self.infra
    }

    /// Serves until the shutdown token fires, then waits for relays and consumers
    /// to drain.
    pub async fn run(self) -> Result<(), AppError> {
        let App {
            server,
            infra,
            services,
            health_probe,
        } = self;
        // Ready follows the database alone: without the broker the outbox still
        // takes every write, so a replica stays in rotation, degraded (a gauge
        // and a log line say so).
        let vitals = Arc::new(crate::vitals::Vitals::new(
            infra.db.clone(),
            health_probe,
            infra.bus.clone(),
            &services,
        ));
        let ready = move || {
            let vitals = vitals.clone();
            let check: futures::future::BoxFuture<'static, bool> =
                Box::pin(async move { vitals.check().await });
            check
        };
        let served = server.serve(infra.shutdown.clone(), ready).await;
        // However the server ended, stop the background work too.
        infra.shutdown.cancel();
        infra.tasks.close();
        infra.tasks.wait().await;
        let _ = infra.db.clone().close().await;
        served.map_err(AppError::from)
    }
}

/// The whole life of a service process: telemetry, signals, build, serve, drain,
/// flush: `crm serve`, mounting the services its settings name.
pub async fn run_process(
    process_name: &str,
    settings: &Settings,
    sections: &ModuleSettings,
    suite: &[&dyn ServiceModule],
) -> Result<(), ProcessError> {
    // `service.name` says which services the process holds: `crm-referrals`, or
    // `crm` for the whole suite in one process.
    let service_name = if settings.services.is_empty() {
        process_name.to_owned()
    } else {
        format!("{process_name}-{}", settings.services.join("-"))
    };
    let telemetry = crm_telemetry::init(&crm_telemetry::TelemetryConfig::from_env(&service_name))?;
    let shutdown = CancellationToken::new();
    crate::shutdown_on_signals(shutdown.clone());
    let result = async {
        let app = App::build(settings, sections, suite, shutdown).await?;
        let addr = app
            .local_addr()
            .map_err(|e| AppError::Server(ServerError::Io(e)))?;
        tracing::info!(%addr, process = process_name, "listening");
        app.run().await
    }
    .await;
    if let Err(error) = &result {
        tracing::error!(%error, "process failed");
    }
    telemetry.shutdown();
    Ok(result?)
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Telemetry(#[from] crm_telemetry::TelemetryError),
    #[error(transparent)]
    App(#[from] AppError),
}
