//! Referrals on the wire: the stored row as `crm.v1.Referral`, with the prospect's
//! phone masked for callers who may not see it whole.

use crate::store::{referral, referral_history};
use crm_auth::{Principal, wire};
use crm_domain::Role;
use crm_domain::messages::ReferralEvent;
use crm_domain::pii::{Pii, mask_phone};
use crm_domain::referral::{Need, Outcome, ReferralStatus};
use crm_domain::routing::RoutingDecision;
use crm_proto::v1 as pb;
use crm_store::{Vault, VaultError};

use crate::work_items::priority_to_proto;

pub fn need_from_proto(value: i32) -> Option<Need> {
    match pb::Need::try_from(value).ok()? {
        pb::Need::Unspecified => None,
        pb::Need::WealthManagement => Some(Need::WealthManagement),
        pb::Need::LargeDeposit => Some(Need::LargeDeposit),
        pb::Need::Loan => Some(Need::Loan),
        pb::Need::Payroll => Some(Need::Payroll),
        pb::Need::Insurance => Some(Need::Insurance),
        pb::Need::LargeCashAppointment => Some(Need::LargeCashAppointment),
        pb::Need::Other => Some(Need::Other),
    }
}

fn need_to_proto(need: &str) -> pb::Need {
    match Need::parse(need) {
        Some(Need::WealthManagement) => pb::Need::WealthManagement,
        Some(Need::LargeDeposit) => pb::Need::LargeDeposit,
        Some(Need::Loan) => pb::Need::Loan,
        Some(Need::Payroll) => pb::Need::Payroll,
        Some(Need::Insurance) => pb::Need::Insurance,
        Some(Need::LargeCashAppointment) => pb::Need::LargeCashAppointment,
        Some(Need::Other) => pb::Need::Other,
        None => pb::Need::Unspecified,
    }
}

pub fn status_from_proto(value: i32) -> Option<ReferralStatus> {
    match pb::ReferralStatus::try_from(value).ok()? {
        pb::ReferralStatus::Unspecified => None,
        pb::ReferralStatus::New => Some(ReferralStatus::New),
        pb::ReferralStatus::Assigned => Some(ReferralStatus::Assigned),
        pb::ReferralStatus::Accepted => Some(ReferralStatus::Accepted),
        pb::ReferralStatus::Contacted => Some(ReferralStatus::Contacted),
        pb::ReferralStatus::Converted => Some(ReferralStatus::Converted),
        pb::ReferralStatus::Declined => Some(ReferralStatus::Declined),
        pb::ReferralStatus::Expired => Some(ReferralStatus::Expired),
    }
}

pub fn status_to_proto(status: &str) -> pb::ReferralStatus {
    match ReferralStatus::parse(status) {
        Some(ReferralStatus::New) => pb::ReferralStatus::New,
        Some(ReferralStatus::Assigned) => pb::ReferralStatus::Assigned,
        Some(ReferralStatus::Accepted) => pb::ReferralStatus::Accepted,
        Some(ReferralStatus::Contacted) => pb::ReferralStatus::Contacted,
        Some(ReferralStatus::Converted) => pb::ReferralStatus::Converted,
        Some(ReferralStatus::Declined) => pb::ReferralStatus::Declined,
        Some(ReferralStatus::Expired) => pb::ReferralStatus::Expired,
        None => pb::ReferralStatus::Unspecified,
    }
}

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

/// The stored outcome text as the wire enum.
fn outcome_to_proto(outcome: Option<&str>) -> pb::ReferralOutcome {
    match outcome {
        Some("contacted") => pb::ReferralOutcome::Contacted,
        Some("converted") => pb::ReferralOutcome::Converted,
        Some("declined") => pb::ReferralOutcome::Declined,
        Some("unreachable") => pb::ReferralOutcome::Unreachable,
        _ => pb::ReferralOutcome::Unspecified,
    }
}

pub fn outcome_from_proto(value: i32) -> Option<Outcome> {
    match pb::ReferralOutcome::try_from(value).ok()? {
        pb::ReferralOutcome::Unspecified => None,
        pb::ReferralOutcome::Contacted => Some(Outcome::Contacted),
        pb::ReferralOutcome::Converted => Some(Outcome::Converted),
        pb::ReferralOutcome::Declined => Some(Outcome::Declined),
        pb::ReferralOutcome::Unreachable => Some(Outcome::Unreachable),
    }
}

pub fn outcome_text(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Contacted => "contacted",
        Outcome::Converted => "converted",
        Outcome::Declined => "declined",
        Outcome::Unreachable => "unreachable",
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
        outcome: outcome_to_proto(model.outcome.as_deref()) as i32,
        outcome_note: model.outcome_note,
        history: Vec::new(),
        amount_hint: money(model.amount_minor_units, &model.amount_currency),
        outcome_amount: money(model.outcome_amount_minor_units, &model.amount_currency),
        referral_id: model.referral_id,
        client_id: model.client_id.unwrap_or_default(),
        prospect,
        referrer_id: model.referrer_id,
        branch_id: model.branch_id,
        need: need_to_proto(&model.need) as i32,
        note: model.note,
        status: status_to_proto(&model.status) as i32,
        assigned_rm_id: model.assigned_rm_id,
        routing_reason: model.routing_reason,
        routing_decision: decision_to_proto(&model.routing_decision),
        sla_due_at: Some(wire::timestamp(model.sla_due_at)),
        escalated: model.escalated,
        duplicate_of: String::new(),
        created_at: Some(wire::timestamp(model.created_at)),
        updated_at: Some(wire::timestamp(model.updated_at)),
        priority: priority_to_proto(&model.priority) as i32,
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
        need: need_to_proto(&model.need) as i32,
        status: status_to_proto(&model.status) as i32,
        assigned_rm_id: model.assigned_rm_id.clone(),
        created_at: Some(wire::timestamp(model.created_at)),
        ..Default::default()
    }
}

pub fn change_to_proto(model: referral_history::Model) -> pb::ReferralChange {
    pb::ReferralChange {
        action: model.action,
        from_status: status_to_proto(&model.from_status) as i32,
        to_status: status_to_proto(&model.to_status) as i32,
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
        need: model.need.clone(),
        priority: model.priority.clone(),
        status: model.status.clone(),
        escalated: model.escalated,
        routing_reason: model.routing_reason.clone(),
        occurred_at: model.updated_at,
    }
}
