//! The suite a scenario measures: the services in this process, on a schema and a
//! queue prefix of the run's own over the real PostgreSQL and RabbitMQ, removed
//! when the scenario is done.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::referrals::Servers;

pub(crate) struct BenchApp {
    pub addr: SocketAddr,
    pub db: crm_store::Db,
    /// The run's queue-name prefix (`<schema>.`).
    pub prefix: String,
    pub sections: crm_runtime::ModuleSettings,
    schema: String,
    database_url: String,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), crm_runtime::AppError>>,
}

impl BenchApp {
    /// Starts `services` (every service when empty) on a fresh schema named
    /// `<name>_<random>`.
    pub async fn start(servers: &Servers, name: &str, services: &[&str]) -> anyhow::Result<Self> {
        let schema = format!("{name}_{:x}", rand::random::<u64>());
        let prefix = format!("{schema}.");
        let mut settings = crm_runtime::Settings::for_local_app(
            servers.database_url.clone(),
            Some(schema.clone()),
            Some(servers.amqp_url.clone()),
            prefix.clone(),
            crate::referrals::JWT_SECRET.to_owned(),
        )?;
        settings.services = services
            .iter()
            .map(|service| (*service).to_owned())
            .collect();
        let shutdown = CancellationToken::new();
        let sections = crm_runtime::ModuleSettings::defaults(crm::MODULES)?;
        let app = crm_runtime::App::build(&settings, &sections, crm::MODULES, shutdown.clone())
            .await
            .context("the app on PostgreSQL and RabbitMQ (are they running? `make services`)")?;
        let addr = app.local_addr()?;
        let db = app.infra().db.clone();
        let server = tokio::spawn(app.run());
        Ok(BenchApp {
            addr,
            db,
            prefix,
            sections,
            schema,
            database_url: servers.database_url.clone(),
            shutdown,
            server,
        })
    }

    /// A channel to the services.
    pub async fn channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        Ok(
            tonic::transport::Channel::from_shared(format!("http://{}", self.addr))?
                .connect()
                .await?,
        )
    }

    /// Stops the services and drops the run's schema.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.server).await;
        crm_store::db::drop_schema(&self.database_url, &self.schema).await?;
        Ok(())
    }
}
