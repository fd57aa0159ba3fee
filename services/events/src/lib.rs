//! The events service: core-banking events, alerts and the client timeline.
//!
//! The API is mounted so clients can discover it; the RPCs answer UNIMPLEMENTED
//! until the events issue builds them.

use crm_grpc::RpcError;
use crm_proto::v1::{
    self as pb,
    event_service_server::{EventService, EventServiceServer},
};
use tonic::{Request, Response, Status};

pub mod store;

pub const SERVICE: &str = "events";

pub struct Events;

#[tonic::async_trait]
impl EventService for Events {
    async fn ingest_events(
        &self,
        _request: Request<pb::IngestEventsRequest>,
    ) -> Result<Response<pb::IngestEventsResponse>, Status> {
        Err(RpcError::Unimplemented("IngestEvents arrives with the events issue").into())
    }

    async fn notify_large_outflow(
        &self,
        _request: Request<pb::NotifyLargeOutflowRequest>,
    ) -> Result<Response<pb::NotifyLargeOutflowResponse>, Status> {
        Err(RpcError::Unimplemented("NotifyLargeOutflow arrives with the events issue").into())
    }

    async fn get_client_timeline(
        &self,
        _request: Request<pb::GetClientTimelineRequest>,
    ) -> Result<Response<pb::GetClientTimelineResponse>, Status> {
        Err(RpcError::Unimplemented("GetClientTimeline arrives with the events issue").into())
    }
}

/// The events service as a process mounts it.
pub struct Module;

impl crm_runtime::ServiceModule for Module {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn migrations(&self) -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
        store::migrations()
    }

    fn mount(
        &self,
        infra: &crm_runtime::Infra,
        server: &mut crm_runtime::Server,
    ) -> Result<(), crm_runtime::ModuleError> {
        server.add_service(
            "crm.v1.EventService",
            EventServiceServer::with_interceptor(Events, infra.auth.clone()),
        );
        // What the service writes to its outbox (audit lines of its reads of
        // client data, its events) leaves through its own relay.
        let relay = crm_bus::outbox::Relay::new(
            infra.db.clone(),
            infra.bus.clone(),
            SERVICE,
            crm_bus::outbox::OutboxWaker::default(),
        );
        infra.tasks.spawn(relay.run(infra.shutdown.clone()));
        Ok(())
    }
}
