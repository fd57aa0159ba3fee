//! What every change of a referral does, in the caller's transaction: the row, a
//! line of history, an event, and the RM work items that follow it (closed for the
//! RM who no longer holds it, opened for the one who now does — each saying why).
//! The RPCs and the SLA job share these, so a reassignment by a manager and one by
//! the job look the same to the RMs and in the history.

use crate::store::{referral, referral_history, routing_staff, work_item};
use chrono::{DateTime, Utc};
use crm_domain::messages::{REFERRAL_ASSIGNED, REFERRAL_REASSIGNED, ReferralEvent};
use crm_domain::referral::{ReferralStatus, WorkItemKind, WorkItemState};
use crm_domain::routing::RoutingDecision;
use crm_domain::sla::{BusinessCalendar, SlaPolicy, acceptance_deadline};
use crm_store::bus::outbox;
use sea_orm::sea_query::{Expr, ExprTrait, UpdateStatement};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, QuerySelect, QueryTrait,
};

use crate::SERVICE;
use crate::error::{ReferralsError, Result};
use crate::referral_wire::referral_event;
use crate::work_item_feed::announce;

/// Who changed a referral: a staff member, or a scheduled job (`system:<job>`).
#[derive(Debug, Clone)]
pub struct ChangedBy {
    pub actor_id: String,
    pub reason: String,
}

/// Who a referral is about, as work items name them: the client, or the walk-in.
pub fn subject(model: &referral::Model) -> String {
    match (&model.client_id, &model.prospect_name) {
        (Some(client_id), _) => client_id.clone(),
        (None, Some(name)) => format!("walk-in {name}"),
        (None, None) => String::new(),
    }
}

/// The title of the work item a referral opens in its holder's queue.
pub fn work_item_title(stored: &referral::Model) -> String {
    let need = stored.need.as_str().replace('_', " ");
    match (&stored.client_id, &stored.prospect_name) {
        (Some(client_id), _) => format!("Referral: {need} for client {client_id}"),
        (None, Some(name)) => format!("Referral: {need} for walk-in {name}"),
        (None, None) => format!("Referral: {need}"),
    }
}

/// One line of the referral's history: `by` moved it from `from` to where it is now.
pub fn history_row(
    action: &str,
    from: ReferralStatus,
    stored: &referral::Model,
    by: &ChangedBy,
) -> referral_history::ActiveModel {
    referral_history::ActiveModel {
        history_id: Set(uuid::Uuid::now_v7().to_string()),
        referral_id: Set(stored.referral_id.clone()),
        action: Set(action.to_owned()),
        from_status: Set(from),
        to_status: Set(stored.status),
        actor_id: Set(by.actor_id.clone()),
        rm_id: Set(stored.assigned_rm_id.clone()),
        reason: Set(by.reason.clone()),
        occurred_at: Set(stored.updated_at),
    }
}

/// Appends one line to the referral's history.
pub async fn record_history(
    connection: &impl ConnectionTrait,
    action: &str,
    from: ReferralStatus,
    stored: &referral::Model,
    by: &ChangedBy,
) -> Result<()> {
    history_row(action, from, stored, by)
        .insert(connection)
        .await?;
    Ok(())
}

/// The outbox row that publishes `message_type` with the referral's current state.
pub fn event_row(message_type: &str, stored: &referral::Model) -> Result<outbox::ActiveModel> {
    let event: ReferralEvent = referral_event(stored);
    Ok(crm_bus::outbox::event_row(
        SERVICE,
        message_type,
        message_type,
        &event,
    )?)
}

/// Publishes `message_type` with the referral's current state.
pub async fn publish(
    connection: &impl ConnectionTrait,
    message_type: &str,
    stored: &referral::Model,
) -> Result<()> {
    outbox::Entity::insert(event_row(message_type, stored)?)
        .exec_without_returning(connection)
        .await?;
    Ok(())
}

/// Changes `staff_id`'s count of open referrals by `delta` (and, when one is
/// given to them, when they last got one: ties in the pool go to the longest idle).
pub fn load_change(
    staff_id: &str,
    delta: i32,
    assigned_at: Option<DateTime<Utc>>,
) -> UpdateStatement {
    let mut update = routing_staff::Entity::update_many()
        .col_expr(
            routing_staff::Column::OpenReferrals,
            Expr::col(routing_staff::Column::OpenReferrals).add(delta),
        )
        .filter(routing_staff::Column::StaffId.eq(staff_id));
    if let Some(at) = assigned_at {
        update = update.col_expr(routing_staff::Column::LastAssignedAt, Expr::value(Some(at)));
    }
    update.into_query()
}

/// [`load_change`], now, in the caller's transaction.
pub async fn adjust_load(
    connection: &impl ConnectionTrait,
    staff_id: &str,
    delta: i32,
    assigned_at: Option<DateTime<Utc>>,
) -> Result<()> {
    connection
        .execute(&load_change(staff_id, delta, assigned_at))
        .await?;
    Ok(())
}

/// Closes the open work items of `referral_id` — those held by `rm_id`, or
/// everyone's — with `outcome`.
pub async fn close_work_items(
    connection: &impl ConnectionTrait,
    referral_id: &str,
    rm_id: Option<&str>,
    outcome: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut open = work_item::Entity::find()
        .filter(work_item::Column::SourceId.eq(referral_id))
        .filter(work_item::Column::State.ne(WorkItemState::Done.as_str()));
    if let Some(rm_id) = rm_id {
        open = open.filter(work_item::Column::RmId.eq(rm_id));
    }
    // Locked: the snooze job and the RM's own changes write the same items, and
    // each version must be announced once.
    let open = open.lock_exclusive().all(connection).await?;
    for item in open {
        let version = item.version;
        let mut row = item.into_active_model();
        row.state = Set(WorkItemState::Done);
        row.outcome = Set(Some(outcome.to_owned()));
        row.version = Set(version + 1);
        row.updated_at = Set(now);
        let stored = row.update(connection).await?;
        announce(connection, &stored).await?;
    }
    Ok(())
}

/// Opens a work item in `rm_id`'s queue.
#[allow(clippy::too_many_arguments)] // one item's fields, named at the call
pub async fn open_work_item(
    connection: &impl ConnectionTrait,
    rm_id: &str,
    kind: WorkItemKind,
    stored: &referral::Model,
    title: String,
    detail: String,
    due_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<work_item::Model> {
    let item = work_item::ActiveModel {
        work_item_id: Set(uuid::Uuid::now_v7().to_string()),
        rm_id: Set(rm_id.to_owned()),
        kind: Set(kind),
        client_id: Set(stored.client_id.clone()),
        title: Set(title),
        detail: Set(detail),
        priority: Set(stored.priority),
        due_at: Set(due_at),
        state: Set(WorkItemState::Open),
        source_id: Set(stored.referral_id.clone()),
        acked_at: Set(None),
        snoozed_until: Set(None),
        outcome: Set(None),
        funds_outcome: Set(None),
        funds_kept_minor: Set(None),
        funds_kept_currency: Set(None),
        task_outcome: Set(None),
        converted_product: Set(None),
        converted_minor: Set(None),
        converted_currency: Set(None),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(connection)
    .await?;
    announce(connection, &item).await?;
    Ok(item)
}

/// Moves an open referral to `new_rm`: the old RM's item closes saying where it
/// went and why, the new RM's item opens saying where it came from and why, the
/// acceptance clock starts again. `escalation_level` is what the referral holds
/// afterwards.
#[allow(clippy::too_many_arguments)] // the change and its context, named at the call
pub async fn reassign(
    connection: &impl ConnectionTrait,
    sla: &SlaPolicy,
    calendar: &BusinessCalendar,
    current: referral::Model,
    new_rm: &str,
    by: &ChangedBy,
    escalation_level: i32,
    now: DateTime<Utc>,
) -> Result<referral::Model> {
    let status = current.status;
    crm_domain::referral::reassign(status)?;
    if current.assigned_rm_id == new_rm {
        return Err(ReferralsError::FailedPrecondition(format!(
            "referral is already held by {new_rm}"
        )));
    }
    let old_rm = current.assigned_rm_id.clone();
    let priority = current.priority;
    let sla_due_at = acceptance_deadline(sla, calendar, priority, now);
    let from = current.status;
    let mut row = current.into_active_model();
    row.assigned_rm_id = Set(new_rm.to_owned());
    row.status = Set(ReferralStatus::Assigned);
    row.routing_reason = Set(format!("reassigned from {old_rm}: {}", by.reason));
    row.accepted_at = Set(None);
    row.assigned_at = Set(now);
    row.sla_due_at = Set(sla_due_at);
    row.sla_stopped_at = Set(None);
    row.escalation_level = Set(escalation_level);
    row.updated_at = Set(now);
    let stored = row.update(connection).await?;
    close_work_items(
        connection,
        &stored.referral_id,
        Some(&old_rm),
        &format!("reassigned to {new_rm} by {}: {}", by.actor_id, by.reason),
        now,
    )
    .await?;
    let title = format!(
        "Referral (reassigned): {} — {}",
        stored.need.as_str().replace('_', " "),
        subject(&stored)
    );
    let detail = format!(
        "Reassigned from {old_rm} by {}: {}. {}",
        by.actor_id, by.reason, stored.note
    );
    open_work_item(
        connection,
        new_rm,
        WorkItemKind::Referral,
        &stored,
        title,
        detail,
        Some(sla_due_at),
        now,
    )
    .await?;
    adjust_load(connection, &old_rm, -1, None).await?;
    adjust_load(connection, new_rm, 1, Some(now)).await?;
    record_history(connection, "reassigned", from, &stored, by).await?;
    publish(connection, REFERRAL_REASSIGNED, &stored).await?;
    Ok(stored)
}

/// Gives a referral that waited for routing (NEW, held by nobody) to the RM the
/// chain chose now: the item opens in their queue, the acceptance clock starts
/// from now (nobody could accept it before), and `referral.assigned` goes out as
/// for a referral routed when it was made.
pub async fn route_waiting(
    connection: &impl ConnectionTrait,
    sla: &SlaPolicy,
    calendar: &BusinessCalendar,
    current: referral::Model,
    decision: &RoutingDecision,
    now: DateTime<Utc>,
) -> Result<referral::Model> {
    let from = current.status;
    crm_domain::referral::reassign(from)?;
    let waited = Ord::max((now - current.created_at).num_milliseconds(), 0);
    let rm_id = decision.chosen_rm_id.clone();
    let sla_due_at = acceptance_deadline(sla, calendar, current.priority, now);
    let mut row = current.into_active_model();
    row.status = Set(ReferralStatus::Assigned);
    row.assigned_rm_id = Set(rm_id.clone());
    row.routing_reason = Set(decision.reason.clone());
    row.routing_decision = Set(serde_json::to_string(decision)?);
    row.escalated = Set(decision.escalated);
    row.assigned_at = Set(now);
    row.sla_due_at = Set(sla_due_at);
    row.updated_at = Set(now);
    let stored = row.update(connection).await?;
    let detail = format!(
        "{} (routing: {}; waited {waited} ms for routing)",
        stored.note, decision.reason
    );
    open_work_item(
        connection,
        &rm_id,
        WorkItemKind::Referral,
        &stored,
        work_item_title(&stored),
        detail,
        Some(sla_due_at),
        now,
    )
    .await?;
    adjust_load(connection, &rm_id, 1, Some(now)).await?;
    let by = ChangedBy {
        actor_id: crate::waiting::ACTOR.to_owned(),
        reason: format!("{} after waiting {waited} ms", decision.reason),
    };
    record_history(connection, "routed", from, &stored, &by).await?;
    publish(connection, REFERRAL_ASSIGNED, &stored).await?;
    Ok(stored)
}
