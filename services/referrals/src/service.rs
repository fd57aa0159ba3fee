//! The ReferralService RPCs: scope checks and wiring; the work is in the modules.

use std::sync::Arc;

use crate::store::{referral, referral_history, routing_staff, work_item};
use chrono::Utc;
use crm_auth::{Principal, principal_of};
use crm_domain::messages::REFERRAL_ACCEPTED;
use crm_domain::referral::{ReferralStatus, WorkItemKind, WorkItemState, accept};
use crm_domain::validation::check_text;
use crm_domain::{BranchId, Role, StaffId, Violations};
use crm_grpc::{WireEnum, wire};
use crm_proto::v1::{self as pb, referral_service_server::ReferralService};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::{ReferralsError, Result};
use crate::lifecycle::{self, ChangedBy};
use crate::referral_wire::{change_to_proto, duplicate_summary, referral_event, to_proto};
use crate::work_items::announce;
use crate::{ReferralsState, SERVICE, create, watch};

/// What WatchWorkItems streams to the RM mobile backend.
pub type WorkItemStream = ReceiverStream<Result<pb::WatchWorkItemsResponse, Status>>;

pub struct Referrals {
    pub(crate) state: Arc<ReferralsState>,
}

impl Referrals {
    pub fn new(state: Arc<ReferralsState>) -> Self {
        Self { state }
    }
}

pub(crate) fn parse_uuid(violations: &mut Violations, field: &str, value: &str) -> Option<String> {
    violations
        .check(field, crm_domain::ids::parse_uuid(value))
        .map(|id| id.to_string())
}

/// API.md: a teller reads own referrals, an RM those assigned to them, a manager
/// those of their branch, the system all.
fn may_read_referral(principal: &Principal, model: &referral::Model) -> bool {
    match principal.role {
        Role::System => true,
        Role::Teller => model.referrer_id == principal.staff_id.as_str(),
        Role::Rm => model.assigned_rm_id == principal.staff_id.as_str(),
        Role::BranchManager => model.branch_id == principal.branch_id.as_str(),
        Role::CampaignAdmin => false,
    }
}

/// The referral, locked for the rest of the caller's transaction (PostgreSQL; on
/// SQLite the single connection already serialises writers): every change reads,
/// checks the state machine, then writes — two at once must not both pass.
pub(crate) async fn find_referral_for_update(
    transaction: &impl ConnectionTrait,
    referral_id: &str,
) -> Result<referral::Model> {
    referral::Entity::find_by_id(referral_id)
        .lock_exclusive()
        .one(transaction)
        .await?
        .ok_or_else(|| ReferralsError::NotFound(format!("referral {referral_id}")))
}

pub(crate) async fn find_referral(
    db: &impl ConnectionTrait,
    referral_id: &str,
) -> Result<referral::Model> {
    referral::Entity::find_by_id(referral_id)
        .one(db)
        .await?
        .ok_or_else(|| ReferralsError::NotFound(format!("referral {referral_id}")))
}

/// Whose queue a caller may read: their own, or (a manager) an RM of their branch.
async fn queue_owner(
    state: &ReferralsState,
    principal: &Principal,
    requested: &str,
) -> Result<StaffId> {
    let mut violations = Violations::new();
    let requested = violations
        .check("rm_id", StaffId::parse_optional(requested))
        .flatten();
    if !violations.is_empty() {
        return Err(violations.into());
    }
    let Some(requested) = requested.filter(|id| id != &principal.staff_id) else {
        return match principal.role {
            Role::Rm | Role::BranchManager => Ok(principal.staff_id.clone()),
            role => Err(ReferralsError::PermissionDenied(format!(
                "role {role} has no work queue"
            ))),
        };
    };
    match principal.role {
        Role::System => Ok(requested),
        Role::BranchManager => {
            let member = routing_staff::Entity::find_by_id(requested.as_str())
                .one(&state.db)
                .await?;
            match member {
                Some(member) if member.branch_id == principal.branch_id.as_str() => Ok(requested),
                _ => Err(ReferralsError::PermissionDenied(
                    "RM of another branch".into(),
                )),
            }
        }
        _ => Err(ReferralsError::PermissionDenied(
            "may read own queue only".into(),
        )),
    }
}

/// A work item the caller may change: their own (or, for a manager, their branch's).
async fn own_work_item(
    state: &ReferralsState,
    principal: &Principal,
    work_item_id: &str,
) -> Result<work_item::Model> {
    let mut violations = Violations::new();
    let id = parse_uuid(&mut violations, "work_item_id", work_item_id);
    let id = violations.finish(|| id)?;
    let item = work_item::Entity::find_by_id(id.as_str())
        .one(&state.db)
        .await?
        .ok_or_else(|| ReferralsError::NotFound(format!("work item {id}")))?;
    if item.rm_id == principal.staff_id.as_str() {
        return Ok(item);
    }
    queue_owner(state, principal, &item.rm_id).await?;
    Ok(item)
}

/// Saves a changed work item with its version bumped and announces it — if it is
/// still the version the caller read. A job or another device may have changed
/// it meanwhile (closed it, brought it back from a snooze): then the caller is
/// told to read it again rather than overwrite that change.
async fn save_work_item(
    state: &ReferralsState,
    item: work_item::Model,
    change: impl FnOnce(&mut work_item::ActiveModel),
) -> Result<work_item::Model> {
    let transaction = state.db.begin().await?;
    let version = item.version;
    let work_item_id = item.work_item_id.clone();
    let mut row = item.into_active_model();
    change(&mut row);
    row.version = Set(version + 1);
    row.updated_at = Set(Utc::now());
    let stored = match work_item::Entity::update(row)
        .validate()?
        .filter(work_item::Column::Version.eq(version))
        .exec(&transaction)
        .await
    {
        Ok(stored) => stored,
        Err(sea_orm::DbErr::RecordNotUpdated) => {
            transaction.rollback().await?;
            return Err(ReferralsError::Aborted(format!(
                "work item {work_item_id} changed meanwhile; read it again"
            )));
        }
        Err(error) => return Err(error.into()),
    };
    announce(&transaction, &stored).await?;
    transaction.commit().await?;
    state.outbox.wake();
    Ok(stored)
}

/// The RPC handlers, in the crate's own error type so `?` reads plainly.
impl Referrals {
    #[tracing::instrument(skip_all, fields(referrer_id))]
    async fn handle_create_referral(
        &self,
        request: Request<pb::CreateReferralRequest>,
    ) -> Result<Response<pb::CreateReferralResponse>> {
        let principal = principal_of(&request)?;
        tracing::Span::current().record("referrer_id", principal.staff_id.as_str());
        let created = create::create_referral(&self.state, &principal, request.get_ref()).await?;
        let response = match created {
            create::Created::New(stored) => pb::CreateReferralResponse {
                referral: Some(to_proto(stored, &principal, &self.state.vault)?),
                duplicate_held_by: String::new(),
            },
            // The open referral for the same thing, whole if the caller may read
            // it, otherwise only that it exists and who holds it.
            create::Created::Duplicate(existing) => {
                let held_by = existing.assigned_rm_id.clone();
                let referral = if may_read_referral(&principal, &existing) {
                    let id = existing.referral_id.clone();
                    pb::Referral {
                        duplicate_of: id,
                        ..to_proto(existing, &principal, &self.state.vault)?
                    }
                } else {
                    duplicate_summary(&existing)
                };
                pb::CreateReferralResponse {
                    referral: Some(referral),
                    duplicate_held_by: held_by,
                }
            }
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn handle_get_referral(
        &self,
        request: Request<pb::GetReferralRequest>,
    ) -> Result<Response<pb::GetReferralResponse>> {
        let principal = principal_of(&request)?;
        let mut violations = Violations::new();
        let id = parse_uuid(
            &mut violations,
            "referral_id",
            &request.get_ref().referral_id,
        );
        let id = violations.finish(|| id)?;
        let stored = find_referral(&self.state.db, &id).await?;
        if !may_read_referral(&principal, &stored) {
            return Err(ReferralsError::PermissionDenied(
                "referral is outside your scope".into(),
            ));
        }
        let history = referral_history::Entity::find()
            .filter(referral_history::Column::ReferralId.eq(id.as_str()))
            .order_by_asc(referral_history::Column::HistoryId)
            .all(&self.state.db)
            .await?;
        let mut referral = to_proto(stored, &principal, &self.state.vault)?;
        referral.history = history.into_iter().map(change_to_proto).collect();
        Ok(Response::new(pb::GetReferralResponse {
            referral: Some(referral),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn handle_list_referrals(
        &self,
        request: Request<pb::ListReferralsRequest>,
    ) -> Result<Response<pb::ListReferralsResponse>> {
        let principal = principal_of(&request)?;
        let input = request.into_inner();
        let mut violations = Violations::new();
        let referrer = violations
            .check("referrer_id", StaffId::parse_optional(&input.referrer_id))
            .flatten();
        let assigned = violations
            .check(
                "assigned_rm_id",
                StaffId::parse_optional(&input.assigned_rm_id),
            )
            .flatten();
        let branch = violations
            .check("branch_id", BranchId::parse_optional(&input.branch_id))
            .flatten();
        let status = if input.status == 0 {
            None
        } else {
            let status = ReferralStatus::from_proto(input.status);
            if status.is_none() {
                violations.add("status", "is not a known status");
            }
            status
        };
        let page_size = violations.check("page_size", wire::page_size(input.page_size));
        let after = if input.page_token.is_empty() {
            None
        } else {
            parse_uuid(&mut violations, "page_token", &input.page_token)
        };
        let page_size = violations.finish(|| page_size)?;
        let mut query = referral::Entity::find()
            .order_by_desc(referral::Column::ReferralId)
            .limit(page_size + 1);
        // Scope first: the caller's role fixes the filter it may not widen.
        match principal.role {
            Role::System => {}
            Role::Teller => {
                query = query.filter(referral::Column::ReferrerId.eq(principal.staff_id.as_str()))
            }
            Role::Rm => {
                query = query.filter(referral::Column::AssignedRmId.eq(principal.staff_id.as_str()))
            }
            Role::BranchManager => {
                query = query.filter(referral::Column::BranchId.eq(principal.branch_id.as_str()))
            }
            Role::CampaignAdmin => {
                return Err(ReferralsError::PermissionDenied(
                    "campaign admins read reports, not referrals".into(),
                ));
            }
        }
        if let Some(referrer) = referrer {
            query = query.filter(referral::Column::ReferrerId.eq(referrer.as_str()));
        }
        if let Some(assigned) = assigned {
            query = query.filter(referral::Column::AssignedRmId.eq(assigned.as_str()));
        }
        if let Some(branch) = branch {
            query = query.filter(referral::Column::BranchId.eq(branch.as_str()));
        }
        if let Some(status) = status {
            query = query.filter(referral::Column::Status.eq(status.as_str()));
        }
        if let Some(after) = after {
            query = query.filter(referral::Column::ReferralId.lt(after));
        }
        let rows = query.all(&self.state.db).await?;
        let (rows, next_page_token) =
            wire::into_page(rows, page_size, |row| row.referral_id.clone());
        Ok(Response::new(pb::ListReferralsResponse {
            referrals: rows
                .into_iter()
                .map(|row| to_proto(row, &principal, &self.state.vault))
                .collect::<Result<_, _>>()?,
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(referral_id))]
    async fn handle_accept_referral(
        &self,
        request: Request<pb::AcceptReferralRequest>,
    ) -> Result<Response<pb::AcceptReferralResponse>> {
        let principal = principal_of(&request)?;
        principal.require_any(&[Role::Rm, Role::BranchManager], "accept referrals")?;
        let mut violations = Violations::new();
        let id = parse_uuid(
            &mut violations,
            "referral_id",
            &request.get_ref().referral_id,
        );
        let id = violations.finish(|| id)?;
        tracing::Span::current().record("referral_id", id.as_str());
        let db = &self.state.db;
        let transaction = db.begin().await?;
        let current = find_referral_for_update(&transaction, &id).await?;
        let holder = current.assigned_rm_id == principal.staff_id.as_str();
        let manager = principal.role == Role::BranchManager
            && current.branch_id == principal.branch_id.as_str();
        if !holder && !manager {
            return Err(ReferralsError::PermissionDenied(
                "referral is held by another RM".into(),
            ));
        }
        let status = current.status;
        accept(status)?;
        if status == ReferralStatus::Accepted {
            transaction.commit().await?;
            return Ok(Response::new(pb::AcceptReferralResponse {
                referral: Some(to_proto(current, &principal, &self.state.vault)?),
            }));
        }
        let now = Utc::now();
        let from = current.status;
        let clock_running = current.sla_stopped_at.is_none();
        let mut row = current.into_active_model();
        row.status = Set(ReferralStatus::Accepted);
        row.accepted_at = Set(Some(now));
        if clock_running {
            row.sla_stopped_at = Set(Some(now));
        }
        row.updated_at = Set(now);
        let stored = row.update(&transaction).await?;
        let by = ChangedBy {
            actor_id: principal.staff_id.to_string(),
            reason: String::new(),
        };
        lifecycle::record_history(&transaction, "accepted", from, &stored, &by).await?;
        let event = referral_event(&stored);
        crm_bus::outbox::enqueue_event(
            &transaction,
            SERVICE,
            REFERRAL_ACCEPTED,
            REFERRAL_ACCEPTED,
            &event,
        )
        .await?;
        transaction.commit().await?;
        self.state.outbox.wake();
        Ok(Response::new(pb::AcceptReferralResponse {
            referral: Some(to_proto(stored, &principal, &self.state.vault)?),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn handle_list_work_items(
        &self,
        request: Request<pb::ListWorkItemsRequest>,
    ) -> Result<Response<pb::ListWorkItemsResponse>> {
        let principal = principal_of(&request)?;
        let input = request.into_inner();
        let owner = queue_owner(&self.state, &principal, &input.rm_id).await?;
        let mut violations = Violations::new();
        let mut states = Vec::new();
        for (index, value) in input.states.iter().enumerate() {
            match WorkItemState::from_proto(*value) {
                Some(state) => states.push(state.as_str()),
                None => violations.add(format!("states[{index}]"), "is not a known state"),
            }
        }
        let mut kinds = Vec::new();
        for (index, value) in input.kinds.iter().enumerate() {
            match WorkItemKind::from_proto(*value) {
                Some(kind) => kinds.push(kind.as_str()),
                None => violations.add(format!("kinds[{index}]"), "is not a known kind"),
            }
        }
        let page_size = violations.check("page_size", wire::page_size(input.page_size));
        let after = if input.page_token.is_empty() {
            None
        } else {
            parse_uuid(&mut violations, "page_token", &input.page_token)
        };
        let page_size = violations.finish(|| page_size)?;
        let mut query = work_item::Entity::find()
            .filter(work_item::Column::RmId.eq(owner.as_str()))
            .order_by_asc(work_item::Column::WorkItemId)
            .limit(page_size + 1);
        if !states.is_empty() {
            query = query.filter(work_item::Column::State.is_in(states));
        }
        if !kinds.is_empty() {
            query = query.filter(work_item::Column::Kind.is_in(kinds));
        }
        if let Some(after) = after {
            query = query.filter(work_item::Column::WorkItemId.gt(after));
        }
        let rows = query.all(&self.state.db).await?;
        let (rows, next_page_token) =
            wire::into_page(rows, page_size, |row| row.work_item_id.clone());
        Ok(Response::new(pb::ListWorkItemsResponse {
            work_items: rows.iter().map(crate::work_items::to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn handle_watch_work_items(
        &self,
        request: Request<pb::WatchWorkItemsRequest>,
    ) -> Result<Response<WorkItemStream>> {
        let principal = principal_of(&request)?;
        let owner = queue_owner(&self.state, &principal, "").await?;
        let receiver = watch::watch(self.state.clone(), owner).await?;
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    #[tracing::instrument(skip_all)]
    async fn handle_ack_work_item(
        &self,
        request: Request<pb::AckWorkItemRequest>,
    ) -> Result<Response<pb::AckWorkItemResponse>> {
        let principal = principal_of(&request)?;
        let item = own_work_item(&self.state, &principal, &request.get_ref().work_item_id).await?;
        if item.acked_at.is_some() {
            return Ok(Response::new(pb::AckWorkItemResponse {
                work_item: Some(crate::work_items::to_proto(&item)),
            }));
        }
        let stored = save_work_item(&self.state, item, |row| {
            row.acked_at = Set(Some(Utc::now()))
        })
        .await?;
        Ok(Response::new(pb::AckWorkItemResponse {
            work_item: Some(crate::work_items::to_proto(&stored)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn handle_complete_work_item(
        &self,
        request: Request<pb::CompleteWorkItemRequest>,
    ) -> Result<Response<pb::CompleteWorkItemResponse>> {
        let principal = principal_of(&request)?;
        let input = request.into_inner();
        let mut violations = Violations::new();
        check_text(&mut violations, "outcome", &input.outcome, false, 200);
        check_text(&mut violations, "note", &input.note, false, 2000);
        if !violations.is_empty() {
            return Err(ReferralsError::from(violations));
        }
        let item = own_work_item(&self.state, &principal, &input.work_item_id).await?;
        if item.state == WorkItemState::Done {
            return Ok(Response::new(pb::CompleteWorkItemResponse {
                work_item: Some(crate::work_items::to_proto(&item)),
            }));
        }
        let outcome = [input.outcome.trim(), input.note.trim()]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        let stored = save_work_item(&self.state, item, |row| {
            row.state = Set(WorkItemState::Done);
            row.outcome = Set(Some(outcome));
        })
        .await?;
        Ok(Response::new(pb::CompleteWorkItemResponse {
            work_item: Some(crate::work_items::to_proto(&stored)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn handle_snooze_work_item(
        &self,
        request: Request<pb::SnoozeWorkItemRequest>,
    ) -> Result<Response<pb::SnoozeWorkItemResponse>> {
        let principal = principal_of(&request)?;
        let input = request.into_inner();
        let mut violations = Violations::new();
        let until = match &input.until {
            Some(until) => violations.check("until", wire::datetime(until)),
            None => {
                violations.add("until", "is required");
                None
            }
        };
        if until.is_some_and(|until| until <= Utc::now()) {
            violations.add("until", "must be in the future");
        }
        let until = violations.finish(|| until)?;
        let item = own_work_item(&self.state, &principal, &input.work_item_id).await?;
        if item.state == WorkItemState::Done {
            return Err(ReferralsError::FailedPrecondition(
                "work item is done; cannot snooze".into(),
            ));
        }
        let stored = save_work_item(&self.state, item, |row| {
            row.state = Set(WorkItemState::Snoozed);
            row.snoozed_until = Set(Some(until));
        })
        .await?;
        Ok(Response::new(pb::SnoozeWorkItemResponse {
            work_item: Some(crate::work_items::to_proto(&stored)),
        }))
    }
}

/// The gRPC trait: each RPC answers with its handler's result, the crate's error
/// mapped to a status in one place (`error.rs`).
#[tonic::async_trait]
impl ReferralService for Referrals {
    async fn create_referral(
        &self,
        request: Request<pb::CreateReferralRequest>,
    ) -> Result<Response<pb::CreateReferralResponse>, Status> {
        Ok(self.handle_create_referral(request).await?)
    }

    async fn get_referral(
        &self,
        request: Request<pb::GetReferralRequest>,
    ) -> Result<Response<pb::GetReferralResponse>, Status> {
        Ok(self.handle_get_referral(request).await?)
    }

    async fn list_referrals(
        &self,
        request: Request<pb::ListReferralsRequest>,
    ) -> Result<Response<pb::ListReferralsResponse>, Status> {
        Ok(self.handle_list_referrals(request).await?)
    }

    async fn accept_referral(
        &self,
        request: Request<pb::AcceptReferralRequest>,
    ) -> Result<Response<pb::AcceptReferralResponse>, Status> {
        Ok(self.handle_accept_referral(request).await?)
    }

    async fn record_referral_outcome(
        &self,
        request: Request<pb::RecordReferralOutcomeRequest>,
    ) -> Result<Response<pb::RecordReferralOutcomeResponse>, Status> {
        Ok(self.handle_record_referral_outcome(request).await?)
    }

    async fn reassign_referral(
        &self,
        request: Request<pb::ReassignReferralRequest>,
    ) -> Result<Response<pb::ReassignReferralResponse>, Status> {
        Ok(self.handle_reassign_referral(request).await?)
    }

    async fn get_referral_stats(
        &self,
        request: Request<pb::GetReferralStatsRequest>,
    ) -> Result<Response<pb::GetReferralStatsResponse>, Status> {
        Ok(self.handle_get_referral_stats(request).await?)
    }

    async fn list_work_items(
        &self,
        request: Request<pb::ListWorkItemsRequest>,
    ) -> Result<Response<pb::ListWorkItemsResponse>, Status> {
        Ok(self.handle_list_work_items(request).await?)
    }

    type WatchWorkItemsStream = WorkItemStream;

    async fn watch_work_items(
        &self,
        request: Request<pb::WatchWorkItemsRequest>,
    ) -> Result<Response<Self::WatchWorkItemsStream>, Status> {
        Ok(self.handle_watch_work_items(request).await?)
    }

    async fn ack_work_item(
        &self,
        request: Request<pb::AckWorkItemRequest>,
    ) -> Result<Response<pb::AckWorkItemResponse>, Status> {
        Ok(self.handle_ack_work_item(request).await?)
    }

    async fn complete_work_item(
        &self,
        request: Request<pb::CompleteWorkItemRequest>,
    ) -> Result<Response<pb::CompleteWorkItemResponse>, Status> {
        Ok(self.handle_complete_work_item(request).await?)
    }

    async fn snooze_work_item(
        &self,
        request: Request<pb::SnoozeWorkItemRequest>,
    ) -> Result<Response<pb::SnoozeWorkItemResponse>, Status> {
        Ok(self.handle_snooze_work_item(request).await?)
    }
}
