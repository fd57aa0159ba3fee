//! The campaigns service: campaigns and the scheduler jobs.
//!
//! The API is mounted so clients can discover it; the RPCs answer UNIMPLEMENTED
//! until the campaigns issue builds them.

use crm_grpc::RpcError;
use crm_proto::v1::{
    self as pb,
    campaign_service_server::{CampaignService, CampaignServiceServer},
};
use tonic::{Request, Response, Status};

pub mod store;

pub const SERVICE: &str = "campaigns";

pub struct Campaigns;

#[tonic::async_trait]
impl CampaignService for Campaigns {
    async fn create_campaign(
        &self,
        _request: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::CreateCampaignResponse>, Status> {
        Err(RpcError::Unimplemented("CreateCampaign arrives with the campaigns issue").into())
    }

    async fn preview_audience(
        &self,
        _request: Request<pb::PreviewAudienceRequest>,
    ) -> Result<Response<pb::PreviewAudienceResponse>, Status> {
        Err(RpcError::Unimplemented("PreviewAudience arrives with the campaigns issue").into())
    }

    async fn launch_campaign(
        &self,
        _request: Request<pb::LaunchCampaignRequest>,
    ) -> Result<Response<pb::LaunchCampaignResponse>, Status> {
        Err(RpcError::Unimplemented("LaunchCampaign arrives with the campaigns issue").into())
    }

    async fn get_campaign_progress(
        &self,
        _request: Request<pb::GetCampaignProgressRequest>,
    ) -> Result<Response<pb::GetCampaignProgressResponse>, Status> {
        Err(RpcError::Unimplemented("GetCampaignProgress arrives with the campaigns issue").into())
    }

    async fn list_campaigns(
        &self,
        _request: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsResponse>, Status> {
        Err(RpcError::Unimplemented("ListCampaigns arrives with the campaigns issue").into())
    }
}

/// The campaigns service as a process mounts it.
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
            "crm.v1.CampaignService",
            CampaignServiceServer::with_interceptor(Campaigns, infra.auth.clone()),
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
