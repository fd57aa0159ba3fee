//! Work other services ask the RM queue for (`work_items.requested`): alerts from
//! the events service, campaign tasks, follow-ups. The queue's owner makes each
//! item once per (asking service, source key), gives it to the RM asked for or
//! routes it through the chain referrals use — the client's primary RM → the
//! least-loaded active RM of the client's home branch, counting open work items →
//! that branch's manager — and pushes it on the RM's stream. When its RM completes
//! it, `work_item.completed` goes back to the service that asked.
//!
//! A whole batch is one transaction: its items, their keys and their
//! announcements, written as one statement each. An item the chain can place
//! with nobody yet (a branch routing has not heard of) is kept unassigned, never
//! dropped, and listed by `crm jobs referral-sla`.

use std::collections::{HashMap, HashSet};

use crate::store::{routing_client, routing_staff, work_item, work_request};
use chrono::{DateTime, Utc};
use crm_bus::HandlerError;
use crm_domain::messages::{
    AssignedWorkItem, RequestedWorkItem, WORK_ITEM_COMPLETED, WORK_ITEMS_ASSIGNED,
    WorkItemCompleted, WorkItemsAssigned, WorkItemsRequested, WorkItemsWithdrawn,
};
use crm_domain::referral::{WorkItemKind, WorkItemState};
use crm_domain::routing::{Candidate, RoutingRequest, route};
use crm_domain::{BranchId, ClientId, Role, StaffId};
use crm_store::WriteBatch;
use crm_store::db::is_unique_violation;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter,
    QuerySelect, Set,
};

use crate::work_item_feed::announcement_row;

/// More items than this in one message is a sender's bug, not a batch.
pub const MAX_ITEMS_PER_MESSAGE: usize = 5_000;

/// Items written per statement: each costs ~32 bind parameters across its three
/// rows, and PostgreSQL takes at most 65,535 in one statement.
const ITEMS_PER_WRITE: usize = 500;

/// The work item's `source_id` for a requested item: the asking service's key,
/// under its name, so two services' keys never collide.
pub fn source_id(requested_by: &str, source_key: &str) -> String {
    format!("{requested_by}:{source_key}")
}

/// Why a requested item can't be made as it is: the message is dead-lettered
/// with this, naming the item, for the asking service's team to fix and replay.
fn check(item: &RequestedWorkItem) -> Result<(), String> {
    let key = &item.source_key;
    if key.is_empty() || key.len() > 200 || key.chars().any(char::is_control) {
        return Err(format!(
            "source key {key:?} must be 1 to 200 printable characters"
        ));
    }
    if item.kind == WorkItemKind::Referral {
        return Err(format!(
            "{key}: referrals are made by CreateReferral, not asked for"
        ));
    }
    if ClientId::parse(&item.client_id).is_err() {
        return Err(format!("{key}: client id {:?} is not one", item.client_id));
    }
    if item.title.trim().is_empty() || item.title.chars().count() > 200 {
        return Err(format!("{key}: title must be 1 to 200 characters"));
    }
    if item.detail.chars().count() > 4_000 {
        return Err(format!("{key}: detail must be at most 4,000 characters"));
    }
    if let Some(rm_id) = &item.rm_id
        && StaffId::parse(rm_id).is_err()
    {
        return Err(format!("{key}: rm id {rm_id:?} is not one"));
    }
    if let Some(branch_id) = &item.home_branch_id
        && BranchId::parse(branch_id).is_err()
    {
        return Err(format!("{key}: home branch {branch_id:?} is not one"));
    }
    Ok(())
}

/// A staff copy as routing weighs it for work items: by open work items, and
/// without the referral capacity (which caps referrals, not the queue).
fn candidate(row: &routing_staff::Model, open_items: i64) -> Option<Candidate> {
    Some(Candidate {
        staff_id: StaffId::parse(&row.staff_id).ok()?,
        role: row.role,
        branch_id: BranchId::parse(&row.branch_id).ok()?,
        active: row.active,
        capacity: i32::MAX,
        out_of_office_until: row.out_of_office_until,
        open_referrals: open_items,
        last_assigned_at: None,
    })
}

/// What routing knows for one batch: coverage of its clients, the staff it may
/// give items to, and each one's open items (kept current as the batch assigns).
struct Routing {
    coverage: HashMap<String, routing_client::Model>,
    staff: HashMap<String, routing_staff::Model>,
    open_items: HashMap<String, i64>,
}

impl Routing {
    async fn load(
        transaction: &DatabaseTransaction,
        items: &[&RequestedWorkItem],
    ) -> Result<Self, HandlerError> {
        let client_ids: HashSet<&str> = items.iter().map(|i| i.client_id.as_str()).collect();
        let coverage: HashMap<String, routing_client::Model> = routing_client::Entity::find()
            .filter(routing_client::Column::ClientId.is_in(client_ids))
            .all(transaction)
            .await?
            .into_iter()
            .map(|row| (row.client_id.clone(), row))
            .collect();
        let mut branches: HashSet<String> = HashSet::new();
        let mut named: HashSet<String> = HashSet::new();
        for item in items {
            let copy = coverage.get(&item.client_id);
            if let Some(branch) = item
                .home_branch_id
                .clone()
                .or_else(|| copy.map(|c| c.home_branch_id.clone()))
            {
                branches.insert(branch);
            }
            named.extend(item.rm_id.clone());
            named.extend(copy.and_then(|c| c.primary_rm_id.clone()));
        }
        let staff: HashMap<String, routing_staff::Model> = routing_staff::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(
                        sea_orm::Condition::all()
                            .add(routing_staff::Column::BranchId.is_in(branches))
                            .add(
                                routing_staff::Column::Role.is_in([Role::Rm, Role::BranchManager]),
                            ),
                    )
                    .add(routing_staff::Column::StaffId.is_in(named)),
            )
            .all(transaction)
            .await?
            .into_iter()
            .map(|row| (row.staff_id.clone(), row))
            .collect();
        let open_items: HashMap<String, i64> = work_item::Entity::find()
            .select_only()
            .column(work_item::Column::RmId)
            .column_as(Expr::col(work_item::Column::WorkItemId).count(), "open")
            .filter(work_item::Column::RmId.is_in(staff.keys().map(String::as_str)))
            .filter(work_item::Column::State.ne(WorkItemState::Done.as_str()))
            .group_by(work_item::Column::RmId)
            .into_tuple::<(String, i64)>()
            .all(transaction)
            .await?
            .into_iter()
            .collect();
        Ok(Self {
            coverage,
            staff,
            open_items,
        })
    }

    fn weighed(&self, staff_id: &str) -> Option<Candidate> {
        let row = self.staff.get(staff_id)?;
        candidate(row, self.open_items.get(staff_id).copied().unwrap_or(0))
    }

    /// Who gets `item`, and why; `None` when the chain has nobody yet.
    fn choose(&mut self, item: &RequestedWorkItem, now: DateTime<Utc>) -> (Option<String>, String) {
        let copy = self.coverage.get(&item.client_id);
        let home_branch = item
            .home_branch_id
            .clone()
            .or_else(|| copy.map(|c| c.home_branch_id.clone()));
        let asked_for = item.rm_id.as_ref().and_then(|rm_id| self.weighed(rm_id));
        let chosen = match asked_for {
            Some(rm) if rm.active => {
                Some((rm.staff_id.to_string(), "asked for by name".to_owned()))
            }
            _ => {
                let primary = copy
                    .and_then(|c| c.primary_rm_id.as_deref())
                    .and_then(|id| self.weighed(id));
                let branch = home_branch.as_deref().and_then(|b| BranchId::parse(b).ok());
                match branch {
                    Some(branch_id) => {
                        let pool: Vec<Candidate> = self
                            .staff
                            .values()
                            .filter(|row| row.branch_id == branch_id.as_str())
                            .filter_map(|row| self.weighed(&row.staff_id))
                            .collect();
                        route(&RoutingRequest {
                            branch_id: &branch_id,
                            teller_id: None,
                            primary_rm: primary.as_ref(),
                            paired_rm: None,
                            branch_staff: &pool,
                            now,
                        })
                        .ok()
                        .map(|decision| (decision.chosen_rm_id, decision.reason))
                    }
                    // No branch to fall back on: the primary RM, if at work.
                    None => primary
                        .filter(|rm| {
                            rm.active && rm.out_of_office_until.is_none_or(|until| until <= now)
                        })
                        .map(|rm| (rm.staff_id.to_string(), "primary RM of client".to_owned())),
                }
            }
        };
        match chosen {
            Some((rm_id, reason)) => {
                *self.open_items.entry(rm_id.clone()).or_default() += 1;
                (Some(rm_id), reason)
            }
            None => (
                None,
                format!(
                    "waiting for routing: nobody routing knows of can take it at branch {}",
                    home_branch.as_deref().unwrap_or("(unknown)")
                ),
            ),
        }
    }
}

/// Makes the items of `request` its asker does not have yet; how many were made.
pub async fn create_requested(
    transaction: &DatabaseTransaction,
    request: WorkItemsRequested,
    now: DateTime<Utc>,
) -> Result<usize, HandlerError> {
    if request.requested_by.is_empty() || request.requested_by.len() > 50 {
        return Err(HandlerError::Poison(
            "requested_by must name the asking service".into(),
        ));
    }
    if request.items.len() > MAX_ITEMS_PER_MESSAGE {
        return Err(HandlerError::Poison(format!(
            "{} items in one message; at most {MAX_ITEMS_PER_MESSAGE}",
            request.items.len()
        )));
    }
    for item in &request.items {
        check(item).map_err(HandlerError::Poison)?;
    }
    let keys: Vec<&str> = request
        .items
        .iter()
        .map(|i| i.source_key.as_str())
        .collect();
    let made: HashSet<String> = work_request::Entity::find()
        .select_only()
        .column(work_request::Column::SourceKey)
        .filter(work_request::Column::RequestedBy.eq(request.requested_by.as_str()))
        .filter(work_request::Column::SourceKey.is_in(keys))
        .into_tuple::<String>()
        .all(transaction)
        .await?
        .into_iter()
        .collect();
    let mut seen = HashSet::new();
    let new: Vec<&RequestedWorkItem> = request
        .items
        .iter()
        .filter(|item| !made.contains(&item.source_key) && seen.insert(item.source_key.as_str()))
        .collect();
    if new.is_empty() {
        return Ok(0);
    }
    let mut routing = Routing::load(transaction, &new).await?;
    let mut items = Vec::with_capacity(new.len());
    let mut requests = Vec::with_capacity(new.len());
    let mut announcements = Vec::with_capacity(new.len());
    let mut assigned = Vec::with_capacity(new.len());
    for asked in new {
        let (rm_id, reason) = routing.choose(asked, now);
        let detail = if asked.detail.is_empty() {
            format!("(routing: {reason})")
        } else {
            format!("{} (routing: {reason})", asked.detail)
        };
        let item = work_item::Model {
            work_item_id: uuid::Uuid::now_v7().to_string(),
            rm_id: rm_id.clone().unwrap_or_default(),
            kind: asked.kind,
            client_id: Some(asked.client_id.clone()),
            title: asked.title.trim().to_owned(),
            detail,
            priority: asked.priority,
            due_at: asked.due_at,
            state: WorkItemState::Open,
            source_id: source_id(&request.requested_by, &asked.source_key),
            acked_at: None,
            snoozed_until: None,
            outcome: None,
            funds_outcome: None,
            funds_kept_minor: None,
            funds_kept_currency: None,
            task_outcome: None,
            converted_product: None,
            converted_minor: None,
            converted_currency: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        if rm_id.is_some() {
            announcements
                .push(announcement_row(&item).map_err(|e| HandlerError::Failed(e.to_string()))?);
        } else {
            tracing::warn!(source_key = %asked.source_key, requested_by = %request.requested_by, "requested work item waits for routing");
        }
        assigned.push(AssignedWorkItem {
            source_key: asked.source_key.clone(),
            work_item_id: item.work_item_id.clone(),
            rm_id: item.rm_id.clone(),
        });
        requests.push(
            work_request::Model {
                requested_by: request.requested_by.clone(),
                source_key: asked.source_key.clone(),
                work_item_id: item.work_item_id.clone(),
                created_at: now,
            }
            .into_active_model(),
        );
        items.push(item.into_active_model());
    }
    let count = items.len();
    // The asking service learns who got each item (one message for the batch).
    let assigned_row = crm_bus::outbox::event_row(
        crate::SERVICE,
        WORK_ITEMS_ASSIGNED,
        WORK_ITEMS_ASSIGNED,
        &WorkItemsAssigned {
            requested_by: request.requested_by.clone(),
            items: assigned,
        },
    )
    .map_err(|e| HandlerError::Failed(e.to_string()))?;
    let mut requests = requests.into_iter();
    let mut items = items.into_iter();
    let mut announcements = announcements.into_iter();
    loop {
        let mut writes = WriteBatch::new();
        writes
            .insert_many(requests.by_ref().take(ITEMS_PER_WRITE))
            .insert_many(items.by_ref().take(ITEMS_PER_WRITE))
            .insert_many(announcements.by_ref().take(ITEMS_PER_WRITE));
        if writes.is_empty() {
            break;
        }
        match writes.execute(transaction).await {
            Ok(()) => {}
            // Another replica made some of them meanwhile: again, and they are
            // skipped (the keys it made are read first).
            Err(error) if is_unique_violation(&error) => {
                return Err(HandlerError::Transient(format!(
                    "a requested item was made concurrently: {error}"
                )));
            }
            Err(error) => return Err(error.into()),
        }
    }
    let mut writes = WriteBatch::new();
    writes.insert(assigned_row);
    writes.execute(transaction).await?;
    Ok(count)
}

/// Closes the items a service withdraws (a cancelled campaign's tasks) that are
/// still open or snoozed, each with the reason, and puts each change on its RM's
/// stream; items already done stay as their RM left them. How many it closed.
pub async fn withdraw_requested(
    transaction: &DatabaseTransaction,
    withdrawn: WorkItemsWithdrawn,
    now: DateTime<Utc>,
) -> Result<usize, HandlerError> {
    if withdrawn.source_keys.len() > MAX_ITEMS_PER_MESSAGE {
        return Err(HandlerError::Poison(format!(
            "{} keys in one withdrawal; at most {MAX_ITEMS_PER_MESSAGE}",
            withdrawn.source_keys.len()
        )));
    }
    if let Some(bad) = withdrawn
        .source_keys
        .iter()
        .find(|key| key.is_empty() || key.len() > 200 || key.chars().any(char::is_control))
    {
        return Err(HandlerError::Poison(format!(
            "source key {bad:?} must be 1 to 200 printable characters"
        )));
    }
    let reason = withdrawn.reason.trim();
    let outcome = if reason.is_empty() {
        "withdrawn".to_owned()
    } else {
        format!(
            "withdrawn: {}",
            reason.chars().take(180).collect::<String>()
        )
    };
    let mut closed = 0;
    for keys in withdrawn.source_keys.chunks(ITEMS_PER_WRITE) {
        // A key not asked for yet (its request is still on its way, or being
        // retried) is taken now with no item, so a request arriving later makes
        // nothing. Taken first: a request being made meanwhile commits before
        // this statement returns, and its item is found and closed below.
        let never_made = keys.iter().map(|key| work_request::ActiveModel {
            requested_by: Set(withdrawn.requested_by.clone()),
            source_key: Set(key.clone()),
            work_item_id: Set(String::new()),
            created_at: Set(now),
        });
        work_request::Entity::insert_many(never_made)
            .on_conflict(
                OnConflict::columns([
                    work_request::Column::RequestedBy,
                    work_request::Column::SourceKey,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(transaction)
            .await
            .or_else(|error| match error {
                sea_orm::DbErr::RecordNotInserted => Ok(0),
                error => Err(error),
            })?;
        let source_ids: Vec<String> = keys
            .iter()
            .map(|key| source_id(&withdrawn.requested_by, key))
            .collect();
        let open = work_item::Entity::find()
            .filter(work_item::Column::SourceId.is_in(source_ids))
            .filter(work_item::Column::State.ne(WorkItemState::Done))
            .lock_exclusive()
            .all(transaction)
            .await?;
        if open.is_empty() {
            continue;
        }
        work_item::Entity::update_many()
            .col_expr(work_item::Column::State, Expr::value(WorkItemState::Done))
            .col_expr(work_item::Column::Outcome, Expr::value(outcome.clone()))
            .col_expr(
                work_item::Column::SnoozedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                work_item::Column::Version,
                Expr::col(work_item::Column::Version).add(1),
            )
            .col_expr(work_item::Column::UpdatedAt, Expr::value(now))
            .filter(
                work_item::Column::WorkItemId
                    .is_in(open.iter().map(|item| item.work_item_id.clone())),
            )
            .exec(transaction)
            .await?;
        let mut announcements = Vec::with_capacity(open.len());
        for mut item in open {
            item.state = WorkItemState::Done;
            item.outcome = Some(outcome.clone());
            item.snoozed_until = None;
            item.version += 1;
            item.updated_at = now;
            if !item.rm_id.is_empty() {
                announcements.push(
                    announcement_row(&item).map_err(|e| HandlerError::Failed(e.to_string()))?,
                );
            }
            closed += 1;
        }
        let mut writes = WriteBatch::new();
        writes.insert_many(announcements);
        writes.execute(transaction).await?;
    }
    Ok(closed)
}

/// Tells the asking service its item was completed, in the completing
/// transaction; nothing for items nobody asked for (referrals' own).
pub async fn report_completion(
    connection: &impl ConnectionTrait,
    completed: &work_item::Model,
) -> crate::error::Result<()> {
    let Some(request) = work_request::Entity::find()
        .filter(work_request::Column::WorkItemId.eq(completed.work_item_id.as_str()))
        .one(connection)
        .await?
    else {
        return Ok(());
    };
    let message = WorkItemCompleted {
        requested_by: request.requested_by,
        source_key: request.source_key,
        work_item_id: completed.work_item_id.clone(),
        rm_id: completed.rm_id.clone(),
        outcome: completed.outcome.clone().unwrap_or_default(),
        completed_at: completed.updated_at,
        funds_outcome: completed.funds_outcome,
        funds_kept_minor: completed.funds_kept_minor,
        funds_kept_currency: completed.funds_kept_currency.clone(),
        task_outcome: completed.task_outcome,
        converted_product: completed.converted_product.clone(),
        converted_minor: completed.converted_minor,
        converted_currency: completed.converted_currency.clone(),
        client_id: completed.client_id.clone(),
    };
    crm_bus::outbox::enqueue_event(
        connection,
        crate::SERVICE,
        WORK_ITEM_COMPLETED,
        WORK_ITEM_COMPLETED,
        &message,
    )
    .await?;
    Ok(())
}

/// Items made for nobody (the chain had no one when they were asked for), routed
/// now where it has someone; how many. Run by each SLA pass.
pub async fn route_unassigned(
    db: &crm_store::Db,
    now: DateTime<Utc>,
) -> crate::error::Result<usize> {
    use sea_orm::TransactionTrait;
    let transaction = db.begin().await?;
    let waiting = work_item::Entity::find()
        .filter(work_item::Column::RmId.eq(""))
        .filter(work_item::Column::State.ne(WorkItemState::Done.as_str()))
        .limit(500)
        .lock_exclusive()
        .all(&transaction)
        .await?;
    if waiting.is_empty() {
        transaction.rollback().await?;
        return Ok(0);
    }
    let asked: Vec<RequestedWorkItem> = waiting
        .iter()
        .map(|item| RequestedWorkItem {
            source_key: item.source_id.clone(),
            // (the asker's own key; not read by routing)
            kind: item.kind,
            client_id: item.client_id.clone().unwrap_or_default(),
            title: item.title.clone(),
            detail: String::new(),
            priority: item.priority,
            due_at: item.due_at,
            rm_id: None,
            home_branch_id: None,
        })
        .collect();
    let refs: Vec<&RequestedWorkItem> = asked.iter().collect();
    let mut routing = Routing::load(&transaction, &refs)
        .await
        .map_err(|error| crate::error::ReferralsError::Corrupt(error.to_string()))?;
    let mut routed = 0;
    for (item, asked) in waiting.into_iter().zip(&asked) {
        let (Some(rm_id), reason) = routing.choose(asked, now) else {
            continue;
        };
        let version = item.version;
        let detail = format!("{} (routed after waiting: {reason})", item.detail);
        let mut row = item.into_active_model();
        row.rm_id = sea_orm::ActiveValue::Set(rm_id);
        row.detail = sea_orm::ActiveValue::Set(detail);
        row.version = sea_orm::ActiveValue::Set(version + 1);
        row.updated_at = sea_orm::ActiveValue::Set(now);
        let stored = sea_orm::ActiveModelTrait::update(row, &transaction).await?;
        crate::work_item_feed::announce(&transaction, &stored).await?;
        if let Some(request) = work_request::Entity::find()
            .filter(work_request::Column::WorkItemId.eq(stored.work_item_id.as_str()))
            .one(&transaction)
            .await?
        {
            crm_bus::outbox::enqueue_event(
                &transaction,
                crate::SERVICE,
                WORK_ITEMS_ASSIGNED,
                WORK_ITEMS_ASSIGNED,
                &WorkItemsAssigned {
                    requested_by: request.requested_by,
                    items: vec![AssignedWorkItem {
                        source_key: request.source_key,
                        work_item_id: stored.work_item_id.clone(),
                        rm_id: stored.rm_id.clone(),
                    }],
                },
            )
            .await?;
        }
        routed += 1;
    }
    transaction.commit().await?;
    Ok(routed)
}

/// Work items nobody could be given yet.
pub async fn unassigned_count(db: &crm_store::Db) -> crate::error::Result<u64> {
    use sea_orm::PaginatorTrait;
    Ok(work_item::Entity::find()
        .filter(work_item::Column::RmId.eq(""))
        .filter(work_item::Column::State.ne(WorkItemState::Done.as_str()))
        .count(db)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_domain::referral::Priority;

    fn item() -> RequestedWorkItem {
        RequestedWorkItem {
            source_key: "alert:1".into(),
            kind: WorkItemKind::Alert,
            client_id: "C-000001".into(),
            title: "Large transfer out".into(),
            detail: String::new(),
            priority: Priority::Urgent,
            due_at: None,
            rm_id: None,
            home_branch_id: None,
        }
    }

    #[test]
    fn a_bad_item_is_refused_naming_its_key() {
        assert_eq!(check(&item()), Ok(()));
        let cases: Vec<(&str, RequestedWorkItem)> = vec![
            (
                "source key",
                RequestedWorkItem {
                    source_key: String::new(),
                    ..item()
                },
            ),
            (
                "source key",
                RequestedWorkItem {
                    source_key: "k\u{0}".into(),
                    ..item()
                },
            ),
            (
                "referrals",
                RequestedWorkItem {
                    kind: WorkItemKind::Referral,
                    ..item()
                },
            ),
            (
                "client id",
                RequestedWorkItem {
                    client_id: "x y".into(),
                    ..item()
                },
            ),
            (
                "title",
                RequestedWorkItem {
                    title: " ".into(),
                    ..item()
                },
            ),
            (
                "detail",
                RequestedWorkItem {
                    detail: "d".repeat(4_001),
                    ..item()
                },
            ),
            (
                "rm id",
                RequestedWorkItem {
                    rm_id: Some("?".into()),
                    ..item()
                },
            ),
            (
                "home branch",
                RequestedWorkItem {
                    home_branch_id: Some("".into()),
                    ..item()
                },
            ),
        ];
        for (what, bad) in cases {
            let Err(reason) = check(&bad) else {
                panic!("{what}: accepted")
            };
            assert!(reason.contains(what), "{what}: {reason}");
        }
    }
}
