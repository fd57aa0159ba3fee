//! The referrals service: teller referrals, their routing to an RM, and the RM work
//! queues with their live push to the RM mobile backend.
//!
//! CreateReferral routes (crm_domain::routing) over local projections of the
//! directory and client coverage, then writes the referral, the RM's work item and
//! the outbox messages in one transaction. The relay publishes them; a
//! WatchWorkItems stream bound to `rm.<staff_id>` receives them.

mod access;
mod calendars;
pub mod create;
mod error;
mod jobs;
mod lifecycle;
mod referral_changes;
mod requested_work;
mod reseal;

mod projections;
mod referral_reads;
mod referral_wire;
mod routing_inputs;
mod service;
mod settings;
mod sla_job;
mod snoozes;
mod stats;
pub mod store;
mod waiting;
mod watch;
mod work_item_feed;
mod work_queue;

use std::sync::Arc;

use crm_auth::AuthInterceptor;
use crm_bus::Bus;
use crm_bus::outbox::OutboxWaker;
use crm_domain::messages;
use crm_domain::sla::{BusinessCalendar, SlaPolicy};
use crm_proto::v1::referral_service_server::ReferralServiceServer;
use crm_store::{Db, Vault};
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

pub use error::ReferralsError;
pub use projections::Projections;
pub use service::Referrals;
pub use settings::ReferralsSettings;
pub use sla_job::{SlaJob, SlaReport};
pub use waiting::UnroutedBranch;
pub use work_item_feed::WorkItemMessage;

/// The outbox source, queue and consumer name of this service.
pub const SERVICE: &str = "referrals";

#[derive(Clone)]
pub struct ReferralsState {
    pub db: Db,
    pub bus: Bus,
    pub outbox: OutboxWaker,
    pub sla: SlaPolicy,
    pub calendar: BusinessCalendar,
    /// Ends live streams when the process shuts down.
    pub shutdown: CancellationToken,
    /// Seals walk-in phones; their lookup hashes find duplicates.
    pub vault: Arc<Vault>,
    /// How many live streams are open, per person and in all.
    pub streams: Arc<watch::StreamLimits>,
}

impl ReferralsState {
    pub fn new(infra: &crm_runtime::Infra) -> Result<Self, crm_runtime::SettingsError> {
        let settings: ReferralsSettings = infra.settings.section()?;
        Ok(Self {
            db: infra.db.clone(),
            bus: infra.bus.clone(),
            outbox: OutboxWaker::default(),
            sla: settings
                .referral_sla()
                .map_err(crm_runtime::SettingsError::Section)?,
            calendar: infra.calendar.clone(),
            shutdown: infra.shutdown.clone(),
            vault: infra.vault.clone(),
            streams: Arc::new(watch::StreamLimits::new(
                settings.watch_streams_per_staff.into(),
                usize::try_from(settings.watch_streams_total).unwrap_or(usize::MAX),
            )),
        })
    }
}

pub fn referral_service(
    state: Arc<ReferralsState>,
    auth: AuthInterceptor,
) -> InterceptedService<ReferralServiceServer<Referrals>, AuthInterceptor> {
    ReferralServiceServer::with_interceptor(Referrals::new(state), auth)
}

/// The referrals service as a process mounts it: the gRPC service, the outbox
/// relay, the snooze timer and the consumer that keeps routing's copies of the
/// directory and of client coverage current.
pub struct Module;

impl crm_runtime::ServiceModule for Module {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn migrations(&self) -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
        store::migrations()
    }

    fn consumes(&self) -> &'static [&'static str] {
        &[
            messages::COVERAGE_CHANGED,
            messages::INTERACTION_LOGGED,
            messages::STAFF_CHANGED,
            messages::PAIR_CHANGED,
            messages::BRANCH_CHANGED,
            messages::WORK_ITEMS_REQUESTED,
            messages::WORK_ITEMS_WITHDRAWN,
        ]
    }

    fn settings(&self, command: clap::Command) -> clap::Command {
        <ReferralsSettings as clap::Args>::augment_args(command)
    }

    fn check_settings(
        &self,
        settings: &crm_runtime::ModuleSettings,
    ) -> Result<(), crm_runtime::SettingsError> {
        settings.section::<ReferralsSettings>().map(drop)
    }

    fn jobs(&self) -> Vec<crm_runtime::Job> {
        vec![
            jobs::REFERRAL_SLA,
            jobs::RECOUNT_REFERRAL_LOAD,
            reseal::RESEAL_REFERRAL_PII_JOB,
        ]
    }

    fn mount(
        &self,
        infra: &crm_runtime::Infra,
        server: &mut crm_runtime::Server,
    ) -> Result<(), crm_runtime::ModuleError> {
        let state = Arc::new(ReferralsState::new(infra)?);
        server.add_service(
            "crm.v1.ReferralService",
            referral_service(state.clone(), infra.auth.clone()),
        );
        let relay = crm_bus::outbox::Relay::new(
            infra.db.clone(),
            infra.bus.clone(),
            SERVICE,
            state.outbox.clone(),
        );
        infra.tasks.spawn(relay.run(infra.shutdown.clone()));
        infra.tasks.spawn(snoozes::run(
            infra.db.clone(),
            state.outbox.clone(),
            infra.shutdown.clone(),
        ));
        let consumer = crm_bus::run_consumer(
            infra.bus.clone(),
            infra.db.clone(),
            SERVICE,
            Arc::new(Projections::new(
                state.sla,
                state.calendar.clone(),
                state.outbox.clone(),
            )),
            // One message at a time: routing holds branch locks that a referral
            // being created waits on, and must not hold them for a whole batch.
            crm_bus::Pace::one_at_a_time(32),
            infra.shutdown.clone(),
        );
        let shutdown = infra.shutdown.clone();
        infra.tasks.spawn(async move {
            if let Err(error) = consumer.await {
                // Without its consumer the service routes on stale data: stop the
                // process so the orchestrator restarts it, rather than limp on.
                tracing::error!(%error, "referrals consumer failed; shutting down");
                shutdown.cancel();
            }
        });
        Ok(())
    }
}
