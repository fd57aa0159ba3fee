//! CreateReferral: validate, route, and write referral + work item + messages in one
//! transaction.

use chrono::Utc;
use crm_auth::Principal;
use crm_domain::messages::REFERRAL_ASSIGNED;
use crm_domain::pii::Pii;
use crm_domain::referral::{Need, Priority, ReferralStatus, WorkItemKind, WorkItemState};
use crm_domain::routing::{RoutingError, RoutingRequest, route};
use crm_domain::sla::acceptance_deadline;
use crm_domain::validation::check_text;
use crm_domain::{BranchId, ClientId, Money, Role, Violations};
use crm_proto::v1 as pb;
use crm_store::db::is_unique_violation;
use crm_store::referrals::{referral, routing_client, work_item};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait,
    QueryFilter, Statement, TransactionTrait,
};

use crate::error::{ReferralsError, Result};
use crate::lifecycle::{self, ChangedBy};
use crate::referral_wire::{need_from_proto, referral_event};
use crate::work_items::{announce, priority_from_proto};
use crate::{ReferralsState, SERVICE, routing_inputs};

/// A note longer than this is not a note.
const MAX_NOTE_CHARS: usize = 2000;

enum Subject {
    Client(ClientId),
    Prospect { full_name: String, phone: String },
}

struct NewReferral {
    idempotency_key: Option<String>,
    subject: Subject,
    need: Need,
    priority: Priority,
    note: String,
    amount_hint: Option<Money>,
}

fn parse(input: &pb::CreateReferralRequest) -> std::result::Result<NewReferral, Violations> {
    let mut violations = Violations::new();
    let key = input.idempotency_key.trim();
    if key.len() > 128 {
        violations.add("idempotency_key", "must be at most 128 characters");
    }
    let subject = match (input.client_id.is_empty(), &input.prospect) {
        (false, Some(_)) => {
            violations.add("prospect", "give client_id or prospect, not both");
            None
        }
        (false, None) => violations
            .check("client_id", ClientId::parse(&input.client_id))
            .map(Subject::Client),
        (true, Some(prospect)) => {
            check_text(
                &mut violations,
                "prospect.full_name",
                &prospect.full_name,
                true,
                100,
            );
            let phone_ok = (5..=20).contains(&prospect.phone.len())
                && prospect
                    .phone
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '+');
            if !phone_ok {
                violations.add("prospect.phone", "must be 5 to 20 digits");
            }
            Some(Subject::Prospect {
                full_name: prospect.full_name.trim().to_owned(),
                phone: prospect.phone.clone(),
            })
        }
        (true, None) => {
            violations.add("client_id", "either client_id or prospect is required");
            None
        }
    };
    let need = need_from_proto(input.need);
    if need.is_none() {
        violations.add("need", "must be a known need, not UNSPECIFIED");
    }
    let priority = priority_from_proto(input.priority);
    if priority.is_none() {
        violations.add("priority", "must be LOW, NORMAL, HIGH or URGENT");
    }
    check_text(&mut violations, "note", &input.note, false, MAX_NOTE_CHARS);
    let amount_hint = match &input.amount_hint {
        Some(money) => violations
            .check(
                "amount_hint",
                Money::parse_non_negative(money.minor_units, &money.currency),
            )
            .map(Some),
        None => Some(None),
    };
    violations.finish(|| {
        Some(NewReferral {
            idempotency_key: (!key.is_empty()).then(|| key.to_owned()),
            subject: subject?,
            need: need?,
            priority: priority?,
            note: input.note.clone(),
            amount_hint: amount_hint?,
        })
    })
}

async fn find_by_key(
    db: &impl ConnectionTrait,
    referrer_id: &str,
    key: &str,
) -> Result<Option<referral::Model>> {
    Ok(referral::Entity::find()
        .filter(referral::Column::ReferrerId.eq(referrer_id))
        .filter(referral::Column::IdempotencyKey.eq(key))
        .one(db)
        .await?)
}

fn work_item_title(need: Need, subject: &Subject) -> String {
    let need = need.as_str().replace('_', " ");
    match subject {
        Subject::Client(client_id) => format!("Referral: {need} for client {client_id}"),
        Subject::Prospect { full_name, .. } => format!("Referral: {need} for walk-in {full_name}"),
    }
}

/// Serialises routing per branch on PostgreSQL (SQLite's single connection already
/// does), for the length of the caller's transaction.
async fn lock_branch(transaction: &impl ConnectionTrait, branch_id: &BranchId) -> Result<()> {
    if transaction.get_database_backend() == DbBackend::Postgres {
        transaction
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                [format!("routing:{branch_id}").into()],
            ))
            .await?;
    }
    Ok(())
}

/// What CreateReferral did: made a new referral, or found the open one for the
/// same client (or walk-in phone) and need.
pub enum Created {
    New(referral::Model),
    Duplicate(referral::Model),
}

/// `client:<id>:<need>` or `phone:<lookup hash>:<need>`: unique among open
/// referrals (a partial unique index holds it under races).
fn dedupe_key(subject: &Subject, need: Need, vault: &crm_store::Vault) -> String {
    match subject {
        Subject::Client(client_id) => format!("client:{client_id}:{}", need.as_str()),
        Subject::Prospect { phone, .. } => format!(
            "phone:{}:{}",
            vault.lookup_hash(&Pii::new(phone.clone())),
            need.as_str()
        ),
    }
}

async fn find_open_duplicate(
    db: &impl ConnectionTrait,
    dedupe_key: &str,
) -> Result<Option<referral::Model>> {
    let open: Vec<&str> = ReferralStatus::OPEN.iter().map(|s| s.as_str()).collect();
    Ok(referral::Entity::find()
        .filter(referral::Column::DedupeKey.eq(dedupe_key))
        .filter(referral::Column::Status.is_in(open))
        .one(db)
        .await?)
}

pub async fn create_referral(
    state: &ReferralsState,
    principal: &Principal,
    input: &pb::CreateReferralRequest,
) -> Result<Created> {
    if principal.role != Role::Teller {
        return Err(ReferralsError::PermissionDenied(format!(
            "role {} may not create referrals; tellers refer",
            principal.role
        )));
    }
    let request = parse(input)?;
    let db = &state.db;
    let referrer_id = principal.staff_id.to_string();
    if let Some(key) = &request.idempotency_key
        && let Some(existing) = find_by_key(db, &referrer_id, key).await?
    {
        return Ok(Created::New(existing));
    }
    let dedupe_key = dedupe_key(&request.subject, request.need, &state.vault);
    if let Some(existing) = find_open_duplicate(db, &dedupe_key).await? {
        return Ok(Created::Duplicate(existing));
    }

    let client_id = match &request.subject {
        Subject::Client(client_id) => Some(client_id.to_string()),
        Subject::Prospect { .. } => None,
    };
    // A client routing has not heard of yet (a projection lagging, or a customer
    // not yet in the book) is still referred: the chain starts at the teller's pair.
    let coverage = match &client_id {
        Some(id) => {
            routing_client::Entity::find_by_id(id.as_str())
                .one(db)
                .await?
        }
        None => None,
    };
    // Routing reads the branch's loads and writes the choice in one transaction,
    // one referral of a branch at a time: a burst spreads over the pool instead of
    // every concurrent call seeing the same least-loaded RM.
    let transaction = db.begin().await?;
    lock_branch(&transaction, &principal.branch_id).await?;
    let candidates = routing_inputs::load(
        &transaction,
        &principal.branch_id,
        &principal.staff_id,
        coverage.as_ref().and_then(|c| c.primary_rm_id.as_deref()),
    )
    .await?;
    let now = Utc::now();
    let decision = route(&RoutingRequest {
        branch_id: &principal.branch_id,
        teller_id: &principal.staff_id,
        primary_rm: candidates.primary_rm.as_ref(),
        paired_rm: candidates.paired_rm.as_ref(),
        branch_staff: &candidates.branch_staff,
        now,
    })
    .map_err(|error| match error {
        RoutingError::NoBranchManager(_) => ReferralsError::FailedPrecondition(error.to_string()),
    })?;
    let sla_due_at = acceptance_deadline(&state.sla, &state.calendar, request.priority, now);
    let referral_id = uuid::Uuid::now_v7().to_string();
    // The walk-in's phone is stored sealed, with the hash duplicates are found by.
    let (prospect_name, prospect_phone, prospect_phone_hash) = match &request.subject {
        Subject::Prospect { full_name, phone } => {
            let phone = Pii::new(phone.clone());
            (
                Some(full_name.clone()),
                Some(state.vault.seal(&phone)?),
                state.vault.lookup_hash(&phone),
            )
        }
        Subject::Client(_) => (None, None, String::new()),
    };
    let routing_decision = serde_json::to_string(&decision)
        .map_err(|e| ReferralsError::Corrupt(format!("routing decision: {e}")))?;

    let row = referral::ActiveModel {
        referral_id: Set(referral_id.clone()),
        // Without a key from the caller, the referral's own id keeps the unique
        // index satisfied and the request is simply not retry-safe.
        idempotency_key: Set(request
            .idempotency_key
            .clone()
            .unwrap_or_else(|| referral_id.clone())),
        client_id: Set(client_id.clone()),
        prospect_name: Set(prospect_name),
        prospect_phone: Set(prospect_phone),
        prospect_phone_hash: Set(prospect_phone_hash),
        dedupe_key: Set(Some(dedupe_key.clone())),
        escalation_level: Set(0),
        sla_stopped_at: Set(None),
        outcome_note: Set(String::new()),
        referrer_id: Set(referrer_id.clone()),
        branch_id: Set(principal.branch_id.to_string()),
        need: Set(request.need.as_str().to_owned()),
        note: Set(request.note.clone()),
        amount_minor_units: Set(request.amount_hint.as_ref().map(Money::minor_units)),
        amount_currency: Set(request
            .amount_hint
            .as_ref()
            .map(|m| m.currency().to_owned())),
        priority: Set(request.priority.as_str().to_owned()),
        status: Set(ReferralStatus::Assigned.as_str().to_owned()),
        assigned_rm_id: Set(decision.chosen_rm_id.clone()),
        routing_reason: Set(decision.reason.clone()),
        routing_decision: Set(routing_decision),
        sla_due_at: Set(sla_due_at),
        escalated: Set(decision.escalated),
        outcome: Set(None),
        outcome_product: Set(None),
        outcome_amount_minor_units: Set(None),
        accepted_at: Set(None),
        assigned_at: Set(now),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let stored = match row.insert(&transaction).await {
        Ok(stored) => stored,
        Err(error) if is_unique_violation(&error) => {
            // The same key raced in from a retry, or another teller's referral for
            // the same thing won the race: answer with the winner.
            transaction.rollback().await?;
            if let Some(key) = &request.idempotency_key
                && let Some(existing) = find_by_key(db, &referrer_id, key).await?
            {
                return Ok(Created::New(existing));
            }
            if let Some(existing) = find_open_duplicate(db, &dedupe_key).await? {
                return Ok(Created::Duplicate(existing));
            }
            return Err(error.into());
        }
        Err(error) => return Err(error.into()),
    };
    let item = work_item::ActiveModel {
        work_item_id: Set(uuid::Uuid::now_v7().to_string()),
        rm_id: Set(decision.chosen_rm_id.clone()),
        kind: Set(WorkItemKind::Referral.as_str().to_owned()),
        client_id: Set(client_id.clone()),
        title: Set(work_item_title(request.need, &request.subject)),
        detail: Set(format!("{} (routing: {})", request.note, decision.reason)),
        priority: Set(request.priority.as_str().to_owned()),
        due_at: Set(Some(sla_due_at)),
        state: Set(WorkItemState::Open.as_str().to_owned()),
        source_id: Set(referral_id.clone()),
        acked_at: Set(None),
        snoozed_until: Set(None),
        outcome: Set(None),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&transaction)
    .await?;
    lifecycle::adjust_load(&transaction, &decision.chosen_rm_id, 1, Some(now)).await?;
    let event = referral_event(&stored);
    crm_bus::outbox::enqueue_event(
        &transaction,
        SERVICE,
        REFERRAL_ASSIGNED,
        REFERRAL_ASSIGNED,
        &event,
    )
    .await?;
    announce(&transaction, &item).await?;
    let by = ChangedBy {
        actor_id: referrer_id.clone(),
        reason: stored.routing_reason.clone(),
    };
    lifecycle::record_history(
        &transaction,
        "created",
        ReferralStatus::New.as_str(),
        &stored,
        &by,
    )
    .await?;
    transaction.commit().await?;
    state.outbox.wake();
    tracing::info!(
        referral_id = %stored.referral_id,
        assigned_rm_id = %stored.assigned_rm_id,
        routing_reason = %stored.routing_reason,
        "referral routed"
    );
    Ok(Created::New(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(input: &pb::CreateReferralRequest) -> Vec<String> {
        match parse(input) {
            Ok(_) => Vec::new(),
            Err(violations) => violations.iter().map(|v| v.field.clone()).collect(),
        }
    }

    #[test]
    fn every_bad_field_is_named_once() {
        let input = pb::CreateReferralRequest {
            client_id: "not a customer number".into(),
            need: 0,
            priority: 0,
            note: "x".repeat(10 * 1024),
            ..Default::default()
        };
        assert_eq!(
            fields(&input),
            vec!["client_id", "need", "priority", "note"]
        );
    }

    #[test]
    fn neither_client_nor_prospect_is_one_violation() {
        let input = pb::CreateReferralRequest {
            need: pb::Need::Loan as i32,
            priority: pb::Priority::Normal as i32,
            ..Default::default()
        };
        assert_eq!(fields(&input), vec!["client_id"]);
    }

    #[test]
    fn a_walk_in_prospect_needs_a_name_and_a_phone() {
        let input = pb::CreateReferralRequest {
            prospect: Some(pb::Prospect {
                full_name: " ".into(),
                phone: "12".into(),
            }),
            need: pb::Need::Loan as i32,
            priority: pb::Priority::Normal as i32,
            ..Default::default()
        };
        assert_eq!(fields(&input), vec!["prospect.full_name", "prospect.phone"]);
    }
}
