//! The campaigns service: campaigns and their tasks, the league tables, and the
//! scheduler jobs.
//!
//! Audiences are chosen from this service's own projection of the client book
//! (projection.rs, from `client.profiles_changed`; `crm jobs republish-clients`
//! rebuilds it); a launch freezes the audience into tasks keyed (campaign,
//! client) and asks the RM work queue for them in batches (launch.rs); the
//! queue's messages keep each task's RM and outcome, which progress
//! (progress.rs) and the league tables (league.rs) count.

use std::sync::Arc;

use crm_auth::principal_of;
use crm_domain::{Role, Violations};
use crm_proto::v1::{
    self as pb,
    campaign_service_server::{CampaignService, CampaignServiceServer},
    report_service_server::{ReportService, ReportServiceServer},
};
use crm_store::Db;
use tonic::{Request, Response, Status};

mod audience;
mod campaigns;
mod error;
mod jobs;
mod launch;
mod league;
mod progress;
mod projection;
mod requested;
mod settings;
pub mod store;

pub use error::CampaignsError;
pub use settings::CampaignsSettings;

pub const SERVICE: &str = "campaigns";

/// Everyone who may read campaigns (progress is scoped further).
const READERS: &[Role] = &[
    Role::CampaignAdmin,
    Role::System,
    Role::BranchManager,
    Role::Rm,
];

pub struct Campaigns {
    db: Db,
    vault: Arc<crm_store::Vault>,
    rules: campaigns::LaunchRules,
    /// Wakes the relay after a commit that asked the queue for tasks.
    outbox: crm_bus::outbox::OutboxWaker,
}

impl Campaigns {
    async fn create(
        &self,
        request: Request<pb::CreateCampaignRequest>,
    ) -> error::Result<pb::CreateCampaignResponse> {
        let principal = principal_of(&request)?;
        principal.require_any(campaigns::ADMINS, "create campaigns")?;
        let new = campaigns::NewCampaign::parse(request.get_ref())?;
        let stored = campaigns::create(
            &self.db,
            new,
            principal.staff_id.as_str(),
            chrono::Utc::now(),
        )
        .await?;
        Ok(pb::CreateCampaignResponse {
            campaign: Some(campaigns::to_proto(&stored)?),
        })
    }

    async fn preview(
        &self,
        request: Request<pb::PreviewAudienceRequest>,
    ) -> error::Result<pb::PreviewAudienceResponse> {
        let principal = principal_of(&request)?;
        principal.require_any(campaigns::ADMINS, "preview audiences")?;
        let mut violations = Violations::new();
        let audience = match &request.get_ref().audience {
            Some(audience) => audience::Audience::parse(&mut violations, "audience", audience),
            None => {
                violations.add("audience", "is required");
                audience::Audience::default()
            }
        };
        let audience = violations.finish(|| Some(audience))?;
        launch::preview(&self.db, &audience, self.rules.upgrade_percent).await
    }

    async fn launch(
        &self,
        request: Request<pb::LaunchCampaignRequest>,
    ) -> error::Result<pb::LaunchCampaignResponse> {
        let principal = principal_of(&request)?;
        principal.require_any(campaigns::ADMINS, "launch campaigns")?;
        let input = request.into_inner();
        let campaign_id = campaign_id(&input.campaign_id)?;
        let response = campaigns::launch_by(
            &self.db,
            &principal,
            &campaign_id,
            input.dry_run,
            self.rules,
            chrono::Utc::now(),
        )
        .await?;
        self.outbox.wake();
        Ok(response)
    }

    async fn approve(
        &self,
        request: Request<pb::ApproveCampaignLaunchRequest>,
    ) -> error::Result<pb::ApproveCampaignLaunchResponse> {
        let principal = principal_of(&request)?;
        principal.require_any(&[Role::CampaignAdmin], "approve campaign launches")?;
        let campaign_id = campaign_id(&request.get_ref().campaign_id)?;
        let launch = campaigns::approve(
            &self.db,
            &principal,
            &campaign_id,
            self.rules,
            chrono::Utc::now(),
        )
        .await?;
        self.outbox.wake();
        Ok(pb::ApproveCampaignLaunchResponse {
            launch: Some(launch),
        })
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelCampaignRequest>,
    ) -> error::Result<pb::CancelCampaignResponse> {
        let principal = principal_of(&request)?;
        principal.require_any(campaigns::ADMINS, "cancel campaigns")?;
        let input = request.into_inner();
        let mut violations = Violations::new();
        let campaign_id = violations.check("campaign_id", parse_campaign_id(&input.campaign_id));
        crm_domain::validation::check_text(&mut violations, "reason", &input.reason, true, 200);
        let campaign_id = violations.finish(|| campaign_id)?;
        let (campaign, closed) = campaigns::cancel(
            &self.db,
            &campaign_id,
            input.reason.trim(),
            chrono::Utc::now(),
        )
        .await?;
        self.outbox.wake();
        Ok(pb::CancelCampaignResponse {
            campaign: Some(campaigns::to_proto(&campaign)?),
            tasks_closed: i64::try_from(closed).unwrap_or(i64::MAX),
        })
    }
}

fn parse_campaign_id(raw: &str) -> Result<String, &'static str> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.to_string())
        .map_err(|_| "must be a campaign id (a UUID)")
}

fn campaign_id(raw: &str) -> error::Result<String> {
    let mut violations = Violations::new();
    let id = violations.check("campaign_id", parse_campaign_id(raw));
    Ok(violations.finish(|| id)?)
}

#[tonic::async_trait]
impl CampaignService for Campaigns {
    #[tracing::instrument(skip_all)]
    async fn create_campaign(
        &self,
        request: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::CreateCampaignResponse>, Status> {
        Ok(Response::new(self.create(request).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn preview_audience(
        &self,
        request: Request<pb::PreviewAudienceRequest>,
    ) -> Result<Response<pb::PreviewAudienceResponse>, Status> {
        Ok(Response::new(self.preview(request).await?))
    }

    #[tracing::instrument(skip_all, fields(campaign_id = %request.get_ref().campaign_id, dry_run = request.get_ref().dry_run))]
    async fn launch_campaign(
        &self,
        request: Request<pb::LaunchCampaignRequest>,
    ) -> Result<Response<pb::LaunchCampaignResponse>, Status> {
        Ok(Response::new(self.launch(request).await?))
    }

    #[tracing::instrument(skip_all, fields(campaign_id = %request.get_ref().campaign_id))]
    async fn get_campaign_progress(
        &self,
        request: Request<pb::GetCampaignProgressRequest>,
    ) -> Result<Response<pb::GetCampaignProgressResponse>, Status> {
        let principal = principal_of(&request)?;
        principal.require_any(READERS, "read campaign progress")?;
        let campaign_id = campaign_id(&request.get_ref().campaign_id)?;
        let progress =
            campaigns::read_progress(&self.db, &principal, &campaign_id, chrono::Utc::now())
                .await?;
        Ok(Response::new(progress))
    }

    #[tracing::instrument(skip_all)]
    async fn list_campaigns(
        &self,
        request: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsResponse>, Status> {
        let principal = principal_of(&request)?;
        principal.require_any(READERS, "list campaigns")?;
        let page = campaigns::list(&self.db, &self.vault, &principal, request.get_ref()).await?;
        Ok(Response::new(page))
    }

    #[tracing::instrument(skip_all, fields(campaign_id = %request.get_ref().campaign_id))]
    async fn approve_campaign_launch(
        &self,
        request: Request<pb::ApproveCampaignLaunchRequest>,
    ) -> Result<Response<pb::ApproveCampaignLaunchResponse>, Status> {
        Ok(Response::new(self.approve(request).await?))
    }

    #[tracing::instrument(skip_all, fields(campaign_id = %request.get_ref().campaign_id))]
    async fn cancel_campaign(
        &self,
        request: Request<pb::CancelCampaignRequest>,
    ) -> Result<Response<pb::CancelCampaignResponse>, Status> {
        Ok(Response::new(self.cancel(request).await?))
    }
}

/// ReportService: the league tables and their targets.
pub struct Reports {
    db: Db,
    time_zone: chrono_tz::Tz,
}

#[tonic::async_trait]
impl ReportService for Reports {
    #[tracing::instrument(skip_all)]
    async fn get_league_table(
        &self,
        request: Request<pb::GetLeagueTableRequest>,
    ) -> Result<Response<pb::GetLeagueTableResponse>, Status> {
        let principal = principal_of(&request)?;
        let table = league::league_table(
            &self.db,
            &principal,
            request.get_ref(),
            self.time_zone,
            chrono::Utc::now(),
        )
        .await?;
        Ok(Response::new(table))
    }

    #[tracing::instrument(skip_all)]
    async fn set_branch_target(
        &self,
        request: Request<pb::SetBranchTargetRequest>,
    ) -> Result<Response<pb::SetBranchTargetResponse>, Status> {
        let principal = principal_of(&request)?;
        let target =
            league::set_target(&self.db, &principal, request.get_ref(), chrono::Utc::now()).await?;
        Ok(Response::new(pb::SetBranchTargetResponse {
            target: Some(target),
        }))
    }
}

/// What the campaigns service takes from the bus.
struct Inbound {
    /// The bank's: the quarters of campaigns other services ask tasks of.
    time_zone: chrono_tz::Tz,
    /// Woken after a message asked the queue for tasks.
    outbox: crm_bus::outbox::OutboxWaker,
}

#[async_trait::async_trait]
impl crm_bus::MessageHandler for Inbound {
    async fn handle(
        &self,
        transaction: &sea_orm::DatabaseTransaction,
        envelope: &crm_bus::Envelope,
    ) -> Result<(), crm_bus::HandlerError> {
        projection::handle(transaction, envelope, self.time_zone).await
    }

    fn committed(&self) {
        self.outbox.wake();
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

    fn consumes(&self) -> &'static [&'static str] {
        projection::CONSUMES
    }

    fn settings(&self, command: clap::Command) -> clap::Command {
        <CampaignsSettings as clap::Args>::augment_args(command)
    }

    fn check_settings(
        &self,
        settings: &crm_runtime::ModuleSettings,
    ) -> Result<(), crm_runtime::SettingsError> {
        settings.section::<CampaignsSettings>().map(drop)
    }

    fn jobs(&self) -> Vec<crm_runtime::Job> {
        vec![
            jobs::QUARTERLY_HNW,
            jobs::ANNUAL_CAMPAIGN,
            jobs::CONTACT_CADENCE,
        ]
    }

    fn mount(
        &self,
        infra: &crm_runtime::Infra,
        server: &mut crm_runtime::Server,
    ) -> Result<(), crm_runtime::ModuleError> {
        let settings: CampaignsSettings = infra.settings.section()?;
        let outbox = crm_bus::outbox::OutboxWaker::default();
        let service = Campaigns {
            db: infra.db.clone(),
            vault: infra.vault.clone(),
            rules: campaigns::LaunchRules {
                approval_threshold: settings.campaign_approval_threshold,
                upgrade_percent: settings.upgrade_candidate_percent,
            },
            outbox: outbox.clone(),
        };
        server.add_service(
            "crm.v1.CampaignService",
            CampaignServiceServer::with_interceptor(service, infra.auth.clone()),
        );
        server.add_service(
            "crm.v1.ReportService",
            ReportServiceServer::with_interceptor(
                Reports {
                    db: infra.db.clone(),
                    time_zone: infra.calendar.time_zone,
                },
                infra.auth.clone(),
            ),
        );
        let inbound_outbox = outbox.clone();
        let relay =
            crm_bus::outbox::Relay::new(infra.db.clone(), infra.bus.clone(), SERVICE, outbox);
        infra.tasks.spawn(relay.run(infra.shutdown.clone()));
        let consumer = crm_bus::run_consumer(
            infra.bus.clone(),
            infra.db.clone(),
            SERVICE,
            Arc::new(Inbound {
                time_zone: infra.calendar.time_zone,
                outbox: inbound_outbox,
            }),
            // A profiles message carries up to 1,000 clients: a few per commit.
            crm_bus::Pace::batched(32, 8),
            infra.shutdown.clone(),
        );
        let shutdown = infra.shutdown.clone();
        infra.tasks.spawn(async move {
            if let Err(error) = consumer.await {
                // Without its consumer the projection and progress go stale: stop
                // so the orchestrator restarts it, rather than limp on.
                tracing::error!(%error, "campaigns consumer failed; shutting down");
                shutdown.cancel();
            }
        });
        Ok(())
    }
}
