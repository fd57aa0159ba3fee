//! The events service: core-banking events, alerts and the client timeline.
//!
//! IngestEvents takes core-banking events (checked one by one, idempotent by
//! `event_id`, stored append-only, by month on PostgreSQL) and runs the balance
//! watch on them; NotifyLargeOutflow holds a transfer for the RM (outflow.rs). The
//! timeline answers UNIMPLEMENTED until its part of the events issue is built.

use std::collections::HashSet;
use std::sync::Arc;

use crm_auth::principal_of;
use crm_domain::{Role, Violations};
use crm_grpc::RpcError;
use crm_proto::v1::{
    self as pb,
    event_service_server::{EventService, EventServiceServer},
};
use crm_store::Db;
use sea_orm::TransactionTrait;
use tonic::{Request, Response, Status};

pub mod balance_watch;
mod error;
pub mod ingest;
mod jobs;
mod outflow;
pub mod partitions;
mod payroll;
mod settings;
pub mod store;
mod tier_followups;

pub use error::EventsError;
pub use settings::EventsSettings;

pub const SERVICE: &str = "events";

pub struct Events {
    db: Db,
    /// Wakes this service's relay after a commit that wrote outbox rows: an alert
    /// must not wait for the relay's next poll.
    outbox: crm_bus::outbox::OutboxWaker,
    shutdown: tokio_util::sync::CancellationToken,
    retention_months: u32,
    watch: balance_watch::WatchRules,
    partitions: Arc<partitions::Partitions>,
}

impl Events {
    async fn ingest(
        &self,
        request: Request<pb::IngestEventsRequest>,
    ) -> error::Result<pb::IngestEventsResponse> {
        let principal = principal_of(&request)?;
        // Core banking's integration, not a person, hands the bank's events in.
        principal.require_any(&[Role::System], "ingest core-banking events")?;
        let events = request.into_inner().events;
        if events.len() > ingest::MAX_BATCH {
            let mut violations = Violations::new();
            violations.add(
                "events",
                format!(
                    "at most {} events per call, got {}",
                    ingest::MAX_BATCH,
                    events.len()
                ),
            );
            return Err(violations.into());
        }
        let now = chrono::Utc::now();
        let kept_from = ingest::retention_start(now, self.retention_months);
        let checked: Vec<Result<ingest::BankEvent, String>> = events
            .iter()
            .map(|event| ingest::check(event, now, kept_from))
            .collect();
        let good: Vec<ingest::BankEvent> = checked
            .iter()
            .filter_map(|c| c.as_ref().ok().cloned())
            .collect();
        self.partitions
            .ensure(
                &self.db,
                good.iter()
                    .map(|event| partitions::Month::of(event.occurred_at.date_naive())),
            )
            .await?;
        let transaction = self.db.begin().await?;
        let stored = ingest::store(&transaction, &good, now).await?;
        // The rules see each new event once, in the transaction that keeps it.
        let mut applied = HashSet::new();
        for event in good.iter().filter(|event| stored.contains(&event.event_id)) {
            if applied.insert(event.event_id.as_str()) {
                ingest::apply_rules(&transaction, &self.watch, event).await?;
            }
        }
        transaction.commit().await?;
        self.outbox.wake();
        let mut reported = HashSet::new();
        let results = events
            .iter()
            .zip(checked)
            .map(|(event, checked)| match checked {
                Err(reason) => pb::IngestEventResult {
                    event_id: event.event_id.clone(),
                    accepted: false,
                    reason,
                    duplicate: false,
                },
                Ok(good) => pb::IngestEventResult {
                    duplicate: !(stored.contains(&good.event_id)
                        && reported.insert(good.event_id.clone())),
                    event_id: good.event_id,
                    accepted: true,
                    reason: String::new(),
                },
            })
            .collect();
        Ok(pb::IngestEventsResponse { results })
    }
}

impl Events {
    async fn hold_and_notify(
        &self,
        request: Request<pb::NotifyLargeOutflowRequest>,
    ) -> error::Result<pb::NotifyLargeOutflowResponse> {
        let principal = principal_of(&request)?;
        principal.require_any(
            &[Role::Teller, Role::BranchManager, Role::System],
            "hold a transfer for the RM",
        )?;
        let (outflow, wait) = outflow::parse(request.get_ref(), &principal)?;
        let due = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        let alert = outflow::raise(&self.db, &outflow, due).await?;
        self.outbox.wake();
        let answered = outflow::wait_for_answer(&self.db, alert, wait, &self.shutdown).await?;
        Ok(pb::NotifyLargeOutflowResponse {
            alert_id: answered.alert_id,
            rm_id: answered.rm_id,
            acknowledged: answered.acknowledged,
            rm_note: answered.rm_note,
        })
    }
}

#[tonic::async_trait]
impl EventService for Events {
    #[tracing::instrument(skip_all, fields(events = request.get_ref().events.len()))]
    async fn ingest_events(
        &self,
        request: Request<pb::IngestEventsRequest>,
    ) -> Result<Response<pb::IngestEventsResponse>, Status> {
        Ok(Response::new(self.ingest(request).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn notify_large_outflow(
        &self,
        request: Request<pb::NotifyLargeOutflowRequest>,
    ) -> Result<Response<pb::NotifyLargeOutflowResponse>, Status> {
        Ok(Response::new(self.hold_and_notify(request).await?))
    }

    async fn get_client_timeline(
        &self,
        _request: Request<pb::GetClientTimelineRequest>,
    ) -> Result<Response<pb::GetClientTimelineResponse>, Status> {
        Err(RpcError::Unimplemented("GetClientTimeline arrives with the events issue").into())
    }
}

/// What the events service takes from the bus.
struct Inbound {
    /// Woken after a message wrote outbox rows (a follow-up asked for).
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
            crm_domain::messages::TIER_CHANGED => {
                tier_followups::apply(transaction, envelope.decode()?).await
            }
            crm_domain::messages::WORK_ITEMS_ASSIGNED => {
                outflow::apply_assigned(transaction, envelope.decode()?).await
            }
            crm_domain::messages::WORK_ITEM_COMPLETED => {
                outflow::apply_completed(transaction, envelope.decode()?).await
            }
            other => Err(crm_bus::HandlerError::Poison(format!(
                "unexpected message type {other}"
            ))),
        }
    }

    fn committed(&self) {
        self.outbox.wake();
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

    fn consumes(&self) -> &'static [&'static str] {
        // Tier changes (the RM's welcome or retention follow-up), and what the RM
        // work queue says of the items this service asked for.
        &[
            crm_domain::messages::TIER_CHANGED,
            crm_domain::messages::WORK_ITEMS_ASSIGNED,
            crm_domain::messages::WORK_ITEM_COMPLETED,
        ]
    }

    fn settings(&self, command: clap::Command) -> clap::Command {
        <EventsSettings as clap::Args>::augment_args(command)
    }

    fn check_settings(
        &self,
        settings: &crm_runtime::ModuleSettings,
    ) -> Result<(), crm_runtime::SettingsError> {
        settings.section::<EventsSettings>().map(drop)
    }

    fn jobs(&self) -> Vec<crm_runtime::Job> {
        vec![jobs::PRUNE_EVENTS]
    }

    fn mount(
        &self,
        infra: &crm_runtime::Infra,
        server: &mut crm_runtime::Server,
    ) -> Result<(), crm_runtime::ModuleError> {
        let settings: EventsSettings = infra.settings.section()?;
        let outbox = crm_bus::outbox::OutboxWaker::default();
        let events_outbox = outbox.clone();
        let events = Events {
            db: infra.db.clone(),
            outbox: outbox.clone(),
            shutdown: infra.shutdown.clone(),
            retention_months: settings.event_retention_months,
            watch: settings.watch_rules(infra.calendar.clone()),
            partitions: Arc::default(),
        };
        server.add_service(
            "crm.v1.EventService",
            EventServiceServer::with_interceptor(events, infra.auth.clone()),
        );
        // What the service writes to its outbox (audit lines of its reads of
        // client data, its events) leaves through its own relay.
        let relay =
            crm_bus::outbox::Relay::new(infra.db.clone(), infra.bus.clone(), SERVICE, outbox);
        infra.tasks.spawn(relay.run(infra.shutdown.clone()));
        let consumer = crm_bus::run_consumer(
            infra.bus.clone(),
            infra.db.clone(),
            SERVICE,
            Arc::new(Inbound {
                outbox: events_outbox,
            }),
            32,
            infra.shutdown.clone(),
        );
        let shutdown = infra.shutdown.clone();
        infra.tasks.spawn(async move {
            if let Err(error) = consumer.await {
                // Without its consumer the service misses other services' news:
                // stop so the orchestrator restarts it, rather than limp on.
                tracing::error!(%error, "events consumer failed; shutting down");
                shutdown.cancel();
            }
        });
        Ok(())
    }
}
