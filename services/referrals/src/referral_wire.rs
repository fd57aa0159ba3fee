//! Referrals on the wire: the stored row as `crm.v1.Referral`, with the prospect's
//! phone masked for callers who may not see it whole.

use crate::store::{referral, referral_history};
use crm_auth::Principal;
use crm_domain::messages::ReferralEvent;
use crm_domain::pii::{Pii, mask_phone};
use crm_domain::routing::RoutingDecision;
use crm_domain::{Role, Violations};
use crm_grpc::{WireEnum, wire};
use crm_proto::v1 as pb;
use crm_store::{Vault, VaultError};

fn decision_to_proto(stored: &str) -> Option<pb::RoutingDecision> {
    let decision: RoutingDecision = serde_json::from_str(stored).ok()?;
    Some(pb::RoutingDecision {
        rule_version: decision.rule_version,
        candidates: decision
            .candidates
            .into_iter()
            .map(|c| pb::RoutingCandidate {
                staff_id: c.staff_id,
                step: c.step,
                taken: c.taken,
                reason: c.reason,
            })
            .collect(),
        chosen_rm_id: decision.chosen_rm_id,
        decided_at: Some(wire::timestamp(decision.decided_at)),
    })
}

/// Who may see a prospect's phone in full: the RM holding the referral, managers
/// and the system.
fn sees_prospect_phone(principal: &Principal, model: &referral::Model) -> bool {
    match principal.role {
        Role::System | Role::BranchManager => true,
        Role::Rm => model.assigned_rm_id == principal.staff_id.as_str(),
        _ => false,
    }
}

/// The referral as `principal` may see it; the walk-in's sealed phone is opened
/// only to be shown whole or masked.
pub fn to_proto(
    model: referral::Model,
    principal: &Principal,
    vault: &Vault,
) -> Result<pb::Referral, VaultError> {
    let phone = match &model.prospect_phone {
        Some(sealed) => vault.open(sealed)?,
        None => Pii::default(),
    };
    let prospect = model.prospect_name.clone().map(|full_name| pb::Prospect {
        full_name,
        phone: if sees_prospect_phone(principal, &model) {
            phone.expose().to_owned()
        } else {
            mask_phone(phone.expose())
        },
    });
    let money = |minor: Option<i64>, currency: &Option<String>| {
        minor.map(|minor_units| pb::Money {
            minor_units,
            currency: currency.clone().unwrap_or_else(|| "CNY".to_owned()),
        })
    };
    Ok(pb::Referral {
        outcome: model.outcome.map_or(0, WireEnum::to_wire),
        outcome_note: model.outcome_note,
        history: Vec::new(),
        amount_hint: money(model.amount_minor_units, &model.amount_currency),
        outcome_amount: money(model.outcome_amount_minor_units, &model.amount_currency),
        referral_id: model.referral_id,
        client_id: model.client_id.unwrap_or_default(),
        prospect,
        referrer_id: model.referrer_id,
        branch_id: model.branch_id,
        need: model.need.to_wire(),
        note: model.note,
        status: model.status.to_wire(),
        assigned_rm_id: model.assigned_rm_id,
        routing_reason: model.routing_reason,
        routing_decision: decision_to_proto(&model.routing_decision),
        sla_due_at: Some(wire::timestamp(model.sla_due_at)),
        escalated: model.escalated,
        duplicate_of: String::new(),
        created_at: Some(wire::timestamp(model.created_at)),
        updated_at: Some(wire::timestamp(model.updated_at)),
        priority: model.priority.to_wire(),
        outcome_product: model.outcome_product.unwrap_or_default(),
    })
}

/// What a teller learns about an open referral for the same client and need that
/// they may not read whole: that it exists, its status and who holds it.
pub fn duplicate_summary(model: &referral::Model) -> pb::Referral {
    pb::Referral {
        referral_id: model.referral_id.clone(),
        duplicate_of: model.referral_id.clone(),
        branch_id: model.branch_id.clone(),
        need: model.need.to_wire(),
        status: model.status.to_wire(),
        assigned_rm_id: model.assigned_rm_id.clone(),
        created_at: Some(wire::timestamp(model.created_at)),
        ..Default::default()
    }
}

/// All a caller of another branch learns of a duplicate: that an open referral
/// for the same client (or phone) and need exists — not where, nor who holds it.
pub fn duplicate_existence(model: &referral::Model) -> pb::Referral {
    pb::Referral {
        referral_id: model.referral_id.clone(),
        duplicate_of: model.referral_id.clone(),
        need: model.need.to_wire(),
        status: model.status.to_wire(),
        ..Default::default()
    }
}

pub fn change_to_proto(model: referral_history::Model) -> pb::ReferralChange {
    pb::ReferralChange {
        action: model.action,
        from_status: model.from_status.to_wire(),
        to_status: model.to_status.to_wire(),
        actor_id: model.actor_id,
        rm_id: model.rm_id,
        reason: model.reason,
        occurred_at: Some(wire::timestamp(model.occurred_at)),
    }
}

/// The event announcing a referral's current state (it happened at `updated_at`).
pub fn referral_event(model: &referral::Model) -> ReferralEvent {
    ReferralEvent {
        referral_id: model.referral_id.clone(),
        client_id: model.client_id.clone(),
        referrer_id: model.referrer_id.clone(),
        branch_id: model.branch_id.clone(),
        assigned_rm_id: model.assigned_rm_id.clone(),
        need: model.need.as_str().to_owned(),
        priority: model.priority.as_str().to_owned(),
        status: model.status.as_str().to_owned(),
        escalated: model.escalated,
        routing_reason: model.routing_reason.clone(),
        occurred_at: model.updated_at,
    }
}

pub(crate) fn parse_uuid(violations: &mut Violations, field: &str, value: &str) -> Option<String> {
    violations
        .check(field, crm_domain::ids::parse_uuid(value))
        .map(|id| id.to_string())
}
