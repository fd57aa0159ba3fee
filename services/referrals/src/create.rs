//! CreateReferral: validate, route, and write referral + work item + messages in one
//! transaction.

use crate::store::{referral, routing_client, work_item};
use chrono::{DateTime, Utc};
use crm_auth::{Principal, principal_of};
use crm_domain::messages::REFERRAL_ASSIGNED;
use crm_domain::pii::Pii;
use crm_domain::referral::{Need, Priority, ReferralStatus, WorkItemKind, WorkItemState};
use crm_domain::routing::{NobodyToRoute, RoutingDecision, RoutingRequest, route};
use crm_domain::sla::{BusinessCalendar, acceptance_deadline};
use crm_domain::validation::check_text;
use crm_domain::{ClientId, Money, Role, Violations};
use crm_grpc::WireEnum;
use crm_proto::v1 as pb;
use crm_store::WriteBatch;
use crm_store::db::is_unique_violation;
use sea_orm::sea_query::{SelectStatement, UnionType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter,
    QueryTrait, TransactionTrait,
};
use tonic::{Request, Response};

use crate::access::may_read_referral;
use crate::error::{ReferralsError, Result};
use crate::referral_changes::{self, ChangedBy};
use crate::referral_wire::{duplicate_existence, duplicate_summary, to_proto};
use crate::work_item_feed::announcement_row;
use crate::{ReferralsState, calendars, routing_inputs};

/// A note longer than this is not a note.
const MAX_NOTE_CHARS: usize = 2000;

enum Subject {
    Client(ClientId),
    /// A walk-in: the phone is personal data from the moment it is parsed.
    Prospect {
        full_name: String,
        phone: Pii,
    },
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
    } else if !crm_domain::validation::is_token(key, 128) {
        // A token a counter app makes (a UUID, its own request number): printable
        // ASCII, no spaces or control characters, which some databases can't store.
        violations.add("idempotency_key", "must be printable ASCII without spaces");
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
                phone: Pii::new(prospect.phone.clone()),
            })
        }
        (true, None) => {
            violations.add("client_id", "either client_id or prospect is required");
            None
        }
    };
    let need = Need::from_proto(input.need);
    if need.is_none() {
        violations.add("need", "must be a known need, not UNSPECIFIED");
    }
    let priority = Priority::from_proto(input.priority);
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

/// What CreateReferral did: made a new referral, or found the open one for the
/// same client (or walk-in phone) and need.
pub enum Created {
    New(referral::Model),
    Duplicate(referral::Model),
}

/// `client:<id>:<need>` or `phone:<lookup hash>:<need>`: unique among open
/// referrals (a partial unique index holds it under races). The first is the key
/// a new referral is stored under; a walk-in's others are its phone's hashes under
/// the keys CRM_PII_KEY replaced, so an open referral recorded before a rotation
/// is still found as the duplicate.
fn dedupe_keys(subject: &Subject, need: Need, vault: &crm_store::Vault) -> Vec<String> {
    match subject {
        Subject::Client(client_id) => vec![format!("client:{client_id}:{}", need.as_str())],
        Subject::Prospect { phone, .. } => vault
            .lookup_hashes(phone)
            .into_iter()
            .map(|hash| phone_dedupe_key(&hash, need.as_str()))
            .collect(),
    }
}

/// A walk-in's dedupe key: their phone's lookup hash and the need.
pub(crate) fn phone_dedupe_key(phone_hash: &str, need: &str) -> String {
    format!("phone:{phone_hash}:{need}")
}

/// Names one create request: who asked, and their key.
pub fn request_key(referrer_id: &str, idempotency_key: &str) -> String {
    format!("{referrer_id}/{idempotency_key}")
}

/// The query of [`find_existing`]: the referral of `own_key` (a request key), if
/// any, and the open referral of `dedupe_key`.
///
/// Two indexed lookups glued by UNION ALL rather than one OR: on a young table
/// without statistics the planner answers the OR with a sequential scan, and keeps
/// that cached plan while the table grows (tests/tests/outbox_and_plans.rs).
pub fn earlier_request_query(own_key: Option<&str>, dedupe_keys: &[String]) -> SelectStatement {
    let open: Vec<&str> = ReferralStatus::OPEN.iter().map(|s| s.as_str()).collect();
    let open_duplicate = referral::Entity::find()
        .filter(referral::Column::DedupeKey.is_in(dedupe_keys))
        .filter(referral::Column::Status.is_in(open))
        .into_query();
    match own_key {
        Some(own_key) => referral::Entity::find()
            .filter(referral::Column::RequestKey.eq(own_key))
            .into_query()
            .union(UnionType::All, open_duplicate)
            .to_owned(),
        None => open_duplicate,
    }
}

/// What an earlier request already made: the caller's own referral under the same
/// idempotency key (a retry gets what it made), or else the open referral for the
/// same subject and need. One query for both: it runs on every create.
async fn find_existing(
    db: &impl ConnectionTrait,
    referrer_id: &str,
    idempotency_key: Option<&str>,
    dedupe_keys: &[String],
) -> Result<Option<Created>> {
    let own_key = idempotency_key.map(|key| request_key(referrer_id, key));
    let query = earlier_request_query(own_key.as_deref(), dedupe_keys);
    let backend = db.get_database_backend();
    let rows = referral::Entity::find()
        .from_raw_sql(backend.build(&query))
        .all(db)
        .await?;
    let is_own = |row: &referral::Model| own_key.as_ref() == Some(&row.request_key);
    if let Some(own) = rows.iter().find(|row| is_own(row)) {
        return Ok(Some(Created::New(own.clone())));
    }
    Ok(rows.into_iter().next().map(Created::Duplicate))
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
    let dedupe_keys = dedupe_keys(&request.subject, request.need, &state.vault);
    // Stored under the current key's; found under any.
    let dedupe_key = dedupe_keys.first().cloned().unwrap_or_default();
    let key = request.idempotency_key.as_deref();
    if let Some(existing) = find_existing(db, &referrer_id, key, &dedupe_keys).await? {
        return Ok(existing);
    }

    let client_id = match &request.subject {
        Subject::Client(client_id) => Some(client_id.to_string()),
        Subject::Prospect { .. } => None,
    };
    // A client routing has not heard of yet (a projection lagging, or a customer
    // not yet in the book) is still referred: the chain starts at the teller's pair.
    let primary_rm_id = match &client_id {
        Some(id) => routing_client::Entity::find_by_id(id.as_str())
            .one(db)
            .await?
            .and_then(|coverage| coverage.primary_rm_id),
        None => None,
    };
    let calendar = calendars::for_branch(db, principal.branch_id.as_str(), &state.calendar).await?;
    let paired_rm_id =
        routing_inputs::paired_rm_id(db, &principal.staff_id, calendar.time_zone).await?;
    let transaction = db.begin().await?;
    let now = Utc::now();
    let routed = route_in(&transaction, principal, primary_rm_id, paired_rm_id, now).await?;
    // A valid referral is always taken: with nobody to give it to yet it waits,
    // unassigned, and is routed as soon as someone is there (waiting.rs).
    let (decision, assigned) = match routed {
        Ok(decision) => (decision, true),
        Err(nobody) => (nobody.waiting_decision(), false),
    };
    let stored = new_referral(
        state,
        principal,
        &request,
        &decision,
        &dedupe_key,
        &calendar,
        now,
    )?;
    let by = ChangedBy {
        actor_id: referrer_id.clone(),
        reason: stored.routing_reason.clone(),
    };
    let mut writes = WriteBatch::new();
    writes.insert(stored.clone().into_active_model());
    let mut messages = Vec::new();
    if assigned {
        let item = new_work_item(&stored, &decision);
        messages.push(referral_changes::event_row(REFERRAL_ASSIGNED, &stored)?);
        messages.push(announcement_row(&item)?);
        writes
            .insert(item.into_active_model())
            .update(referral_changes::load_change(
                &decision.chosen_rm_id,
                1,
                Some(now),
            ));
    }
    let message_ids: Vec<String> = messages
        .iter()
        .filter_map(|row| row.message_id.try_as_ref().cloned())
        .collect();
    writes
        .insert_many(messages)
        .insert(referral_changes::history_row(
            "created",
            ReferralStatus::New,
            &stored,
            &by,
        ));
    if let Err(error) = writes.execute(&transaction).await {
        transaction.rollback().await?;
        // The same key raced in from a retry, or another teller's referral for
        // the same thing won the race: answer with the winner.
        if is_unique_violation(&error)
            && let Some(existing) = find_existing(db, &referrer_id, key, &dedupe_keys).await?
        {
            return Ok(existing);
        }
        return Err(error.into());
    }
    transaction.commit().await?;
    state.outbox.committed(message_ids);
    if stored.status == ReferralStatus::New {
        tracing::warn!(
            referral_id = %stored.referral_id,
            branch_id = %stored.branch_id,
            "referral waits for routing: nobody in the branch to give it to yet"
        );
        return Ok(Created::New(stored));
    }
    tracing::info!(
        referral_id = %stored.referral_id,
        assigned_rm_id = %stored.assigned_rm_id,
        routing_reason = %stored.routing_reason,
        "referral routed"
    );
    Ok(Created::New(stored))
}

/// Runs the routing chain inside `transaction`.
///
/// When the client's primary RM or the teller's paired RM can take it, the
/// choice names them and depends on nothing else routed in the branch: it is
/// made from those two rows alone, without the branch's lock. Otherwise the
/// choice is among the branch pool by load, and is made one referral of a branch
/// at a time: the branch's lock, then the pool's loads as they are now, so a
/// burst spreads over the pool instead of every concurrent call seeing the same
/// least-loaded RM. After the lock come only three round trips: the loads, the
/// writes as one batch, the commit.
async fn route_in(
    transaction: &DatabaseTransaction,
    principal: &Principal,
    primary_rm_id: Option<String>,
    paired_rm_id: Option<String>,
    now: DateTime<Utc>,
) -> Result<std::result::Result<RoutingDecision, NobodyToRoute>> {
    let request = |candidates: &routing_inputs::Candidates| {
        route(&RoutingRequest {
            branch_id: &principal.branch_id,
            teller_id: Some(&principal.staff_id),
            primary_rm: candidates.primary_rm.as_ref(),
            paired_rm: candidates.paired_rm.as_ref(),
            branch_staff: &candidates.branch_staff,
            now,
        })
    };
    if primary_rm_id.is_some() || paired_rm_id.is_some() {
        let named = routing_inputs::load_named(
            transaction,
            primary_rm_id.as_deref(),
            paired_rm_id.as_deref(),
        )
        .await?;
        if let Ok(decision) = request(&named)
            && decision.is_named()
        {
            return Ok(Ok(decision));
        }
    }
    routing_inputs::lock_branch(transaction, principal.branch_id.as_str()).await?;
    let candidates = routing_inputs::load(
        transaction,
        &principal.branch_id,
        primary_rm_id.as_deref(),
        paired_rm_id.as_deref(),
    )
    .await?;
    Ok(request(&candidates))
}

/// The referral as routing decided it, ready to insert.
fn new_referral(
    state: &ReferralsState,
    principal: &Principal,
    request: &NewReferral,
    decision: &RoutingDecision,
    dedupe_key: &str,
    calendar: &BusinessCalendar,
    now: DateTime<Utc>,
) -> Result<referral::Model> {
    let sla_due_at = acceptance_deadline(&state.sla, calendar, request.priority, now);
    let referral_id = uuid::Uuid::now_v7().to_string();
    // The walk-in's phone is stored sealed, with the hash duplicates are found by.
    let (client_id, prospect_name, prospect_phone, prospect_phone_hash) = match &request.subject {
        Subject::Prospect { full_name, phone } => (
            None,
            Some(full_name.clone()),
            Some(state.vault.seal(phone)?),
            state.vault.lookup_hash(phone),
        ),
        Subject::Client(client_id) => (Some(client_id.to_string()), None, None, String::new()),
    };
    let routing_decision = serde_json::to_string(decision)
        .map_err(|e| ReferralsError::Corrupt(format!("routing decision: {e}")))?;
    // Without a key from the caller, the referral's own id keeps the unique index
    // satisfied and the request is simply not retry-safe.
    let idempotency_key = request
        .idempotency_key
        .clone()
        .unwrap_or_else(|| referral_id.clone());
    let referrer_id = principal.staff_id.to_string();
    Ok(referral::Model {
        request_key: request_key(&referrer_id, &idempotency_key),
        idempotency_key,
        referral_id,
        client_id,
        prospect_name,
        prospect_phone,
        prospect_phone_hash,
        dedupe_key: Some(dedupe_key.to_owned()),
        escalation_level: 0,
        sla_stopped_at: None,
        outcome_note: String::new(),
        referrer_id,
        branch_id: principal.branch_id.to_string(),
        need: request.need,
        note: request.note.clone(),
        amount_minor_units: request.amount_hint.as_ref().map(Money::minor_units),
        amount_currency: request
            .amount_hint
            .as_ref()
            .map(|m| m.currency().to_owned()),
        priority: request.priority,
        // Nobody chosen: it waits, NEW, until routing can place it.
        status: if decision.chosen_rm_id.is_empty() {
            ReferralStatus::New
        } else {
            ReferralStatus::Assigned
        },
        assigned_rm_id: decision.chosen_rm_id.clone(),
        routing_reason: decision.reason.clone(),
        routing_decision,
        sla_due_at,
        escalated: decision.escalated,
        outcome: None,
        outcome_product: None,
        outcome_amount_minor_units: None,
        accepted_at: None,
        assigned_at: now,
        created_at: now,
        updated_at: now,
    })
}

/// The chosen RM's work item for a new referral.
fn new_work_item(stored: &referral::Model, decision: &RoutingDecision) -> work_item::Model {
    work_item::Model {
        work_item_id: uuid::Uuid::now_v7().to_string(),
        rm_id: decision.chosen_rm_id.clone(),
        kind: WorkItemKind::Referral,
        client_id: stored.client_id.clone(),
        title: referral_changes::work_item_title(stored),
        detail: format!("{} (routing: {})", stored.note, decision.reason),
        priority: stored.priority,
        due_at: Some(stored.sla_due_at),
        state: WorkItemState::Open,
        source_id: stored.referral_id.clone(),
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
        created_at: stored.created_at,
        updated_at: stored.created_at,
    }
}

impl crate::service::Referrals {
    #[tracing::instrument(skip_all, fields(referrer_id))]
    pub(crate) async fn handle_create_referral(
        &self,
        request: Request<pb::CreateReferralRequest>,
    ) -> Result<Response<pb::CreateReferralResponse>> {
        let principal = principal_of(&request)?;
        tracing::Span::current().record("referrer_id", principal.staff_id.as_str());
        let created = create_referral(&self.state, &principal, request.get_ref()).await?;
        let response = match created {
            Created::New(stored) => pb::CreateReferralResponse {
                referral: Some(to_proto(stored, &principal, &self.state.vault)?),
                duplicate_held_by: String::new(),
            },
            // The open referral for the same thing, whole if the caller may read
            // it, otherwise only that it exists and who holds it.
            // The open referral for the same thing: whole if the caller may read
            // it; to a teller of its own branch, that it exists and who holds it;
            // to anyone else, only that it exists — a counter in another branch
            // must not learn, client by client, who serves whom across the bank.
            Created::Duplicate(existing) => {
                if may_read_referral(&principal, &existing) {
                    let id = existing.referral_id.clone();
                    let held_by = existing.assigned_rm_id.clone();
                    pb::CreateReferralResponse {
                        referral: Some(pb::Referral {
                            duplicate_of: id,
                            ..to_proto(existing, &principal, &self.state.vault)?
                        }),
                        duplicate_held_by: held_by,
                    }
                } else if existing.branch_id == principal.branch_id.as_str() {
                    pb::CreateReferralResponse {
                        duplicate_held_by: existing.assigned_rm_id.clone(),
                        referral: Some(duplicate_summary(&existing)),
                    }
                } else {
                    pb::CreateReferralResponse {
                        referral: Some(duplicate_existence(&existing)),
                        duplicate_held_by: String::new(),
                    }
                }
            }
        };
        Ok(Response::new(response))
    }
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
