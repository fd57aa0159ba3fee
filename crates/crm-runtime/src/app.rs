//! One process of the suite: settings → database → bus → the services asked for →
//! a gRPC server, and one shutdown token that drains it all.

use std::net::SocketAddr;
use std::sync::Arc;

use crm_auth::AuthInterceptor;
use crm_bus::{Bus, BusConfig};
use crm_domain::sla::{BusinessCalendar, SlaPolicy};
use crm_domain::tier::TierPolicy;
use crm_store::migrator::Schema;
use crm_store::{Db, Vault};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    pub tiers: TierPolicy,
    pub referral_sla: SlaPolicy,
    /// Business hours and bank holidays, before each branch's time zone.
    pub calendar: BusinessCalendar,
}

/// A service of the suite, as a process mounts it.
pub trait ServiceModule: Send + Sync {
    fn name(&self) -> &'static str;
    /// Adds the gRPC services to `server` and spawns background work on `infra.tasks`.
    fn mount(&self, infra: &Infra, server: &mut Server);
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
}

pub struct App {
    server: Server,
    infra: Infra,
}

impl App {
    /// Opens everything and binds the listener; nothing is served until [`App::run`].
    pub async fn build(
        settings: &Settings,
        schema: Schema,
        modules: &[&dyn ServiceModule],
        shutdown: CancellationToken,
    ) -> Result<App, AppError> {
        crate::install_crypto_provider();
        let keys = settings.jwt_keys()?;
        let vault = settings.vault()?;
        let tiers = settings.tier_policy()?;
        let referral_sla = settings.referral_sla()?;
        let database_url = settings.database_url()?;
        let db = crm_store::connect(&database_url, settings.database_schema.as_deref()).await?;
        crm_store::migrator::migrate(&db, schema).await?;
        let bus = Bus::start(
            &BusConfig {
                amqp_url: settings.amqp_url.clone(),
                prefix: settings.queue_prefix.clone(),
                ephemeral: settings.ephemeral_queues,
            },
            shutdown.clone(),
        )
        .await?;
        let infra = Infra {
            db,
            bus,
            auth: AuthInterceptor::new(keys),
            shutdown,
            tasks: TaskTracker::new(),
            vault,
            tiers,
            referral_sla,
            calendar: settings.business_calendar(),
        };
        let mut server = Server::bind(settings.listen_addr).await?;
        for module in modules {
            module.mount(&infra, &mut server);
            tracing::info!(service = module.name(), "mounted");
        }
        Ok(App { server, infra })
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
        let App { server, infra } = self;
        let served = server.serve(infra.shutdown.clone()).await;
        // However the server ended, stop the background work too.
        infra.shutdown.cancel();
        infra.tasks.close();
        infra.tasks.wait().await;
        let _ = infra.db.clone().close().await;
        served.map_err(AppError::from)
    }
}

/// The whole life of a service process: telemetry, signals, build, serve, drain,
/// flush. Every binary's `main` is this call with its own name and modules.
pub async fn run_process(
    process_name: &str,
    settings: &Settings,
    schema: Schema,
    modules: &[&dyn ServiceModule],
) -> Result<(), ProcessError> {
    let telemetry = crm_telemetry::init(&crm_telemetry::TelemetryConfig::from_env(process_name))?;
    let shutdown = CancellationToken::new();
    crate::shutdown_on_signals(shutdown.clone());
    let result = async {
        let app = App::build(settings, schema, modules, shutdown).await?;
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
