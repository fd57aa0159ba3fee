//! A referral's lifecycle RPCs: AcceptReferral, RecordReferralOutcome and
//! ReassignReferral, each on the state machine of crm_domain::referral.

use crate::store::routing_staff;
use chrono::Utc;
use crm_auth::principal_of;
use crm_domain::messages::{REFERRAL_ACCEPTED, REFERRAL_OUTCOME_RECORDED};
use crm_domain::referral::{Outcome, ReferralStatus, accept, record_outcome};
use crm_domain::validation::check_text;
use crm_domain::{Money, Role, StaffId, Violations};
use crm_proto::v1 as pb;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel, TransactionTrait};
use tonic::{Request, Response};

use crate::SERVICE;
use crate::access::may_work_on;
use crate::calendars;
use crate::error::{ReferralsError, Result};
use crate::referral_changes::{self, ChangedBy};
use crate::referral_reads::find_referral_for_update;
use crate::referral_wire::to_proto;
use crate::referral_wire::{parse_uuid, referral_event};
use crate::service::Referrals;
use crm_grpc::WireEnum;

struct OutcomeInput {
    referral_id: String,
    outcome: Outcome,
    note: String,
    product: String,
    amount: Option<Money>,
}

fn parse_outcome(
    input: &pb::RecordReferralOutcomeRequest,
) -> std::result::Result<OutcomeInput, Violations> {
    let mut violations = Violations::new();
    let referral_id = parse_uuid(&mut violations, "referral_id", &input.referral_id);
    let outcome = Outcome::from_proto(input.outcome);
    if outcome.is_none() {
        violations.add(
            "outcome",
            "must be CONTACTED, CONVERTED, DECLINED or UNREACHABLE",
        );
    }
    check_text(&mut violations, "note", &input.note, false, 2000);
    if outcome == Some(Outcome::Declined) && input.note.trim().is_empty() {
        violations.add("note", "a decline needs a reason");
    }
    check_text(&mut violations, "product", &input.product, false, 100);
    let amount = match &input.amount {
        Some(money) => violations
            .check(
                "amount",
                Money::parse_non_negative(money.minor_units, &money.currency),
            )
            .map(Some),
        None => Some(None),
    };
    violations.finish(|| {
        Some(OutcomeInput {
            referral_id: referral_id?,
            outcome: outcome?,
            note: input.note.trim().to_owned(),
            product: input.product.trim().to_owned(),
            amount: amount?,
        })
    })
}

impl Referrals {
    #[tracing::instrument(skip_all, fields(referral_id))]
    pub(crate) async fn handle_accept_referral(
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
        may_work_on(&principal, &current)?;
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
        referral_changes::record_history(&transaction, "accepted", from, &stored, &by).await?;
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

    #[tracing::instrument(skip_all, fields(referral_id))]
    pub(crate) async fn handle_record_referral_outcome(
        &self,
        request: Request<pb::RecordReferralOutcomeRequest>,
    ) -> Result<Response<pb::RecordReferralOutcomeResponse>> {
        let principal = principal_of(&request)?;
        principal.require_any(&[Role::Rm, Role::BranchManager], "record referral outcomes")?;
        let input = parse_outcome(request.get_ref())?;
        tracing::Span::current().record("referral_id", input.referral_id.as_str());
        let state = &self.state;
        let transaction = state.db.begin().await?;
        let current = find_referral_for_update(&transaction, &input.referral_id).await?;
        may_work_on(&principal, &current)?;
        let status = current.status;
        let next = record_outcome(status, input.outcome)?;
        let repeated = next == status
            && current.outcome == Some(input.outcome)
            && input.outcome != Outcome::Unreachable;
        if repeated {
            // A retry from a phone that lost the first answer.
            transaction.commit().await?;
            return Ok(Response::new(pb::RecordReferralOutcomeResponse {
                referral: Some(to_proto(current, &principal, &state.vault)?),
            }));
        }
        let now = Utc::now();
        let from = current.status;
        let holder_id = current.assigned_rm_id.clone();
        let mut row = current.clone().into_active_model();
        row.status = Set(next);
        row.outcome = Set(Some(input.outcome));
        row.outcome_note = Set(input.note.clone());
        if !input.product.is_empty() {
            row.outcome_product = Set(Some(input.product.clone()));
        }
        if let Some(amount) = &input.amount {
            row.outcome_amount_minor_units = Set(Some(amount.minor_units()));
        }
        if current.sla_stopped_at.is_none() {
            row.sla_stopped_at = Set(Some(now));
        }
        row.updated_at = Set(now);
        let stored = row.update(&transaction).await?;
        if matches!(next, ReferralStatus::Converted | ReferralStatus::Declined) {
            let outcome = if input.note.is_empty() {
                next.as_str().to_owned()
            } else {
                format!("{}: {}", next.as_str(), input.note)
            };
            referral_changes::close_work_items(
                &transaction,
                &stored.referral_id,
                Some(&holder_id),
                &outcome,
                now,
            )
            .await?;
            // Closed: no longer part of the holder's load.
            referral_changes::adjust_load(&transaction, &holder_id, -1, None).await?;
        }
        let by = ChangedBy {
            actor_id: principal.staff_id.to_string(),
            reason: input.note.clone(),
        };
        referral_changes::record_history(&transaction, "outcome", from, &stored, &by).await?;
        referral_changes::publish(&transaction, REFERRAL_OUTCOME_RECORDED, &stored).await?;
        transaction.commit().await?;
        state.outbox.wake();
        Ok(Response::new(pb::RecordReferralOutcomeResponse {
            referral: Some(to_proto(stored, &principal, &state.vault)?),
        }))
    }

    #[tracing::instrument(skip_all, fields(referral_id, rm_id))]
    pub(crate) async fn handle_reassign_referral(
        &self,
        request: Request<pb::ReassignReferralRequest>,
    ) -> Result<Response<pb::ReassignReferralResponse>> {
        let principal = principal_of(&request)?;
        principal.require_any(&[Role::BranchManager, Role::System], "reassign referrals")?;
        let input = request.into_inner();
        let mut violations = Violations::new();
        let referral_id = parse_uuid(&mut violations, "referral_id", &input.referral_id);
        let rm_id = violations.check("rm_id", StaffId::parse(&input.rm_id));
        check_text(&mut violations, "reason", &input.reason, true, 500);
        let (referral_id, rm_id) = violations.finish(|| Some((referral_id?, rm_id?)))?;
        let span = tracing::Span::current();
        span.record("referral_id", referral_id.as_str());
        span.record("rm_id", rm_id.as_str());
        let state = &self.state;
        let transaction = state.db.begin().await?;
        let current = find_referral_for_update(&transaction, &referral_id).await?;
        if principal.role == Role::BranchManager
            && current.branch_id != principal.branch_id.as_str()
        {
            return Err(ReferralsError::PermissionDenied(
                "referral of another branch".into(),
            ));
        }
        let target = routing_staff::Entity::find_by_id(rm_id.as_str())
            .one(&transaction)
            .await?;
        let eligible = target.as_ref().is_some_and(|member| {
            member.active
                && member.branch_id == current.branch_id
                && [Role::Rm.as_str(), Role::BranchManager.as_str()].contains(&member.role.as_str())
        });
        if !eligible {
            let mut violations = Violations::new();
            violations.add(
                "rm_id",
                format!(
                    "{rm_id} is not an active RM of branch {}",
                    current.branch_id
                ),
            );
            return Err(violations.into());
        }
        let by = ChangedBy {
            actor_id: principal.staff_id.to_string(),
            reason: input.reason.trim().to_owned(),
        };
        let level = current.escalation_level;
        let calendar =
            calendars::for_branch(&transaction, &current.branch_id, &state.calendar).await?;
        let stored = referral_changes::reassign(
            &transaction,
            &state.sla,
            &calendar,
            current,
            rm_id.as_str(),
            &by,
            level,
            Utc::now(),
        )
        .await?;
        transaction.commit().await?;
        state.outbox.wake();
        Ok(Response::new(pb::ReassignReferralResponse {
            referral: Some(to_proto(stored, &principal, &state.vault)?),
        }))
    }
}
