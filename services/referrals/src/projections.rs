//! The referrals service's local copies of directory and coverage data, fed by the
//! clients service's events. Routing reads only these: no service reads another's
//! tables. Each copy keeps the source's `updated_at` and ignores older news, so
//! out-of-order delivery can't roll a copy back.

use crate::store::{referral, referral_history};
use crate::store::{routing_branch, routing_client, routing_pair, routing_staff};
use chrono::{DateTime, Utc};
use crm_bus::{Envelope, HandlerError, MessageHandler};
use crm_domain::messages::{
    BRANCH_CHANGED, BranchChanged, COVERAGE_CHANGED, CoverageChanged, INTERACTION_LOGGED,
    InteractionLogged, PAIR_CHANGED, PairChanged, REFERRAL_LINKED, STAFF_CHANGED, StaffChanged,
    WORK_ITEMS_REQUESTED, WORK_ITEMS_WITHDRAWN,
};
use crm_domain::referral::ReferralStatus;
use crm_domain::sla::{BusinessCalendar, SlaPolicy};
use opentelemetry::KeyValue;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseTransaction, EntityTrait, IntoActiveModel,
};
use sea_orm::{ColumnTrait, Condition, QueryFilter};

use crate::error::ReferralsError;
use crate::routing_inputs;
use crate::waiting::{self, WaitingRoutes};
use crm_store::copies::save_if_newer;

/// Applies directory and coverage news to routing's copies, and routes the
/// referrals that waited for exactly that news (waiting.rs) in the same transaction.
#[derive(Default)]
pub struct Projections {
    waiting: WaitingRoutes,
    /// The relay to wake when a message's transaction wrote outbox rows (work
    /// items routed or asked for, announced to the RMs' streams).
    outbox: crm_bus::outbox::OutboxWaker,
}

impl Projections {
    pub fn new(
        sla: SlaPolicy,
        calendar: BusinessCalendar,
        outbox: crm_bus::outbox::OutboxWaker,
    ) -> Self {
        Self {
            waiting: WaitingRoutes { sla, calendar },
            outbox,
        }
    }

    /// Routes the waiting referrals `which` selects. A store failure fails the
    /// message (retried with it); anything else about one referral is left to the
    /// SLA pass, which tries again and reports a branch that keeps waiting —
    /// directory news is never refused for a referral's sake.
    async fn route_waiting(
        &self,
        transaction: &DatabaseTransaction,
        which: Condition,
    ) -> Result<(), HandlerError> {
        match self.waiting.route(transaction, which, Utc::now()).await {
            Ok(_) => Ok(()),
            Err(ReferralsError::Db(error)) => Err(error.into()),
            Err(ReferralsError::Bus(error)) => Err(error.into()),
            Err(error) => {
                tracing::warn!(%error, "waiting referrals not routed on this change; the SLA pass tries again");
                Ok(())
            }
        }
    }
}

/// How far behind the source routing's copy was when news of a change landed:
/// from the change in the clients service to its commit here.
fn record_copy_lag(copy: &'static str, source_updated_at: DateTime<Utc>) {
    let lag = (Utc::now() - source_updated_at)
        .num_microseconds()
        .unwrap_or(i64::MAX);
    #[allow(clippy::cast_precision_loss)] // microseconds: f64 is exact far past a year
    let seconds = lag.max(0) as f64 / 1e6;
    opentelemetry::global::meter("crm.referrals")
        .f64_histogram("crm.referrals.routing_copy.lag")
        .with_unit("s")
        .with_description("From a directory or coverage change to routing's copy of it")
        .with_boundaries(crm_telemetry::LATENCY_BOUNDARIES_SECONDS.to_vec())
        .build()
        .record(seconds, &[KeyValue::new("copy", copy)]);
}

#[async_trait::async_trait]
impl MessageHandler for Projections {
    async fn handle(
        &self,
        transaction: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        match envelope.message_type.as_str() {
            STAFF_CHANGED => {
                let message: StaffChanged = envelope.decode()?;
                let branch_id = message.branch_id.clone();
                let changed_at = message.updated_at;
                // The branch's routing lock before the staff row's: a create at the
                // branch takes them in that order too, so the two can't deadlock.
                routing_inputs::lock_branch(transaction, &branch_id).await?;
                apply_staff(transaction, message).await?;
                record_copy_lag("staff", changed_at);
                self.route_waiting(transaction, waiting::of_branch(&branch_id))
                    .await
            }
            PAIR_CHANGED => {
                let message: PairChanged = envelope.decode()?;
                let teller_id = message.teller_id.clone();
                let changed_at = message.updated_at;
                waiting::lock_branches_of(transaction, waiting::of_referrer(&teller_id)).await?;
                apply_pair(transaction, message).await?;
                record_copy_lag("pair", changed_at);
                self.route_waiting(transaction, waiting::of_referrer(&teller_id))
                    .await
            }
            BRANCH_CHANGED => {
                let message: BranchChanged = envelope.decode()?;
                record_copy_lag("branch", message.updated_at);
                apply_branch(transaction, message).await
            }
            COVERAGE_CHANGED => {
                let message: CoverageChanged = envelope.decode()?;
                let client_id = message.client_id.clone();
                let changed_at = message.updated_at;
                // Branch locks first (walk-ins about to become this client's
                // included), then rows: the order CreateReferral takes them in.
                waiting::lock_branches_of(
                    transaction,
                    waiting::of_client_or_walk_in(&client_id, &message.every_phone_hash()),
                )
                .await?;
                link_walk_ins(transaction, &message).await?;
                apply_coverage(transaction, message).await?;
                record_copy_lag("coverage", changed_at);
                self.route_waiting(transaction, waiting::of_client(&client_id))
                    .await
            }
            INTERACTION_LOGGED => stop_clocks(transaction, envelope.decode()?).await,
            WORK_ITEMS_REQUESTED => {
                crate::requested_work::create_requested(transaction, envelope.decode()?, Utc::now())
                    .await
                    .map(drop)
            }
            WORK_ITEMS_WITHDRAWN => crate::requested_work::withdraw_requested(
                transaction,
                envelope.decode()?,
                Utc::now(),
            )
            .await
            .map(drop),
            other => Err(HandlerError::Poison(format!(
                "unexpected message type {other}"
            ))),
        }
    }

    fn committed(&self) {
        self.outbox.wake();
    }
}

async fn apply_staff(
    transaction: &DatabaseTransaction,
    message: StaffChanged,
) -> Result<(), HandlerError> {
    use routing_staff::Column;
    let row = routing_staff::ActiveModel {
        staff_id: Set(message.staff_id),
        role: Set(message.role),
        branch_id: Set(message.branch_id),
        active: Set(message.active),
        capacity: Set(message.capacity),
        out_of_office_until: Set(message.out_of_office_until),
        // Routing's own bookkeeping, not the directory's: starts empty on insert
        // and is never overwritten here.
        last_assigned_at: Set(None),
        open_referrals: Set(0),
        source_updated_at: Set(message.updated_at),
    };
    let columns = [
        Column::Role,
        Column::BranchId,
        Column::Active,
        Column::Capacity,
        Column::OutOfOfficeUntil,
        Column::SourceUpdatedAt,
    ];
    save_if_newer(
        transaction,
        row,
        Column::StaffId,
        &columns,
        Column::SourceUpdatedAt,
    )
    .await
    .map_err(HandlerError::from)
}

async fn apply_pair(
    transaction: &DatabaseTransaction,
    message: PairChanged,
) -> Result<(), HandlerError> {
    use routing_pair::Column;
    let row = routing_pair::ActiveModel {
        teller_id: Set(message.teller_id),
        rm_id: Set(message.rm_id),
        valid_from: Set(message.valid_from),
        valid_until: Set(message.valid_until),
        source_updated_at: Set(message.updated_at),
    };
    let columns = [
        Column::RmId,
        Column::ValidFrom,
        Column::ValidUntil,
        Column::SourceUpdatedAt,
    ];
    save_if_newer(
        transaction,
        row,
        Column::TellerId,
        &columns,
        Column::SourceUpdatedAt,
    )
    .await
    .map_err(HandlerError::from)
}

async fn apply_branch(
    transaction: &DatabaseTransaction,
    message: BranchChanged,
) -> Result<(), HandlerError> {
    use routing_branch::Column;
    let row = routing_branch::ActiveModel {
        branch_id: Set(message.branch_id),
        time_zone: Set(message.time_zone),
        source_updated_at: Set(message.updated_at),
    };
    let columns = [Column::TimeZone, Column::SourceUpdatedAt];
    save_if_newer(
        transaction,
        row,
        Column::BranchId,
        &columns,
        Column::SourceUpdatedAt,
    )
    .await
    .map_err(HandlerError::from)
}

async fn apply_coverage(
    transaction: &DatabaseTransaction,
    message: CoverageChanged,
) -> Result<(), HandlerError> {
    use routing_client::Column;
    let row = routing_client::ActiveModel {
        client_id: Set(message.client_id),
        home_branch_id: Set(message.home_branch_id),
        primary_rm_id: Set(message.primary_rm_id),
        wealth_manager_id: Set(message.wealth_manager_id),
        private_banker_id: Set(message.private_banker_id),
        do_not_contact: Set(message.do_not_contact),
        source_updated_at: Set(message.updated_at),
    };
    let columns = [
        Column::HomeBranchId,
        Column::PrimaryRmId,
        Column::WealthManagerId,
        Column::PrivateBankerId,
        Column::DoNotContact,
        Column::SourceUpdatedAt,
    ];
    save_if_newer(
        transaction,
        row,
        Column::ClientId,
        &columns,
        Column::SourceUpdatedAt,
    )
    .await
    .map_err(HandlerError::from)
}

/// A contact with the client by the RM holding their referral stops its acceptance
/// clock: the RM is on it, even before pressing "accept".
async fn stop_clocks(
    transaction: &DatabaseTransaction,
    message: InteractionLogged,
) -> Result<(), HandlerError> {
    referral::Entity::update_many()
        .col_expr(
            referral::Column::SlaStoppedAt,
            Expr::value(Some(message.occurred_at)),
        )
        .filter(referral::Column::ClientId.eq(message.client_id.as_str()))
        .filter(referral::Column::AssignedRmId.eq(message.staff_id.as_str()))
        .filter(referral::Column::Status.eq(ReferralStatus::Assigned.as_str()))
        .filter(referral::Column::SlaStoppedAt.is_null())
        .exec(transaction)
        .await?;
    // A contact is work on every open referral the RM holds for the client: it
    // keeps them from expiring as untouched.
    referral::Entity::update_many()
        .col_expr(
            referral::Column::UpdatedAt,
            Expr::value(message.occurred_at),
        )
        .filter(referral::Column::ClientId.eq(message.client_id.as_str()))
        .filter(referral::Column::AssignedRmId.eq(message.staff_id.as_str()))
        .filter(referral::Column::Status.is_in(ReferralStatus::OPEN.map(|s| s.as_str())))
        .filter(referral::Column::UpdatedAt.lt(message.occurred_at))
        .exec(transaction)
        .await?;
    Ok(())
}

/// A walk-in who has become a client: their referrals (found by the phone's lookup
/// hash, never the number) now name the client, and the history says so.
async fn link_walk_ins(
    transaction: &DatabaseTransaction,
    message: &CoverageChanged,
) -> Result<(), HandlerError> {
    let phone_hashes = message.every_phone_hash();
    if phone_hashes.is_empty() {
        return Ok(());
    }
    let walk_ins = referral::Entity::find()
        .filter(referral::Column::ProspectPhoneHash.is_in(phone_hashes))
        .filter(referral::Column::ClientId.is_null())
        .all(transaction)
        .await?;
    for walk_in in walk_ins {
        let status = walk_in.status;
        let open = status.is_open();
        // An open referral now counts as the client's for duplicates — unless the
        // client already has an open one for that need; then the phone key stays.
        let client_key = format!("client:{}:{}", message.client_id, walk_in.need);
        let taken = referral::Entity::find()
            .filter(referral::Column::DedupeKey.eq(client_key.as_str()))
            .filter(referral::Column::Status.is_in(ReferralStatus::OPEN.map(|s| s.as_str())))
            .one(transaction)
            .await?
            .is_some();
        let mut row = walk_in.into_active_model();
        row.client_id = Set(Some(message.client_id.clone()));
        if open && !taken {
            row.dedupe_key = Set(Some(client_key));
        }
        row.updated_at = Set(message.updated_at.max(Utc::now()));
        let stored = row.update(transaction).await?;
        crm_bus::outbox::enqueue_event(
            transaction,
            crate::SERVICE,
            REFERRAL_LINKED,
            REFERRAL_LINKED,
            &crate::referral_wire::referral_event(&stored),
        )
        .await?;
        referral_history::ActiveModel {
            history_id: Set(uuid::Uuid::now_v7().to_string()),
            referral_id: Set(stored.referral_id.clone()),
            action: Set("linked".to_owned()),
            from_status: Set(status),
            to_status: Set(status),
            actor_id: Set("system:clients".to_owned()),
            rm_id: Set(stored.assigned_rm_id.clone()),
            reason: Set(format!("walk-in became client {}", message.client_id)),
            occurred_at: Set(message.updated_at),
        }
        .insert(transaction)
        .await?;
    }
    Ok(())
}
