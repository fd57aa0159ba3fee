//! The campaigns service: campaigns and the scheduler jobs.
//!
//! The API is mounted so clients can discover it; the RPCs answer UNIMPLEMENTED
//! until the campaigns issue builds them.

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
        Err(Status::unimplemented(
            "CreateCampaign arrives with the campaigns issue",
        ))
    }

    async fn preview_audience(
        &self,
        _request: Request<pb::PreviewAudienceRequest>,
    ) -> Result<Response<pb::PreviewAudienceResponse>, Status> {
        Err(Status::unimplemented(
            "PreviewAudience arrives with the campaigns issue",
        ))
    }

    async fn launch_campaign(
        &self,
        _request: Request<pb::LaunchCampaignRequest>,
    ) -> Result<Response<pb::LaunchCampaignResponse>, Status> {
        Err(Status::unimplemented(
            "LaunchCampaign arrives with the campaigns issue",
        ))
    }

    async fn get_campaign_progress(
        &self,
        _request: Request<pb::GetCampaignProgressRequest>,
    ) -> Result<Response<pb::GetCampaignProgressResponse>, Status> {
        Err(Status::unimplemented(
            "GetCampaignProgress arrives with the campaigns issue",
        ))
    }

    async fn list_campaigns(
        &self,
        _request: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsResponse>, Status> {
        Err(Status::unimplemented(
            "ListCampaigns arrives with the campaigns issue",
        ))
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
        Ok(())
    }
}
