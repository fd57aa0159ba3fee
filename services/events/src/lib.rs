//! The events service: core-banking events, alerts and the client timeline.
//!
//! IngestEvents takes core-banking events (checked one by one, idempotent by
//! `event_id`, stored append-only, by month on PostgreSQL) and runs the rules on
//! them (balance watch, large transfers, payroll); an event of a client the client
//! book has not announced yet is held until it does (client_copy.rs).
//! NotifyLargeOutflow holds a transfer for the RM (outflow.rs); GetClientTimeline
//! shows one client's events and what other services did with them (timeline.rs).

use std::sync::Arc;

use crm_auth::principal_of;
use crm_domain::{Role, Violations};
use crm_proto::v1::{
    self as pb,
    event_service_server::{EventService, EventServiceServer},
};
use crm_store::Db;
use tonic::{Request, Response, Status};

pub mod balance_watch;
mod client_book;
mod client_copy;
mod error;
pub mod feed;
pub mod feed_watch;
pub mod ingest;
mod jobs;
pub mod maturities;
pub mod outflow;
pub mod partitions;
mod payroll;
mod settings;
pub mod store;
mod tier_followups;
mod timeline;

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
    /// Signs the timeline's page tokens.
    vault: Arc<crm_store::Vault>,
    /// Asked about a client this service has not heard of yet.
    client_book: client_book::ClientBook,
}

impl Events {
    fn intake(&self) -> ingest::Intake<'_> {
        ingest::Intake {
            db: &self.db,
            partitions: &self.partitions,
            rules: &self.watch,
            retention_months: self.retention_months,
        }
    }

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
        let intake = self.intake();
        let checked = intake.check_all(&events, now);
        let stored = intake.take(&ingest::passed(&checked), now).await?;
        self.outbox.wake();
        let results = ingest::results(&events, checked, &stored);
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
        let (mut outflow, wait) = outflow::parse(request.get_ref(), &principal)?;
        outflow.home_branch_id = match client_copy::find(&self.db, &outflow.client_id).await? {
            Some(client) => Some(client.home_branch_id),
            None => self.client_book.home_branch_of(&outflow.client_id).await,
        };
        let due = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        let alert = outflow::raise(&self.db, &outflow, due).await?;
        self.outbox.wake();
        let answered = outflow::wait_for_answer(&self.db, alert, wait, &self.shutdown).await?;
        Ok(pb::NotifyLargeOutflowResponse {
            alert_id: answered.alert_id,
            rm_id: answered.rm_id,
            acknowledged: answered.acknowledged,
            rm_note: answered.rm_note,
            funds_outcome: answered
                .funds_outcome
                .map_or(0, crm_grpc::WireEnum::to_wire),
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

    #[tracing::instrument(skip_all, fields(client_id = %request.get_ref().client_id))]
    async fn get_client_timeline(
        &self,
        request: Request<pb::GetClientTimelineRequest>,
    ) -> Result<Response<pb::GetClientTimelineResponse>, Status> {
        let actor = crm_audit::Actor::of(&request)?;
        let page = timeline::read(&self.db, &self.vault, &actor, request.get_ref()).await?;
        Ok(Response::new(page))
    }
}

/// What the events service takes from the bus.
struct Inbound {
    /// Woken after a message wrote outbox rows (a follow-up asked for).
    outbox: crm_bus::outbox::OutboxWaker,
    /// The rules, for events held until their client was announced.
    watch: balance_watch::WatchRules,
}

#[async_trait::async_trait]
impl crm_bus::MessageHandler for Inbound {
    async fn handle(
        &self,
        transaction: &sea_orm::DatabaseTransaction,
        envelope: &crm_bus::Envelope,
    ) -> Result<(), crm_bus::HandlerError> {
        use crm_domain::messages::*;
        match envelope.message_type.as_str() {
            COVERAGE_CHANGED => {
                client_copy::apply_coverage(transaction, &self.watch, envelope.decode()?).await
            }
            TIER_CHANGED => {
                let change: TierChanged = envelope.decode()?;
                client_copy::apply_tier(transaction, &change).await?;
                tier_followups::apply(transaction, change).await
            }
            WORK_ITEMS_REQUESTED => {
                let request: WorkItemsRequested = envelope.decode()?;
                timeline::record_requested(transaction, &request, envelope.occurred_at).await
            }
            WORK_ITEMS_ASSIGNED => outflow::apply_assigned(transaction, envelope.decode()?).await,
            WORK_ITEM_COMPLETED => {
                let completed: WorkItemCompleted = envelope.decode()?;
                timeline::record_completed(transaction, &completed).await?;
                outflow::apply_completed(transaction, completed).await
            }
            REFERRAL_ASSIGNED | REFERRAL_OUTCOME_RECORDED | REFERRAL_EXPIRED | REFERRAL_LINKED => {
                let referral: ReferralEvent = envelope.decode()?;
                timeline::record_referral(transaction, &envelope.message_type, &referral).await
            }
            INTERACTION_LOGGED => {
                timeline::record_interaction(transaction, &envelope.decode()?).await
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
        use crm_domain::messages::*;
        // The client book's coverage (the copy the timeline is scoped by, and what
        // releases held events) and tier changes (the RM's welcome or retention
        // follow-up); what the RM work queue says of the items this service asked
        // for; and, for the timeline, the work any service asks of an RM, the
        // referrals and the interactions.
        &[
            COVERAGE_CHANGED,
            TIER_CHANGED,
            WORK_ITEMS_REQUESTED,
            WORK_ITEMS_ASSIGNED,
            WORK_ITEM_COMPLETED,
            REFERRAL_ASSIGNED,
            REFERRAL_OUTCOME_RECORDED,
            REFERRAL_EXPIRED,
            REFERRAL_LINKED,
            INTERACTION_LOGGED,
        ]
    }

    fn feeds(&self) -> &'static [&'static str] {
        &[feed::FEED]
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
        vec![jobs::PRUNE_EVENTS, jobs::FEED_WATCH, jobs::MATURITY_SWEEP]
    }

    fn mount(
        &self,
        infra: &crm_runtime::Infra,
        server: &mut crm_runtime::Server,
    ) -> Result<(), crm_runtime::ModuleError> {
        let settings: EventsSettings = infra.settings.section()?;
        let outbox = crm_bus::outbox::OutboxWaker::default();
        let events_outbox = outbox.clone();
        let partitions: Arc<partitions::Partitions> = Arc::default();
        let events = Events {
            db: infra.db.clone(),
            outbox: outbox.clone(),
            shutdown: infra.shutdown.clone(),
            retention_months: settings.event_retention_months,
            watch: settings.watch_rules(infra.calendar.clone()),
            partitions: partitions.clone(),
            vault: infra.vault.clone(),
            client_book: client_book::ClientBook::new(
                &match &settings.client_book_url {
                    Some(url) => url.clone(),
                    // This process's own server, which holds the client book.
                    None => format!(
                        "{}://{}",
                        if infra.grpc_client_tls.is_some() {
                            "https"
                        } else {
                            "http"
                        },
                        server
                            .local_addr()
                            .map_err(crm_runtime::ModuleError::failed)?
                    ),
                },
                infra.auth.keys().clone(),
                infra.grpc_client_tls.clone(),
            )
            .map_err(|error| crm_runtime::ModuleError::Failed(error.into()))?,
        };
        server.add_service(
            "crm.v1.EventService",
            EventServiceServer::with_interceptor(events, infra.auth.clone()),
        );
        // What the service writes to its outbox (audit lines of its reads of
        // client data, its events) leaves through its own relay.
        let relay = crm_bus::outbox::Relay::new(
            infra.db.clone(),
            infra.bus.clone(),
            SERVICE,
            outbox.clone(),
        );
        infra.tasks.spawn(relay.run(infra.shutdown.clone()));
        let consumer = crm_bus::run_consumer(
            infra.bus.clone(),
            infra.db.clone(),
            SERVICE,
            Arc::new(Inbound {
                outbox: events_outbox,
                watch: settings.watch_rules(infra.calendar.clone()),
            }),
            // One message at a time: a client's copy taking its held events takes
            // the per-client locks ingest takes in client order; a batch would take
            // several in arrival order, and deadlock with IngestEvents.
            crm_bus::Pace::one_at_a_time(32),
            infra.shutdown.clone(),
        );
        // Core banking's feed comes over RabbitMQ; on the embedded default its
        // events arrive through IngestEvents alone.
        if matches!(infra.bus, crm_bus::Bus::Rabbit(_)) {
            let feed = feed::FeedConsumer {
                bus: infra.bus.clone(),
                db: infra.db.clone(),
                partitions: partitions.clone(),
                rules: settings.watch_rules(infra.calendar.clone()),
                retention_months: settings.event_retention_months,
                outbox: outbox.clone(),
                shutdown: infra.shutdown.clone(),
            };
            let shutdown = infra.shutdown.clone();
            infra.tasks.spawn(async move {
                if let Err(error) = feed.run().await {
                    tracing::error!(%error, "core-banking feed consumer failed; shutting down");
                    shutdown.cancel();
                }
            });
        }
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
