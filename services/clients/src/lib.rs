//! The clients service: the bank's directory (branches, staff, teller↔RM pairs) and
//! the client book. Every change other services depend on leaves through the outbox
//! in the same transaction: `directory.staff_changed`, `directory.pair_changed`,
//! `client.coverage_changed`.

mod client_book;
mod directory;
mod error;

use std::sync::Arc;

use crm_auth::AuthInterceptor;
use crm_bus::outbox::OutboxWaker;
use crm_proto::v1::client_service_server::ClientServiceServer;
use crm_proto::v1::directory_service_server::DirectoryServiceServer;
use crm_store::Db;
use tonic::service::interceptor::InterceptedService;

pub use client_book::ClientBook;
pub use directory::Directory;
pub use error::ClientsError;

/// The outbox source and consumer name of this service.
pub const SERVICE: &str = "clients";

#[derive(Clone)]
pub struct ClientsState {
    pub db: Db,
    pub outbox: OutboxWaker,
    pub tiers: crm_domain::tier::TierThresholds,
}

impl ClientsState {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            outbox: OutboxWaker::default(),
            tiers: Default::default(),
        }
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

/// The clients service as a process mounts it: both gRPC services and the outbox relay.
pub struct Module;

impl crm_runtime::ServiceModule for Module {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn mount(&self, infra: &crm_runtime::Infra, server: &mut crm_runtime::Server) {
        let state = Arc::new(ClientsState::new(infra.db.clone()));
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
    }
}
