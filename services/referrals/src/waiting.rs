//! Referrals that wait for routing. A valid referral is always taken: when the chain
//! has nobody to give it to (in the distributed mode, typically a branch set up a
//! few milliseconds earlier whose staff routing's copy has not heard of yet), it is
//! stored NEW, held by nobody, with the reason it waits in its history and
//! `routing_reason`. It is routed as soon as it can be:
//! - in the transaction that applies each directory or coverage change routing
//!   hears of, for the referrals that change could unblock (its branch, its
//!   teller, its client);
//! - by every SLA pass, for all of them (a change elsewhere — a primary RM in
//!   another branch back at work — unblocks one too);
//!
//! and a branch whose referrals wait longer than `CRM_REFERRAL_UNROUTED_ALERT_MINUTES`
//! shows on the SLA job's report and in the `crm.referrals.unrouted_branches` gauge.

use crate::store::referral;
use chrono::{DateTime, Utc};
use crm_domain::referral::ReferralStatus;
use crm_domain::sla::{BusinessCalendar, SlaPolicy};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use crate::error::Result;
use crate::{referral_changes, routing_inputs};

/// The actor the history names when a waiting referral is routed.
pub const ACTOR: &str = "system:routing";

/// Waiting referrals looked at per call; the SLA pass drains a longer backlog.
const BATCH: u64 = 500;

/// What routing a waiting referral needs besides the store.
#[derive(Debug, Clone, Default)]
pub struct WaitingRoutes {
    pub sla: SlaPolicy,
    pub calendar: BusinessCalendar,
}

/// Waiting referrals of the referrer `teller_id`.
pub fn of_referrer(teller_id: &str) -> Condition {
    Condition::all().add(referral::Column::ReferrerId.eq(teller_id))
}

/// Waiting referrals made at `branch_id`.
pub fn of_branch(branch_id: &str) -> Condition {
    Condition::all().add(referral::Column::BranchId.eq(branch_id))
}

/// Waiting referrals about the client `client_id`.
pub fn of_client(client_id: &str) -> Condition {
    Condition::all().add(referral::Column::ClientId.eq(client_id))
}

/// Waiting referrals about the client `client_id`, or made for a walk-in whose
/// phone hashes to one of `phone_hashes` (one per PII key: who may just have
/// become that client).
pub fn of_client_or_walk_in(client_id: &str, phone_hashes: &[String]) -> Condition {
    let mut which = Condition::any().add(referral::Column::ClientId.eq(client_id));
    if !phone_hashes.is_empty() {
        which = which.add(referral::Column::ProspectPhoneHash.is_in(phone_hashes));
    }
    which
}

/// Takes the routing locks of every branch with a waiting referral `which`
/// selects, in branch order, before the caller writes anything: a transaction
/// that routes waiting referrals then holds its branch locks before any row lock,
/// as CreateReferral does, so the two can't wait on each other in a circle.
pub async fn lock_branches_of(transaction: &impl ConnectionTrait, which: Condition) -> Result<()> {
    let branches: Vec<String> = referral::Entity::find()
        .select_only()
        .column(referral::Column::BranchId)
        .distinct()
        .filter(referral::Column::Status.eq(ReferralStatus::New.as_str()))
        .filter(which)
        .order_by_asc(referral::Column::BranchId)
        .into_tuple()
        .all(transaction)
        .await?;
    for branch_id in branches {
        routing_inputs::lock_branch(transaction, &branch_id).await?;
    }
    Ok(())
}

impl WaitingRoutes {
    /// Routes the waiting referrals `which` selects that the chain can place now,
    /// in the caller's transaction; how many were routed.
    pub async fn route(
        &self,
        transaction: &DatabaseTransaction,
        which: Condition,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let waiting = referral::Entity::find()
            .filter(referral::Column::Status.eq(ReferralStatus::New.as_str()))
            .filter(which)
            .order_by_asc(referral::Column::CreatedAt)
            .limit(BATCH)
            .all(transaction)
            .await?;
        let mut routed = 0;
        for candidate in waiting {
            if self.route_one(transaction, &candidate, now).await? {
                routed += 1;
            }
        }
        Ok(routed)
    }

    /// Routes one waiting referral if, under its branch's routing lock and with its
    /// row locked, it still waits and the chain has someone for it now. All of it
    /// or none: a savepoint, so a failure part-way (the caller may go on with the
    /// next) never leaves a referral assigned without its work item.
    async fn route_one(
        &self,
        transaction: &DatabaseTransaction,
        candidate: &referral::Model,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let savepoint = transaction.begin().await?;
        match self.route_one_in(&savepoint, candidate, now).await {
            Ok(routed) => {
                savepoint.commit().await?;
                Ok(routed)
            }
            Err(error) => {
                savepoint.rollback().await?;
                Err(error)
            }
        }
    }

    async fn route_one_in(
        &self,
        transaction: &DatabaseTransaction,
        candidate: &referral::Model,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        routing_inputs::lock_branch(transaction, &candidate.branch_id).await?;
        // Another replica (or the SLA pass) may have routed it meanwhile.
        let Some(current) = referral::Entity::find_by_id(candidate.referral_id.as_str())
            .filter(referral::Column::Status.eq(ReferralStatus::New.as_str()))
            .lock_exclusive()
            .one(transaction)
            .await?
        else {
            return Ok(false);
        };
        let rerouting =
            routing_inputs::route_stored(transaction, &current, None, &self.calendar, now).await?;
        let Ok(decision) = rerouting.decision else {
            return Ok(false);
        };
        let stored = referral_changes::route_waiting(
            transaction,
            &self.sla,
            &rerouting.calendar,
            current,
            &decision,
            now,
        )
        .await?;
        tracing::info!(
            referral_id = %stored.referral_id,
            assigned_rm_id = %stored.assigned_rm_id,
            waited_ms = (now - stored.created_at).num_milliseconds(),
            "waiting referral routed"
        );
        Ok(true)
    }
}

/// A branch with referrals nobody could be given for longer than the alert time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnroutedBranch {
    pub branch_id: String,
    /// How many of its referrals wait.
    pub waiting: i64,
    /// When the longest-waiting of them was made.
    pub oldest_since: DateTime<Utc>,
}

#[derive(Debug, FromQueryResult)]
struct WaitingAtBranch {
    branch_id: String,
    waiting: i64,
    oldest_since: DateTime<Utc>,
}

/// Branches whose oldest waiting referral was made before `waiting_since`, longest
/// waiting first.
pub async fn unrouted_branches(
    db: &impl ConnectionTrait,
    waiting_since: DateTime<Utc>,
) -> Result<Vec<UnroutedBranch>> {
    let oldest = Expr::col(referral::Column::CreatedAt).min();
    let rows = referral::Entity::find()
        .select_only()
        .column(referral::Column::BranchId)
        .column_as(Expr::col(referral::Column::ReferralId).count(), "waiting")
        .column_as(oldest.clone(), "oldest_since")
        .filter(referral::Column::Status.eq(ReferralStatus::New.as_str()))
        .group_by(referral::Column::BranchId)
        .having(oldest.lte(waiting_since))
        .into_model::<WaitingAtBranch>()
        .all(db)
        .await?;
    let mut branches: Vec<UnroutedBranch> = rows
        .into_iter()
        .map(|row| UnroutedBranch {
            branch_id: row.branch_id,
            waiting: row.waiting,
            oldest_since: row.oldest_since,
        })
        .collect();
    branches.sort_by_key(|branch| branch.oldest_since);
    Ok(branches)
}

/// Sets the gauge operations alert on: branches with referrals waiting past the
/// alert time.
pub fn record_unrouted_branches(count: usize) {
    let gauge = opentelemetry::global::meter("crm.referrals")
        .u64_gauge("crm.referrals.unrouted_branches")
        .with_description(
            "Branches with referrals that waited for routing longer than the alert time",
        )
        .build();
    gauge.record(u64::try_from(count).unwrap_or(u64::MAX), &[]);
}
