//! The RM work queue's RPCs: ListWorkItems, WatchWorkItems and the changes a
//! device makes to an item (ack, complete, snooze), each applied only to the
//! version the device read.

use crate::store::work_item;
use chrono::Utc;
use crm_auth::{Principal, principal_of};
use crm_domain::referral::{FundsOutcome, Outcome, WorkItemKind, WorkItemState};
use crm_domain::validation::check_text;
use crm_domain::{Money, Violations};
use crm_grpc::{WireEnum, enum_filter, wire};
use crm_proto::v1 as pb;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::access::queue_owner;
use crate::error::{ReferralsError, Result};
use crate::referral_wire::parse_uuid;
use crate::service::Referrals;
use crate::work_item_feed::announce;
use crate::{ReferralsState, watch};

/// A WatchWorkItems response stream: the stream's task's boxed responses,
/// unboxed on the way out.
pub type WorkItemStream = tokio_stream::adapters::Map<
    ReceiverStream<watch::Outgoing>,
    fn(watch::Outgoing) -> Result<pb::WatchWorkItemsResponse, Status>,
>;

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
    // An item nobody holds yet (waiting for routing) is in no one's queue: only
    // the system may act on it, never whoever asks (an empty rm_id would name the
    // caller's own queue).
    if item.rm_id.is_empty() {
        principal.require_any(
            &[crm_domain::Role::System],
            "act on an unassigned work item",
        )?;
        return Ok(item);
    }
    queue_owner(state, principal, &item.rm_id).await?;
    Ok(item)
}

/// The RM's answer about the funds an alert was about, checked.
struct FundsAnswer {
    outcome: Option<FundsOutcome>,
    kept: Option<Money>,
}

fn funds_answer(violations: &mut Violations, input: &pb::CompleteWorkItemRequest) -> FundsAnswer {
    let outcome = match input.funds_outcome {
        0 => None,
        value => {
            let outcome = FundsOutcome::from_proto(value);
            if outcome.is_none() {
                violations.add("funds_outcome", "is not a known value");
            }
            outcome
        }
    };
    let kept = input.funds_kept.as_ref().and_then(|money| {
        match Money::parse(money.minor_units, &money.currency) {
            Ok(kept) if kept.minor_units() < 0 => {
                violations.add("funds_kept", "must not be negative");
                None
            }
            Ok(kept) => Some(kept),
            Err(error) => {
                violations.add("funds_kept", error.to_string());
                None
            }
        }
    });
    match (outcome, &kept) {
        (None, Some(_)) => violations.add("funds_kept", "is given only with funds_outcome"),
        (Some(FundsOutcome::PartlyKept), None) => violations.add(
            "funds_kept",
            "is required when the funds were partly kept: how much stayed",
        ),
        (Some(FundsOutcome::PartlyKept), Some(kept)) if kept.minor_units() == 0 => {
            violations.add("funds_kept", "must be more than zero when partly kept")
        }
        (Some(FundsOutcome::Gone), Some(kept)) if kept.minor_units() > 0 => violations.add(
            "funds_kept",
            "must be zero or unset when the funds are gone",
        ),
        _ => {}
    }
    FundsAnswer { outcome, kept }
}

/// What the RM says came of a campaign task, checked.
struct TaskAnswer {
    outcome: Option<Outcome>,
    product: Option<String>,
    amount: Option<Money>,
}

fn task_answer(violations: &mut Violations, input: &pb::CompleteWorkItemRequest) -> TaskAnswer {
    let outcome = match input.task_outcome {
        0 => None,
        value => {
            let outcome = Outcome::from_proto(value);
            if outcome.is_none() {
                violations.add("task_outcome", "is not a known value");
            }
            outcome
        }
    };
    let product = input.converted_product.trim();
    let amount = input.converted_amount.as_ref().and_then(|money| {
        match Money::parse(money.minor_units, &money.currency) {
            Ok(amount) if amount.minor_units() <= 0 => {
                violations.add("converted_amount", "must be more than zero");
                None
            }
            Ok(amount) => Some(amount),
            Err(error) => {
                violations.add("converted_amount", error.to_string());
                None
            }
        }
    });
    if outcome == Some(Outcome::Converted) {
        if product.is_empty() {
            violations.add(
                "converted_product",
                "is required for a conversion: what was sold",
            );
        }
        if input.converted_amount.is_none() {
            violations.add("converted_amount", "is required for a conversion: how much");
        }
    } else {
        if !product.is_empty() {
            violations.add(
                "converted_product",
                "is given only with task_outcome CONVERTED",
            );
        }
        if input.converted_amount.is_some() {
            violations.add(
                "converted_amount",
                "is given only with task_outcome CONVERTED",
            );
        }
    }
    if product.chars().count() > 100 {
        violations.add("converted_product", "must be at most 100 characters");
    }
    TaskAnswer {
        outcome,
        product: (!product.is_empty()).then(|| product.to_owned()),
        amount,
    }
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
    if stored.state == WorkItemState::Done {
        // The service that asked for the item hears it was done.
        crate::requested_work::report_completion(&transaction, &stored).await?;
    }
    transaction.commit().await?;
    state.outbox.wake();
    Ok(stored)
}

impl Referrals {
    #[tracing::instrument(skip_all)]
    pub(crate) async fn handle_list_work_items(
        &self,
        request: Request<pb::ListWorkItemsRequest>,
    ) -> Result<Response<pb::ListWorkItemsResponse>> {
        let principal = principal_of(&request)?;
        let input = request.into_inner();
        let owner = queue_owner(&self.state, &principal, &input.rm_id).await?;
        let mut violations = Violations::new();
        let states: Vec<WorkItemState> = enum_filter(
            &mut violations,
            "states",
            &input.states,
            WorkItemState::ALL.len(),
        );
        let kinds: Vec<WorkItemKind> = enum_filter(
            &mut violations,
            "kinds",
            &input.kinds,
            WorkItemKind::ALL.len(),
        );
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
            work_items: rows.iter().map(crate::work_item_feed::to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn handle_watch_work_items(
        &self,
        request: Request<pb::WatchWorkItemsRequest>,
    ) -> Result<Response<WorkItemStream>> {
        let principal = principal_of(&request)?;
        let expires_at = request
            .extensions()
            .get::<crm_auth::TokenExpiry>()
            .map(|expiry| expiry.0)
            .ok_or_else(|| {
                crm_grpc::RpcError::Unauthenticated("no token expiry on the request".into())
            })?;
        let input = request.get_ref();
        let mut violations = Violations::new();
        let resume_from = input
            .resume_from
            .as_ref()
            .map(|from| violations.check("resume_from", wire::datetime(from)));
        let start = violations.finish(|| {
            Some(watch::WatchStart {
                resume_from: resume_from.flatten(),
                mark_caught_up: input.mark_caught_up,
            })
        })?;
        let owner = queue_owner(&self.state, &principal, "").await?;
        let permit = self.state.streams.admit(&principal.staff_id)?;
        let receiver = watch::watch(self.state.clone(), owner, start, permit, expires_at).await?;
        let unboxed: fn(watch::Outgoing) -> Result<pb::WatchWorkItemsResponse, Status> =
            |response| response.map(|boxed| *boxed);
        Ok(Response::new(tokio_stream::StreamExt::map(
            ReceiverStream::new(receiver),
            unboxed,
        )))
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn handle_ack_work_item(
        &self,
        request: Request<pb::AckWorkItemRequest>,
    ) -> Result<Response<pb::AckWorkItemResponse>> {
        let principal = principal_of(&request)?;
        let item = own_work_item(&self.state, &principal, &request.get_ref().work_item_id).await?;
        if item.acked_at.is_some() {
            return Ok(Response::new(pb::AckWorkItemResponse {
                work_item: Some(crate::work_item_feed::to_proto(&item)),
            }));
        }
        let stored = save_work_item(&self.state, item, |row| {
            row.acked_at = Set(Some(Utc::now()))
        })
        .await?;
        Ok(Response::new(pb::AckWorkItemResponse {
            work_item: Some(crate::work_item_feed::to_proto(&stored)),
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn handle_complete_work_item(
        &self,
        request: Request<pb::CompleteWorkItemRequest>,
    ) -> Result<Response<pb::CompleteWorkItemResponse>> {
        let principal = principal_of(&request)?;
        let input = request.into_inner();
        let mut violations = Violations::new();
        check_text(&mut violations, "outcome", &input.outcome, false, 200);
        check_text(&mut violations, "note", &input.note, false, 2000);
        let funds = funds_answer(&mut violations, &input);
        let task = task_answer(&mut violations, &input);
        if !violations.is_empty() {
            return Err(ReferralsError::from(violations));
        }
        let item = own_work_item(&self.state, &principal, &input.work_item_id).await?;
        if funds.outcome.is_some() && item.kind != WorkItemKind::Alert {
            violations.add("funds_outcome", "is only for alerts about a client's money");
        }
        match (item.kind, task.outcome) {
            (WorkItemKind::CampaignTask, None) => violations.add(
                "task_outcome",
                "is required for a campaign task: contacted, converted, declined or unreachable",
            ),
            (WorkItemKind::CampaignTask, Some(_)) | (_, None) => {}
            (_, Some(_)) => violations.add("task_outcome", "is only for campaign tasks"),
        }
        if !violations.is_empty() {
            return Err(ReferralsError::from(violations));
        }
        if item.state == WorkItemState::Done {
            return Ok(Response::new(pb::CompleteWorkItemResponse {
                work_item: Some(crate::work_item_feed::to_proto(&item)),
            }));
        }
        let said = match (input.outcome.trim(), task.outcome) {
            ("", Some(outcome)) => outcome.as_str(),
            (said, _) => said,
        };
        let outcome = [said, input.note.trim()]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        let stored = save_work_item(&self.state, item, |row| {
            row.state = Set(WorkItemState::Done);
            row.outcome = Set(Some(outcome));
            row.funds_outcome = Set(funds.outcome);
            row.funds_kept_minor = Set(funds.kept.as_ref().map(Money::minor_units));
            row.funds_kept_currency = Set(funds.kept.map(|kept| kept.currency().to_owned()));
            row.task_outcome = Set(task.outcome);
            row.converted_product = Set(task.product);
            row.converted_minor = Set(task.amount.as_ref().map(Money::minor_units));
            row.converted_currency = Set(task.amount.map(|amount| amount.currency().to_owned()));
        })
        .await?;
        Ok(Response::new(pb::CompleteWorkItemResponse {
            work_item: Some(crate::work_item_feed::to_proto(&stored)),
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn handle_snooze_work_item(
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
            work_item: Some(crate::work_item_feed::to_proto(&stored)),
        }))
    }
}
