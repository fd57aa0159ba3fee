//! `crm jobs referral-sla`: referrals not accepted by their deadline. A first
//! breach escalates — the branch manager gets a work item and the referral is
//! marked `escalated`, with a second window to accept; a second breach reassigns it
//! down the routing chain (the next candidate after the RM who let it lapse).
//!
//! The same pass expires open referrals with no change and no contact logged by
//! their holder for `expire_after` (CRM_REFERRAL_EXPIRE_DAYS): the status becomes
//! EXPIRED, every open work item
//! of the referral closes, the holder's load drops, and `referral.expired` goes
//! out. An open duplicate key is freed with it, so the client can be referred
//! again.
//!
//! Safe to run twice or from two schedulers at once: each referral is claimed by
//! a conditional update inside the transaction that acts on it (of its escalation
//! level, or of its status while still untouched), so exactly one runner acts. An
//! acceptance, an outcome or a logged contact with the client stops the clock
//! (`sla_stopped_at`).

use crate::store::{referral, routing_staff};
use chrono::{DateTime, Utc};
use crm_domain::Role;
use crm_domain::messages::{REFERRAL_ESCALATED, REFERRAL_EXPIRED};
use crm_domain::referral::{ReferralStatus, WorkItemKind};
use crm_domain::routing::RoutingDecision;
use crm_domain::sla::{BusinessCalendar, SlaPolicy, acceptance_deadline};
use crm_store::Db;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use crate::error::Result;
use crate::referral_changes::{self, ChangedBy};
use crate::waiting::{self, UnroutedBranch, WaitingRoutes};
use crate::{calendars, routing_inputs};

/// An open referral whose holder can't work it: deactivated, or out of office past
/// the referral's deadline. One condition, for the pass's batch and for the locked
/// re-read of each row, so the two can't disagree.
fn held_by_someone_absent(now: DateTime<Utc>) -> Condition {
    use sea_orm::sea_query::{ExprTrait, Query};
    let staff = |column| Expr::col((routing_staff::Entity, column));
    let away_until = staff(routing_staff::Column::OutOfOfficeUntil);
    let absent_holder =
        Query::select()
            .expr(Expr::val(1))
            .from(routing_staff::Entity)
            .and_where(
                staff(routing_staff::Column::StaffId)
                    .equals((referral::Entity, referral::Column::AssignedRmId)),
            )
            .cond_where(
                Condition::any()
                    .add(staff(routing_staff::Column::Active).eq(false))
                    .add(Condition::all().add(away_until.clone().gt(now)).add(
                        away_until.gt(Expr::col((referral::Entity, referral::Column::SlaDueAt))),
                    )),
            )
            .to_owned();
    Condition::all()
        .add(referral::Column::Status.is_in([
            ReferralStatus::Assigned,
            ReferralStatus::Accepted,
            ReferralStatus::Contacted,
        ]))
        .add(Expr::exists(absent_holder))
}

/// What one runner did about one breached deadline.
enum Breach {
    /// First breach: the branch manager was told; a second window opened.
    Escalated,
    /// Second breach: the referral moved down the routing chain.
    Reassigned,
    /// Another runner acted on it first (or it was accepted meanwhile).
    TakenByAnotherRunner,
}

/// The actor the history names for this job.
pub const ACTOR: &str = "system:referral-sla";

/// Referrals handled per pass; a backlog drains over consecutive runs.
const BATCH: u64 = 500;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SlaReport {
    pub escalated: usize,
    pub reassigned: usize,
    pub expired: usize,
    /// Moved away from a holder who is inactive, or out of office past the
    /// referral's deadline.
    pub rerouted: usize,
    /// Waited for routing (nobody in the branch to give them to) and routed now.
    pub routed_after_waiting: usize,
    /// Branches whose referrals still wait, longer than the alert time: someone
    /// must staff them (or the directory's news is not arriving).
    pub unrouted_branches: Vec<UnroutedBranch>,
    /// Work items other services asked for that waited for someone to give them
    /// to, routed now.
    pub work_items_routed_after_waiting: usize,
    /// Such items that still wait.
    pub unassigned_work_items: u64,
}

/// What the job needs: the store and the clock's rules.
pub struct SlaJob {
    pub db: Db,
    pub sla: SlaPolicy,
    pub calendar: BusinessCalendar,
    /// An open referral unchanged for this long expires.
    pub expire_after: chrono::Duration,
    /// A branch whose referrals wait for routing longer than this is reported.
    pub unrouted_alert_after: chrono::Duration,
}

impl SlaJob {
    /// One pass as of `now` (the caller's clock: tests and replays pass their own).
    pub async fn run(&self, now: DateTime<Utc>) -> Result<SlaReport> {
        // A referral left alone this long is expired, not escalated once more.
        let expired = self.expire_stale(now).await?;
        let due = referral::Entity::find()
            .filter(referral::Column::Status.eq(ReferralStatus::Assigned.as_str()))
            .filter(referral::Column::SlaStoppedAt.is_null())
            .filter(referral::Column::SlaDueAt.lte(now))
            .filter(referral::Column::EscalationLevel.lt(2))
            .order_by_asc(referral::Column::SlaDueAt)
            .limit(BATCH)
            .all(&self.db)
            .await?;
        // Nobody waits on someone who is not there: before deadlines are judged.
        let rerouted = self.reroute_from_absent_holders(now).await?;
        let mut report = SlaReport {
            expired,
            rerouted,
            ..SlaReport::default()
        };
        for breached in due {
            match self.act_on_breach(breached, now).await? {
                Breach::Escalated => report.escalated += 1,
                Breach::Reassigned => report.reassigned += 1,
                Breach::TakenByAnotherRunner => {}
            }
        }
        // After the deadlines: a branch that can't be routed to must not hold up
        // every escalation of the bank.
        report.routed_after_waiting = self.route_waiting(now).await?;
        report.unrouted_branches =
            waiting::unrouted_branches(&self.db, now - self.unrouted_alert_after).await?;
        waiting::record_unrouted_branches(report.unrouted_branches.len());
        report.work_items_routed_after_waiting =
            crate::requested_work::route_unassigned(&self.db, now).await?;
        report.unassigned_work_items = crate::requested_work::unassigned_count(&self.db).await?;
        for branch in &report.unrouted_branches {
            tracing::warn!(
                branch_id = %branch.branch_id,
                waiting = branch.waiting,
                oldest_since = %branch.oldest_since,
                "referrals wait for routing: the branch has nobody to give them to"
            );
        }
        if report != SlaReport::default() {
            tracing::info!(?report, "referral SLA pass");
        }
        Ok(report)
    }

    /// Routes the referrals that wait for routing wherever the chain has someone
    /// for them now, one branch per transaction; how many.
    async fn route_waiting(&self, now: DateTime<Utc>) -> Result<usize> {
        let routes = WaitingRoutes {
            sla: self.sla,
            calendar: self.calendar.clone(),
        };
        let mut routed = 0;
        for branch in waiting::unrouted_branches(&self.db, now).await? {
            let transaction = self.db.begin().await?;
            match routes
                .route(&transaction, waiting::of_branch(&branch.branch_id), now)
                .await
            {
                Ok(count) => {
                    transaction.commit().await?;
                    routed += count;
                }
                // One branch's trouble (a corrupt row, a lost race) is logged and
                // left for the next pass; the other branches are still routed.
                Err(error) => {
                    transaction.rollback().await?;
                    tracing::warn!(%error, branch_id = %branch.branch_id, "waiting referrals of the branch not routed");
                }
            }
        }
        Ok(routed)
    }

    /// Reroutes open referrals whose holder can't work them: deactivated, or out
    /// of office past the referral's deadline. Each moves down the routing chain,
    /// as a second breach would; how many moved.
    async fn reroute_from_absent_holders(&self, now: DateTime<Utc>) -> Result<usize> {
        let held = referral::Entity::find()
            .filter(held_by_someone_absent(now))
            .order_by_asc(referral::Column::ReferralId)
            .limit(BATCH)
            .all(&self.db)
            .await?;
        let mut rerouted = 0;
        for referral in held {
            if self
                .reroute_if_holder_absent(&referral.referral_id, now)
                .await?
            {
                rerouted += 1;
            }
        }
        Ok(rerouted)
    }

    /// Reroutes one referral if, with its row locked, it is still open and held by
    /// someone absent (another runner, or the holder's return, may have settled it).
    async fn reroute_if_holder_absent(
        &self,
        referral_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let transaction = self.db.begin().await?;
        let Some(current) = referral::Entity::find_by_id(referral_id)
            .filter(held_by_someone_absent(now))
            .lock_exclusive()
            .one(&transaction)
            .await?
        else {
            transaction.rollback().await?;
            return Ok(false);
        };
        let holder_active = routing_staff::Entity::find_by_id(current.assigned_rm_id.as_str())
            .one(&transaction)
            .await?
            .is_some_and(|holder| holder.active);
        let why = if holder_active {
            format!(
                "{} is out of office past the deadline",
                current.assigned_rm_id
            )
        } else {
            format!("{} is no longer active", current.assigned_rm_id)
        };
        let holder_id = current.assigned_rm_id.clone();
        let level = current.escalation_level;
        match self.route_past_holder(&transaction, &current, now).await? {
            Some((decision, calendar)) if decision.chosen_rm_id != holder_id => {
                let by = ChangedBy {
                    actor_id: ACTOR.to_owned(),
                    reason: format!("rerouted: {why}"),
                };
                referral_changes::reassign(
                    &transaction,
                    &self.sla,
                    &calendar,
                    current,
                    &decision.chosen_rm_id,
                    &by,
                    level,
                    now,
                )
                .await?;
                transaction.commit().await?;
                Ok(true)
            }
            // Nobody to give it to: it stays, and the deadline will escalate it.
            _ => {
                transaction.rollback().await?;
                Ok(false)
            }
        }
    }

    /// The routing chain's choice for `current` with its holder left out (the
    /// chain still ends at the branch manager); None when the chain has nobody.
    async fn route_past_holder(
        &self,
        transaction: &sea_orm::DatabaseTransaction,
        current: &referral::Model,
        now: DateTime<Utc>,
    ) -> Result<Option<(RoutingDecision, BusinessCalendar)>> {
        let holder = current.assigned_rm_id.as_str();
        let rerouting =
            routing_inputs::route_stored(transaction, current, Some(holder), &self.calendar, now)
                .await?;
        Ok(rerouting
            .decision
            .ok()
            .map(|decision| (decision, rerouting.calendar)))
    }

    /// Expires open referrals unchanged since `now - expire_after`; how many.
    async fn expire_stale(&self, now: DateTime<Utc>) -> Result<usize> {
        let stale_before = now - self.expire_after;
        let open: Vec<&str> = ReferralStatus::OPEN.iter().map(|s| s.as_str()).collect();
        let stale = referral::Entity::find()
            .filter(referral::Column::Status.is_in(open))
            .filter(referral::Column::UpdatedAt.lte(stale_before))
            .order_by_asc(referral::Column::UpdatedAt)
            .limit(BATCH)
            .all(&self.db)
            .await?;
        let mut expired = 0;
        for referral in stale {
            if self.expire(referral, stale_before, now).await? {
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// Expires one referral if it is still open, untouched, and this runner wins it.
    async fn expire(
        &self,
        stale: referral::Model,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let from = stale.status;
        let Ok(next) = crm_domain::referral::expire(from) else {
            return Ok(false);
        };
        let transaction = self.db.begin().await?;
        let claimed = referral::Entity::update_many()
            .col_expr(referral::Column::Status, Expr::value(next.as_str()))
            .col_expr(referral::Column::UpdatedAt, Expr::value(now))
            .filter(referral::Column::ReferralId.eq(stale.referral_id.as_str()))
            .filter(referral::Column::Status.eq(from.as_str()))
            .filter(referral::Column::UpdatedAt.lte(stale_before))
            .exec(&transaction)
            .await?;
        let stored = if claimed.rows_affected == 1 {
            referral::Entity::find_by_id(stale.referral_id.as_str())
                .one(&transaction)
                .await?
        } else {
            None
        };
        let Some(stored) = stored else {
            transaction.rollback().await?;
            return Ok(false);
        };
        let by = ChangedBy {
            actor_id: ACTOR.to_owned(),
            reason: format!(
                "no change or contact for {} days while {}",
                self.expire_after.num_days(),
                from.as_str()
            ),
        };
        referral_changes::close_work_items(
            &transaction,
            &stored.referral_id,
            None,
            &format!("expired: {}", by.reason),
            now,
        )
        .await?;
        // No longer open: no longer part of the holder's load.
        referral_changes::adjust_load(&transaction, &stored.assigned_rm_id, -1, None).await?;
        referral_changes::record_history(&transaction, "expired", from, &stored, &by).await?;
        referral_changes::publish(&transaction, REFERRAL_EXPIRED, &stored).await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Acts on one breach if this runner wins it.
    async fn act_on_breach(&self, breached: referral::Model, now: DateTime<Utc>) -> Result<Breach> {
        let level = breached.escalation_level;
        let transaction = self.db.begin().await?;
        let claimed = referral::Entity::update_many()
            .col_expr(referral::Column::EscalationLevel, Expr::value(level + 1))
            .filter(referral::Column::ReferralId.eq(breached.referral_id.as_str()))
            .filter(referral::Column::EscalationLevel.eq(level))
            .filter(referral::Column::Status.eq(ReferralStatus::Assigned.as_str()))
            .filter(referral::Column::SlaStoppedAt.is_null())
            .exec(&transaction)
            .await?;
        if claimed.rows_affected == 0 {
            transaction.rollback().await?;
            return Ok(Breach::TakenByAnotherRunner);
        }
        let Some(current) = referral::Entity::find_by_id(breached.referral_id.as_str())
            .one(&transaction)
            .await?
        else {
            transaction.rollback().await?;
            return Ok(Breach::TakenByAnotherRunner);
        };
        let holder = current.assigned_rm_id.clone();
        let by = ChangedBy {
            actor_id: ACTOR.to_owned(),
            reason: format!(
                "not accepted by {holder} by {}",
                breached.sla_due_at.format("%Y-%m-%d %H:%M UTC")
            ),
        };
        let acted = if level == 0 {
            self.escalate(&transaction, current, &by, now).await?;
            Breach::Escalated
        } else {
            self.reassign_on(&transaction, current, &by, now).await?;
            Breach::Reassigned
        };
        transaction.commit().await?;
        Ok(acted)
    }

    /// First breach: the branch manager hears of it; a second window opens.
    async fn escalate(
        &self,
        transaction: &sea_orm::DatabaseTransaction,
        current: referral::Model,
        by: &ChangedBy,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let priority = current.priority;
        let from = current.status;
        let calendar =
            calendars::for_branch(transaction, &current.branch_id, &self.calendar).await?;
        let mut row = current.into_active_model();
        row.escalated = Set(true);
        row.sla_due_at = Set(acceptance_deadline(&self.sla, &calendar, priority, now));
        row.updated_at = Set(now);
        let stored = row.update(transaction).await?;
        let manager = routing_staff::Entity::find()
            .filter(routing_staff::Column::BranchId.eq(stored.branch_id.as_str()))
            .filter(routing_staff::Column::Role.eq(Role::BranchManager.as_str()))
            .filter(routing_staff::Column::Active.eq(true))
            .order_by_asc(routing_staff::Column::StaffId)
            .one(transaction)
            .await?;
        match manager {
            Some(manager) => {
                let subject = referral_changes::subject(&stored);
                referral_changes::open_work_item(
                    transaction,
                    &manager.staff_id,
                    WorkItemKind::FollowUp,
                    &stored,
                    format!("SLA breach: referral for {subject} not accepted"),
                    format!(
                        "{}. Held by {}; reassign it, or it moves on at the next breach.",
                        by.reason, stored.assigned_rm_id
                    ),
                    Some(stored.sla_due_at),
                    now,
                )
                .await?;
            }
            None => tracing::warn!(
                referral_id = %stored.referral_id,
                branch_id = %stored.branch_id,
                "SLA breach with no active branch manager to tell"
            ),
        }
        referral_changes::record_history(transaction, "escalated", from, &stored, by).await?;
        referral_changes::publish(transaction, REFERRAL_ESCALATED, &stored).await?;
        Ok(())
    }

    /// Second breach: the next candidate of the routing chain gets it.
    async fn reassign_on(
        &self,
        transaction: &sea_orm::DatabaseTransaction,
        current: referral::Model,
        by: &ChangedBy,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let holder = current.assigned_rm_id.clone();
        // Rolled back with the claim: a referral that can't be routed stays visible
        // to the next pass and in the logs, rather than silently consumed.
        let routed = self.route_past_holder(transaction, &current, now).await?;
        match routed {
            Some((decision, calendar)) if decision.chosen_rm_id != holder => {
                let by = ChangedBy {
                    actor_id: by.actor_id.clone(),
                    reason: format!("second SLA breach: {}", by.reason),
                };
                referral_changes::reassign(
                    transaction,
                    &self.sla,
                    &calendar,
                    current,
                    &decision.chosen_rm_id,
                    &by,
                    2,
                    now,
                )
                .await?;
            }
            // Nobody else to give it to: it stays, marked, with the manager told.
            _ => {
                let from = current.status;
                let mut row = current.into_active_model();
                row.updated_at = Set(now);
                let stored = row.update(transaction).await?;
                referral_changes::record_history(transaction, "escalated", from, &stored, by)
                    .await?;
            }
        }
        Ok(())
    }
}
