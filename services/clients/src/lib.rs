//! The clients service: the bank's directory (branches, staff, teller↔RM pairs) and
//! the client book. Every change other services depend on leaves through the outbox
//! in the same transaction: `directory.branch_changed`, `directory.staff_changed`,
//! `directory.pair_changed`,
//! `client.coverage_changed`, `client.tier_changed`, `client.interaction_logged`,
//! `client.profiles_changed`.
//! It stores the suite's one audit trail, other services' lines included
//! (`audit.recorded`).

mod access;
mod audit_batch;
mod audit_trail;
mod audit_writer;
mod balance_feed;
mod client_book;
mod client_profile;
mod client_wire;
mod directory;
mod directory_events;
mod error;
mod interactions;
mod payroll_feed;
mod reseal;
mod search;
mod settings;
pub mod store;
mod tiering;

use std::sync::Arc;

use crm_auth::AuthInterceptor;
use crm_bus::outbox::OutboxWaker;
use crm_domain::tier::TierPolicy;
use crm_proto::v1::client_service_server::ClientServiceServer;
use crm_proto::v1::directory_service_server::DirectoryServiceServer;
use crm_store::{Db, Vault};
use tonic::service::interceptor::InterceptedService;

pub use client_book::ClientBook;
pub use client_profile::republish_clients;
pub use directory::Directory;
pub use directory_events::{Republished, republish_directory};
pub use error::ClientsError;
pub use settings::ClientsSettings;

/// The outbox source and consumer name of this service.
pub const SERVICE: &str = "clients";

#[derive(Clone)]
pub struct ClientsState {
    pub db: Db,
    pub outbox: OutboxWaker,
    pub vault: Arc<Vault>,
    pub tiers: TierPolicy,
    /// Group commit for the lines of reads (GetClient, SearchClients).
    pub(crate) audit: audit_batch::AuditBatcher,
}

impl ClientsState {
    /// Starts the audit writer: call on the runtime that serves the RPCs.
    pub fn new(infra: &crm_runtime::Infra) -> Result<Self, crm_runtime::SettingsError> {
        let settings: ClientsSettings = infra.settings.section()?;
        Ok(Self {
            db: infra.db.clone(),
            outbox: OutboxWaker::default(),
            vault: infra.vault.clone(),
            audit: audit_batch::AuditBatcher::start(infra.db.clone()),
            tiers: settings
                .tier_policy()
                .map_err(crm_runtime::SettingsError::Section)?,
        })
    }
}

pub fn directory_service(
    state: Arc<ClientsState>,
    auth: AuthInterceptor,
) -> InterceptedService<DirectoryServiceServer<Directory>, AuthInterceptor> {
    DirectoryServiceServer::with_interceptor(Directory::new(state), auth)
}

pub fn client_service(
    state: Arc<ClientsState>,
    auth: AuthInterceptor,
) -> InterceptedService<ClientServiceServer<ClientBook>, AuthInterceptor> {
    ClientServiceServer::with_interceptor(ClientBook::new(state), auth)
}

/// What the client book takes from the bus: audit lines, and daily averages.
struct Inbound {
    tiers: crm_domain::tier::TierPolicy,
    /// Woken after a message wrote outbox rows (a tier change announced).
    outbox: crm_bus::outbox::OutboxWaker,
}

#[async_trait::async_trait]
impl crm_bus::MessageHandler for Inbound {
    async fn handle(
        &self,
        transaction: &sea_orm::DatabaseTransaction,
        envelope: &crm_bus::Envelope,
    ) -> Result<(), crm_bus::HandlerError> {
        match envelope.message_type.as_str() {
            crm_domain::messages::BALANCE_AVERAGE_CHANGED => {
                balance_feed::apply(transaction, &self.tiers, envelope.decode()?).await
            }
            crm_domain::messages::PAYROLL_DETECTED => {
                payroll_feed::apply(transaction, &self.tiers, envelope.decode()?).await
            }
            _ => audit_writer::AuditLines.handle(transaction, envelope).await,
        }
    }

    fn committed(&self) {
        self.outbox.wake();
    }
}

/// The clients service as a process mounts it: both gRPC services and the outbox
/// relay. It consumes no events.
pub struct Module;

impl crm_runtime::ServiceModule for Module {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn migrations(&self) -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
        store::migrations()
    }

    fn consumes(&self) -> &'static [&'static str] {
        // Other services' lines of the one audit trail, and the balance feed's
        // daily averages, which the tier follows.
        &[
            crm_domain::messages::AUDIT_RECORDED,
            crm_domain::messages::BALANCE_AVERAGE_CHANGED,
            crm_domain::messages::PAYROLL_DETECTED,
        ]
    }

    fn settings(&self, command: clap::Command) -> clap::Command {
        <ClientsSettings as clap::Args>::augment_args(command)
    }

    fn check_settings(
        &self,
        settings: &crm_runtime::ModuleSettings,
    ) -> Result<(), crm_runtime::SettingsError> {
        settings.section::<ClientsSettings>().map(drop)
    }

    fn mount(
        &self,
        infra: &crm_runtime::Infra,
        server: &mut crm_runtime::Server,
    ) -> Result<(), crm_runtime::ModuleError> {
        let state = Arc::new(ClientsState::new(infra)?);
        server.add_service(
            "crm.v1.DirectoryService",
            directory_service(state.clone(), infra.auth.clone()),
        );
        server.add_service(
            "crm.v1.ClientService",
            client_service(state.clone(), infra.auth.clone()),
        );
        let relay = crm_bus::outbox::Relay::new(
            infra.db.clone(),
            infra.bus.clone(),
            SERVICE,
            state.outbox.clone(),
        );
        infra.tasks.spawn(relay.run(infra.shutdown.clone()));
        let consumer = crm_bus::run_consumer(
            infra.bus.clone(),
            infra.db.clone(),
            SERVICE,
            Arc::new(Inbound {
                tiers: state.tiers,
                outbox: state.outbox.clone(),
            }),
            // Daily averages and audit lines arrive by the thousand after a feed
            // burst: many per commit, so the tiers keep up with the feed.
            crm_bus::Pace::batched(256, 100),
            infra.shutdown.clone(),
        );
        let shutdown = infra.shutdown.clone();
        infra.tasks.spawn(async move {
            if let Err(error) = consumer.await {
                // Lines from other services would wait in the queue unstored: stop
                // the process so the orchestrator restarts it.
                tracing::error!(%error, "clients consumer failed; shutting down");
                shutdown.cancel();
            }
        });
        Ok(())
    }

    fn jobs(&self) -> Vec<crm_runtime::Job> {
        vec![
            directory_events::REPUBLISH_DIRECTORY_JOB,
            client_profile::REPUBLISH_CLIENTS_JOB,
            reseal::RESEAL_CLIENT_PII_JOB,
        ]
    }
}
