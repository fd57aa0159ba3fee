//! A client's timeline: their core-banking events, the alerts and follow-ups asked
//! of their RM, their referrals, interactions and campaign tasks, newest first.
//!
//! The events service keeps it from what it has (`bank_events`) and from the
//! messages the other services publish (`timeline_entries`); it reads no other
//! service's tables. A page merges the two in one order (time, then source, then
//! id), and its token is signed for the caller and the client. Who may read it is
//! the suite's one access rule (crm_domain::client_access, as GetClient applies
//! it) on this service's copy of the client's coverage, and every read or refusal
//! goes to the audit trail like a read of the client.

use chrono::{DateTime, Utc};
use crm_audit::{Actor, ClientRef, Entry};
use crm_auth::page_token::PageTokens;
use crm_bus::HandlerError;
use crm_domain::client_access::{self, Coverage};
use crm_domain::messages::{
    InteractionLogged, ReferralEvent, WorkItemCompleted, WorkItemsRequested,
};
use crm_domain::referral::WorkItemKind;
use crm_domain::{ClientId, Role, Violations};
use crm_grpc::RpcError;
use crm_proto::v1 as pb;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use crate::SERVICE;
use crate::error::{EventsError, Result};
use crate::ingest::{Direction, EventDetail, TransferStatus};
use crate::store::{bank_event, event_client, timeline_entry};

/// The audit trail's name for a read of a timeline.
const READ: &str = "timeline.read";
const OUTSIDE_SCOPE: &str = "client is outside your scope";

/// Where a line comes from; orders lines of the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    BankEvent = 0,
    Entry = 1,
}

/// A line's place in the timeline: newest first means descending in this.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    at_micros: i64,
    source: Source,
    id: String,
}

impl Position {
    fn key(&self) -> String {
        format!("{}:{}:{}", self.at_micros, self.source as u8, self.id)
    }

    fn parse(key: &str) -> Option<Position> {
        let mut parts = key.splitn(3, ':');
        let at_micros = parts.next()?.parse().ok()?;
        let source = match parts.next()? {
            "0" => Source::BankEvent,
            "1" => Source::Entry,
            _ => return None,
        };
        Some(Position {
            at_micros,
            source,
            id: parts.next()?.to_owned(),
        })
    }

    /// Rows of `source` that come after this position (older, in timeline order).
    fn older_rows(&self, source: Source, at: impl ColumnTrait, id: impl ColumnTrait) -> Condition {
        let instant = DateTime::<Utc>::from_timestamp_micros(self.at_micros).unwrap_or_default();
        let same_instant = match source.cmp(&self.source) {
            std::cmp::Ordering::Less => Condition::all().add(at.eq(instant)),
            std::cmp::Ordering::Equal => Condition::all()
                .add(at.eq(instant))
                .add(id.lt(self.id.as_str())),
            // An empty `any` is false: no row of a later source at that instant.
            std::cmp::Ordering::Greater => Condition::any(),
        };
        Condition::any().add(at.lt(instant)).add(same_instant)
    }
}

struct Line {
    position: Position,
    entry: pb::TimelineEntry,
}

fn money_words(detail: &EventDetail) -> (String, String) {
    match detail {
        EventDetail::BalanceSnapshot {
            balance,
            as_of_date,
        } => (
            format!("Closing balance {balance}"),
            format!("Balance at the close of {as_of_date}."),
        ),
        EventDetail::Transfer {
            amount,
            direction,
            counterparty_bank,
            own_bank,
            channel,
            status,
            branch_id,
            transfer_reference,
        } => {
            let (way, preposition) = match direction {
                Direction::In => ("in", "from"),
                Direction::Out => ("out", "to"),
            };
            let bank = if *own_bank {
                "an account of this bank".to_owned()
            } else if counterparty_bank.is_empty() {
                "another bank".to_owned()
            } else {
                counterparty_bank.clone()
            };
            let status = match status {
                TransferStatus::Pending => "pending",
                TransferStatus::Posted => "posted",
            };
            let mut detail = format!("Transfer {status}");
            if !channel.is_empty() {
                detail.push_str(&format!(", channel {channel}"));
            }
            if let Some(branch) = branch_id {
                detail.push_str(&format!(", at branch {branch}"));
            }
            if let Some(reference) = transfer_reference {
                detail.push_str(&format!(", reference {reference}"));
            }
            detail.push('.');
            (
                format!("Transfer {way} {amount} {preposition} {bank}"),
                detail,
            )
        }
        EventDetail::ProductMaturity {
            product_id,
            product_name,
            amount,
            maturity_date,
        } => (
            format!("{product_name} matures on {maturity_date}"),
            format!("Product {product_id}, {amount} maturing."),
        ),
        EventDetail::PayrollCredit {
            employer_id,
            amount,
        } => (
            format!("Salary {amount}"),
            format!("Payroll credit from employer {employer_id}."),
        ),
    }
}

fn line_of_event(row: bank_event::Model) -> Result<Line> {
    let detail: EventDetail = serde_json::from_str(&row.detail)
        .map_err(|error| EventsError::Corrupt(format!("event {}: {error}", row.event_id)))?;
    let (title, detail) = money_words(&detail);
    Ok(Line {
        position: Position {
            at_micros: row.occurred_at.timestamp_micros(),
            source: Source::BankEvent,
            id: row.event_id.clone(),
        },
        entry: pb::TimelineEntry {
            entry_kind: "event".into(),
            entry_id: row.event_id,
            title,
            detail,
            occurred_at: Some(crm_grpc::wire::timestamp(row.occurred_at)),
        },
    })
}

fn line_of_entry(row: timeline_entry::Model) -> Line {
    Line {
        position: Position {
            at_micros: row.occurred_at.timestamp_micros(),
            source: Source::Entry,
            id: row.timeline_id,
        },
        entry: pb::TimelineEntry {
            entry_kind: row.entry_kind,
            entry_id: row.entry_id,
            title: row.title,
            detail: row.detail,
            occurred_at: Some(crm_grpc::wire::timestamp(row.occurred_at)),
        },
    }
}

/// Up to `limit + 1` lines after `after`, newest first.
async fn lines(
    db: &impl ConnectionTrait,
    client_id: &str,
    after: Option<&Position>,
    limit: u64,
) -> Result<Vec<Line>> {
    let mut events = bank_event::Entity::find()
        .filter(bank_event::Column::ClientId.eq(client_id))
        .order_by_desc(bank_event::Column::OccurredAt)
        .order_by_desc(bank_event::Column::EventId)
        .limit(limit + 1);
    let mut entries = timeline_entry::Entity::find()
        .filter(timeline_entry::Column::ClientId.eq(client_id))
        .order_by_desc(timeline_entry::Column::OccurredAt)
        .order_by_desc(timeline_entry::Column::TimelineId)
        .limit(limit + 1);
    if let Some(after) = after {
        events = events.filter(after.older_rows(
            Source::BankEvent,
            bank_event::Column::OccurredAt,
            bank_event::Column::EventId,
        ));
        entries = entries.filter(after.older_rows(
            Source::Entry,
            timeline_entry::Column::OccurredAt,
            timeline_entry::Column::TimelineId,
        ));
    }
    let mut lines = events
        .all(db)
        .await?
        .into_iter()
        .map(line_of_event)
        .collect::<Result<Vec<_>>>()?;
    lines.extend(entries.all(db).await?.into_iter().map(line_of_entry));
    lines.sort_by(|a, b| b.position.cmp(&a.position));
    lines.truncate(usize::try_from(limit + 1).unwrap_or(usize::MAX));
    Ok(lines)
}

fn coverage_of(client: &event_client::Model) -> Coverage<'_> {
    Coverage {
        home_branch_id: &client.home_branch_id,
        primary_rm_id: client.primary_rm_id.as_deref(),
        wealth_manager_id: client.wealth_manager_id.as_deref(),
        private_banker_id: client.private_banker_id.as_deref(),
    }
}

/// Writes the refusal to the trail and answers PERMISSION_DENIED (or the failure
/// to write it: a refusal is never unrecorded).
async fn refuse(db: &crm_store::Db, actor: &Actor, entry: Entry) -> EventsError {
    let why = entry.reason.clone();
    let recorded = async {
        let transaction = db.begin().await?;
        crm_audit::record_via_outbox(&transaction, SERVICE, actor, [entry]).await?;
        transaction.commit().await?;
        Ok::<_, EventsError>(())
    };
    match recorded.await {
        Ok(()) => EventsError::Rpc(RpcError::PermissionDenied(why)),
        Err(error) => error,
    }
}

/// GetClientTimeline.
pub async fn read(
    db: &crm_store::Db,
    vault: &crm_store::Vault,
    actor: &Actor,
    input: &pb::GetClientTimelineRequest,
) -> Result<pb::GetClientTimelineResponse> {
    let mut violations = Violations::new();
    let client_id = violations.check("client_id", ClientId::parse(&input.client_id));
    let page_size = violations.check("page_size", crm_grpc::wire::page_size(input.page_size));
    let tokens = PageTokens::new(
        vault,
        &actor.principal,
        &[("timeline", input.client_id.as_str())],
    );
    let after = violations.check("page_token", tokens.read(&input.page_token));
    let after = match after.flatten() {
        Some(key) => match Position::parse(&key) {
            Some(position) => Some(Some(position)),
            None => {
                violations.add("page_token", "is not a page token of this timeline");
                None
            }
        },
        None => Some(None),
    };
    let (client_id, page_size, after) =
        violations.finish(|| Some((client_id?, page_size?, after?)))?;
    let Some(client) = crate::client_copy::find(db, client_id.as_str()).await? else {
        // Only a caller who may see every client learns that it does not exist.
        if matches!(actor.principal.role, Role::System | Role::CampaignAdmin) {
            return Err(EventsError::Rpc(RpcError::NotFound(format!(
                "client {client_id}"
            ))));
        }
        let entry = Entry::denied(READ, None, client_id.as_str(), OUTSIDE_SCOPE);
        return Err(refuse(db, actor, entry).await);
    };
    let subject = ClientRef {
        client_id: &client.client_id,
        home_branch_id: &client.home_branch_id,
    };
    match client_access::client_view(actor.principal.caller(), &coverage_of(&client)) {
        None => {
            let entry = Entry::denied(READ, Some(subject), "", OUTSIDE_SCOPE);
            return Err(refuse(db, actor, entry).await);
        }
        // A campaign admin sees a client's name and tier, not their money.
        Some(client_access::ClientView::NameAndTier) => {
            let entry = Entry::denied(
                READ,
                Some(subject),
                "",
                "your role sees a client's name and tier only",
            );
            return Err(refuse(db, actor, entry).await);
        }
        Some(client_access::ClientView::Full | client_access::ClientView::Masked) => {}
    }
    let mut lines = lines(db, client_id.as_str(), after.as_ref(), page_size).await?;
    let more = lines.len() as u64 > page_size;
    lines.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
    let next_page_token = match lines.last() {
        Some(last) if more => tokens.issue(&last.position.key()),
        _ => String::new(),
    };
    // The read is on the trail before the answer leaves, or it fails.
    let transaction = db.begin().await?;
    crm_audit::record_via_outbox(
        &transaction,
        SERVICE,
        actor,
        [Entry::allowed(READ, subject)],
    )
    .await?;
    transaction.commit().await?;
    Ok(pb::GetClientTimelineResponse {
        entries: lines.into_iter().map(|line| line.entry).collect(),
        next_page_token,
    })
}

/// Stores timeline lines; a line already there (a redelivery) stays as it is.
async fn save(
    transaction: &DatabaseTransaction,
    rows: Vec<timeline_entry::Model>,
) -> std::result::Result<(), HandlerError> {
    if rows.is_empty() {
        return Ok(());
    }
    // Large requests (a campaign's launch) go in chunks: PostgreSQL takes at most
    // 65,535 parameters a statement.
    for chunk in rows.chunks(1_000) {
        timeline_entry::Entity::insert_many(
            chunk
                .iter()
                .cloned()
                .map(sea_orm::IntoActiveModel::into_active_model),
        )
        .on_conflict(
            OnConflict::column(timeline_entry::Column::TimelineId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(transaction)
        .await?;
    }
    Ok(())
}

fn work_line_id(requested_by: &str, source_key: &str) -> String {
    format!("work:{requested_by}:{source_key}")
}

/// Work any service asked of a client's RM: alerts, follow-ups, campaign tasks.
pub async fn record_requested(
    transaction: &DatabaseTransaction,
    request: &WorkItemsRequested,
    at: DateTime<Utc>,
) -> std::result::Result<(), HandlerError> {
    let rows = request
        .items
        .iter()
        .map(|item| timeline_entry::Model {
            timeline_id: work_line_id(&request.requested_by, &item.source_key),
            client_id: item.client_id.clone(),
            entry_kind: match item.kind {
                WorkItemKind::CampaignTask => "campaign_task",
                WorkItemKind::Alert | WorkItemKind::FollowUp => "alert",
                WorkItemKind::Referral => "referral",
                WorkItemKind::Appointment => "appointment",
            }
            .to_owned(),
            entry_id: item.source_key.clone(),
            title: item.title.clone(),
            detail: item.detail.clone(),
            occurred_at: at,
        })
        .collect();
    save(transaction, rows).await
}

/// The RM finished work a service asked for: a line under the same client.
pub async fn record_completed(
    transaction: &DatabaseTransaction,
    completed: &WorkItemCompleted,
) -> std::result::Result<(), HandlerError> {
    let asked = timeline_entry::Entity::find_by_id(work_line_id(
        &completed.requested_by,
        &completed.source_key,
    ))
    .one(transaction)
    .await?;
    // Asked before this service kept a timeline: nothing to hang the line on.
    let Some(asked) = asked else {
        return Ok(());
    };
    let row = timeline_entry::Model {
        timeline_id: format!("done:{}", completed.work_item_id),
        client_id: asked.client_id,
        entry_kind: asked.entry_kind,
        entry_id: asked.entry_id,
        title: format!("Done: {}", asked.title),
        detail: if completed.outcome.is_empty() {
            format!("Completed by {}.", completed.rm_id)
        } else {
            format!("Completed by {}: {}", completed.rm_id, completed.outcome)
        },
        occurred_at: completed.completed_at,
    };
    save(transaction, vec![row]).await
}

/// A referral of a client was made, closed, expired or linked.
pub async fn record_referral(
    transaction: &DatabaseTransaction,
    message_type: &str,
    referral: &ReferralEvent,
) -> std::result::Result<(), HandlerError> {
    // A walk-in's referral joins a timeline when it is linked to the client.
    let Some(client_id) = referral.client_id.clone() else {
        return Ok(());
    };
    let what = match message_type {
        crm_domain::messages::REFERRAL_ASSIGNED => "assigned",
        crm_domain::messages::REFERRAL_OUTCOME_RECORDED => "closed",
        crm_domain::messages::REFERRAL_EXPIRED => "expired",
        crm_domain::messages::REFERRAL_LINKED => "linked to the client",
        _ => "changed",
    };
    let row = timeline_entry::Model {
        timeline_id: format!(
            "referral:{}:{message_type}:{}",
            referral.referral_id,
            referral.occurred_at.timestamp_micros()
        ),
        client_id,
        entry_kind: "referral".into(),
        entry_id: referral.referral_id.clone(),
        title: format!("Referral {what}: {}", referral.need),
        detail: format!(
            "Referred by {} at branch {}; {} ({} priority), RM {}.",
            referral.referrer_id,
            referral.branch_id,
            referral.status,
            referral.priority,
            if referral.assigned_rm_id.is_empty() {
                "not yet assigned"
            } else {
                &referral.assigned_rm_id
            }
        ),
        occurred_at: referral.occurred_at,
    };
    save(transaction, vec![row]).await
}

/// An RM's contact with the client.
pub async fn record_interaction(
    transaction: &DatabaseTransaction,
    interaction: &InteractionLogged,
) -> std::result::Result<(), HandlerError> {
    let row = timeline_entry::Model {
        timeline_id: format!("interaction:{}", interaction.interaction_id),
        client_id: interaction.client_id.clone(),
        entry_kind: "interaction".into(),
        entry_id: interaction.interaction_id.clone(),
        title: format!("Contact by {}", interaction.channel),
        detail: format!("{} contacted the client.", interaction.staff_id),
        occurred_at: interaction.occurred_at,
    };
    save(transaction, vec![row]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_survives_its_key_and_orders_newest_first() {
        let event = Position {
            at_micros: 5,
            source: Source::BankEvent,
            id: "e:1".into(),
        };
        assert_eq!(Position::parse(&event.key()), Some(event.clone()));
        let entry_same_instant = Position {
            at_micros: 5,
            source: Source::Entry,
            id: "a".into(),
        };
        let older = Position {
            at_micros: 4,
            source: Source::Entry,
            id: "z".into(),
        };
        let mut positions = vec![older.clone(), event.clone(), entry_same_instant.clone()];
        positions.sort_by(|a, b| b.cmp(a));
        assert_eq!(positions, vec![entry_same_instant, event, older]);
        assert_eq!(Position::parse("x:0:y"), None);
        assert_eq!(Position::parse("1:7:y"), None);
    }
}
