//! Taking core-banking events in: each checked on its own (a bad one is rejected
//! with its reason and the rest are kept), each taken once by `event_id` (a resend
//! after a timeout changes nothing and says `duplicate`), stored append-only.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use crm_domain::validation::is_token;
use crm_domain::{BranchId, ClientId, Money};
use crm_grpc::wire;
use crm_proto::v1 as pb;
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, EntityName, Iden, IntoActiveModel};
use serde::{Deserialize, Serialize};

use crate::error::{EventsError, Result};
use crate::store::{bank_event, bank_event_id, held_event};

/// Events in one IngestEvents call, at most.
pub const MAX_BATCH: usize = 1_000;

/// An event dated further ahead than this is a clock or a data error.
const MAX_FUTURE_SKEW: chrono::Duration = chrono::Duration::days(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    Out,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    Pending,
    Posted,
}

/// What happened, by kind: the stored `detail` of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventDetail {
    BalanceSnapshot {
        balance: Money,
        as_of_date: NaiveDate,
    },
    Transfer {
        amount: Money,
        direction: Direction,
        counterparty_bank: String,
        own_bank: bool,
        channel: String,
        status: TransferStatus,
        branch_id: Option<String>,
        #[serde(default)]
        transfer_reference: Option<String>,
    },
    ProductMaturity {
        product_id: String,
        product_name: String,
        amount: Money,
        maturity_date: NaiveDate,
    },
    PayrollCredit {
        employer_id: String,
        amount: Money,
    },
}

impl EventDetail {
    pub fn kind(&self) -> &'static str {
        match self {
            EventDetail::BalanceSnapshot { .. } => "balance_snapshot",
            EventDetail::Transfer { .. } => "transfer",
            EventDetail::ProductMaturity { .. } => "product_maturity",
            EventDetail::PayrollCredit { .. } => "payroll_credit",
        }
    }
}

/// One event that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankEvent {
    pub event_id: String,
    pub client_id: String,
    pub occurred_at: DateTime<Utc>,
    pub detail: EventDetail,
}

/// A positive amount (transfers, maturities, payroll): zero moves nothing.
fn amount(field: &str, money: Option<&pb::Money>) -> std::result::Result<Money, String> {
    let money = money.ok_or_else(|| format!("{field} is required"))?;
    let parsed = Money::parse(money.minor_units, &money.currency)
        .map_err(|error| format!("{field}: {error}"))?;
    if parsed.minor_units() <= 0 {
        return Err(format!("{field} must be more than zero"));
    }
    Ok(parsed)
}

fn text(
    field: &str,
    value: &str,
    required: bool,
    max: usize,
) -> std::result::Result<String, String> {
    let trimmed = value.trim();
    if required && trimmed.is_empty() {
        return Err(format!("{field} is required"));
    }
    if value.chars().count() > max {
        return Err(format!("{field} must be at most {max} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

fn date(field: &str, value: Option<&pb::Date>) -> std::result::Result<NaiveDate, String> {
    let value = value.ok_or_else(|| format!("{field} is required"))?;
    wire::date_from_proto(value).map_err(|error| format!("{field}: {error}"))
}

/// The first day of the oldest month kept (events before it are past retention).
pub fn retention_start(now: DateTime<Utc>, months: u32) -> NaiveDate {
    let months_now = now.year() * 12 + now.month0() as i32 - months as i32;
    NaiveDate::from_ymd_opt(
        months_now.div_euclid(12),
        months_now.rem_euclid(12) as u32 + 1,
        1,
    )
    .unwrap_or(NaiveDate::MIN)
}

/// Checks one event; why not, in words for the integration team.
pub fn check(
    event: &pb::BankEvent,
    now: DateTime<Utc>,
    kept_from: NaiveDate,
) -> std::result::Result<BankEvent, String> {
    let event_id = event.event_id.as_str();
    if event_id.is_empty() || !is_token(event_id, 128) {
        return Err("event_id must be 1 to 128 printable ASCII characters without spaces".into());
    }
    ClientId::parse(&event.client_id).map_err(|error| format!("client_id: {error}"))?;
    let occurred_at = event
        .occurred_at
        .as_ref()
        .ok_or("occurred_at is required")?;
    let occurred_at =
        wire::datetime(occurred_at).map_err(|error| format!("occurred_at: {error}"))?;
    if occurred_at > now + MAX_FUTURE_SKEW {
        return Err("occurred_at is more than a day in the future".into());
    }
    if occurred_at.date_naive() < kept_from {
        return Err(format!(
            "occurred_at is before {kept_from}, past the retention (CRM_EVENT_RETENTION_MONTHS)"
        ));
    }
    use pb::bank_event::Kind;
    let detail = match event.kind.as_ref().ok_or(
        "kind is required: one of balance_snapshot, transfer, product_maturity, payroll_credit",
    )? {
        Kind::BalanceSnapshot(snapshot) => {
            let balance = snapshot.balance.as_ref().ok_or("balance is required")?;
            let as_of_date = date("as_of_date", snapshot.as_of_date.as_ref())?;
            // A day's closing balance is reported that day or soon after.
            let reported = occurred_at.date_naive();
            if as_of_date > reported + chrono::Duration::days(1)
                || as_of_date < reported - chrono::Duration::days(31)
            {
                return Err(format!(
                    "as_of_date {as_of_date} must be within 31 days before occurred_at's day ({reported})"
                ));
            }
            EventDetail::BalanceSnapshot {
                balance: Money::parse(balance.minor_units, &balance.currency)
                    .map_err(|error| format!("balance: {error}"))?,
                as_of_date,
            }
        }
        Kind::Transfer(transfer) => EventDetail::Transfer {
            amount: amount("amount", transfer.amount.as_ref())?,
            direction: match pb::TransferDirection::try_from(transfer.direction) {
                Ok(pb::TransferDirection::In) => Direction::In,
                Ok(pb::TransferDirection::Out) => Direction::Out,
                _ => return Err("direction must be IN or OUT".into()),
            },
            counterparty_bank: text("counterparty_bank", &transfer.counterparty_bank, false, 100)?,
            own_bank: transfer.own_bank,
            channel: text("channel", &transfer.channel, false, 50)?,
            status: match pb::TransferStatus::try_from(transfer.status) {
                Ok(pb::TransferStatus::Pending) => TransferStatus::Pending,
                Ok(pb::TransferStatus::Posted) => TransferStatus::Posted,
                _ => return Err("status must be PENDING or POSTED".into()),
            },
            branch_id: match transfer.branch_id.as_str() {
                "" => None,
                branch => Some(
                    BranchId::parse(branch)
                        .map_err(|error| format!("branch_id: {error}"))?
                        .to_string(),
                ),
            },
            transfer_reference: match transfer.transfer_reference.as_str() {
                "" => None,
                reference if is_token(reference, 64) => Some(reference.to_owned()),
                _ => {
                    return Err(
                        "transfer_reference must be at most 64 printable ASCII characters".into(),
                    );
                }
            },
        },
        Kind::ProductMaturity(maturity) => EventDetail::ProductMaturity {
            product_id: text("product_id", &maturity.product_id, true, 64)?,
            product_name: text("product_name", &maturity.product_name, false, 200)?,
            amount: amount("amount", maturity.amount.as_ref())?,
            maturity_date: date("maturity_date", maturity.maturity_date.as_ref())?,
        },
        Kind::PayrollCredit(payroll) => EventDetail::PayrollCredit {
            employer_id: text("employer_id", &payroll.employer_id, true, 64)?,
            amount: amount("amount", payroll.amount.as_ref())?,
        },
    };
    Ok(BankEvent {
        event_id: event_id.to_owned(),
        client_id: event.client_id.clone(),
        occurred_at,
        detail,
    })
}

/// Stores the events whose ids are new, in the caller's transaction; the ids
/// stored now (an id taken by an earlier call is not among them).
pub async fn store(
    transaction: &DatabaseTransaction,
    events: &[BankEvent],
    now: DateTime<Utc>,
) -> Result<HashSet<String>> {
    let mut seen = HashSet::new();
    let mut unique: Vec<&BankEvent> = events
        .iter()
        .filter(|event| seen.insert(event.event_id.as_str()))
        .collect();
    // In key order: two overlapping batches then take the ledger's row locks in
    // the same order and can't deadlock.
    unique.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    if unique.is_empty() {
        return Ok(HashSet::new());
    }
    // The ledger decides what is new, in one statement: a concurrent resend of the
    // same id waits on the key and then finds it taken.
    let mut ledger = Query::insert();
    ledger
        .into_table(bank_event_id::Entity.table_ref())
        .columns([
            bank_event_id::Column::EventId,
            bank_event_id::Column::OccurredAt,
            bank_event_id::Column::ReceivedAt,
        ])
        .on_conflict(
            OnConflict::column(bank_event_id::Column::EventId)
                .do_nothing()
                .to_owned(),
        )
        .returning_col(bank_event_id::Column::EventId);
    for event in &unique {
        ledger
            .values([
                event.event_id.clone().into(),
                event.occurred_at.into(),
                now.into(),
            ])
            .map_err(|error| EventsError::Corrupt(format!("ledger row: {error}")))?;
    }
    let backend = transaction.get_database_backend();
    let taken_now: HashSet<String> = transaction
        .query_all_raw(backend.build(&ledger))
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", &bank_event_id::Column::EventId.to_string()))
        .collect::<std::result::Result<_, _>>()?;
    let rows = unique
        .iter()
        .filter(|event| taken_now.contains(&event.event_id))
        .map(|event| {
            Ok(bank_event::Model {
                event_id: event.event_id.clone(),
                client_id: event.client_id.clone(),
                kind: event.detail.kind().to_owned(),
                occurred_at: event.occurred_at,
                detail: serde_json::to_string(&event.detail)?,
                received_at: now,
            }
            .into_active_model())
        })
        .collect::<Result<Vec<_>>>()?;
    let mut writes = crm_store::WriteBatch::new();
    writes.insert_many(rows);
    writes.execute(transaction).await?;
    Ok(taken_now)
}

/// Where a batch comes from and what the rules need: the one path of both ways
/// in (IngestEvents and the core-banking feed).
pub struct Intake<'a> {
    pub db: &'a crm_store::Db,
    pub partitions: &'a crate::partitions::Partitions,
    pub rules: &'a crate::balance_watch::WatchRules,
    pub retention_months: u32,
}

/// Each event of a batch, checked: kept or why not.
pub type Checked = Vec<std::result::Result<BankEvent, String>>;

/// The events of a checked batch that passed.
pub fn passed(checked: &Checked) -> Vec<BankEvent> {
    checked
        .iter()
        .filter_map(|c| c.as_ref().ok().cloned())
        .collect()
}

impl Intake<'_> {
    /// Checks every event of a batch.
    pub fn check_all(&self, events: &[pb::BankEvent], now: DateTime<Utc>) -> Checked {
        let kept_from = retention_start(now, self.retention_months);
        events
            .iter()
            .map(|event| check(event, now, kept_from))
            .collect()
    }

    /// Takes checked events in one transaction: stored once by id, the rules run
    /// on the new ones (or held, for a client not yet announced). The ids stored
    /// now.
    pub async fn take(&self, good: &[BankEvent], now: DateTime<Utc>) -> Result<HashSet<String>> {
        self.partitions
            .ensure(
                self.db,
                good.iter()
                    .map(|event| crate::partitions::Month::of(event.occurred_at.date_naive())),
            )
            .await?;
        let transaction = sea_orm::TransactionTrait::begin(self.db).await?;
        let stored = store(&transaction, good, now).await?;
        let fresh: Vec<&BankEvent> = {
            let mut applied = HashSet::new();
            good.iter()
                .filter(|event| {
                    stored.contains(&event.event_id) && applied.insert(event.event_id.as_str())
                })
                .collect()
        };
        let known = crate::client_copy::known_locking_unknown(
            &transaction,
            fresh.iter().map(|event| event.client_id.clone()).collect(),
        )
        .await?;
        let mut held = Vec::new();
        let mut ready = Vec::with_capacity(fresh.len());
        for event in fresh {
            if known.contains(&event.client_id) {
                ready.push(event);
            } else {
                held.push(
                    held_event::Model {
                        event_id: event.event_id.clone(),
                        client_id: event.client_id.clone(),
                        occurred_at: event.occurred_at,
                        received_at: now,
                    }
                    .into_active_model(),
                );
            }
        }
        // The rules see each new event once, in the transaction that keeps it.
        apply_rules_to_batch(&transaction, self.rules, ready.into_iter()).await?;
        let mut writes = crm_store::WriteBatch::new();
        writes.insert_many(held);
        writes.execute(&transaction).await?;
        transaction.commit().await?;
        Ok(stored)
    }
}

/// The answer for each event of a batch: accepted (new, or a `duplicate` of one
/// taken before or earlier in the batch) or rejected with its reason.
pub fn results(
    events: &[pb::BankEvent],
    checked: Checked,
    stored: &HashSet<String>,
) -> Vec<pb::IngestEventResult> {
    let mut reported = HashSet::new();
    events
        .iter()
        .zip(checked)
        .map(|(event, checked)| match checked {
            Err(reason) => pb::IngestEventResult {
                event_id: event.event_id.clone(),
                accepted: false,
                reason,
                duplicate: false,
            },
            Ok(good) => pb::IngestEventResult {
                duplicate: !(stored.contains(&good.event_id)
                    && reported.insert(good.event_id.clone())),
                event_id: good.event_id,
                accepted: true,
                reason: String::new(),
            },
        })
        .collect()
}

/// The rules on a batch of newly taken events, in its transaction: the balance
/// watch on all its snapshots at once (set-based), the others one by one.
pub async fn apply_rules_to_batch<'a>(
    transaction: &DatabaseTransaction,
    watch: &crate::balance_watch::WatchRules,
    events: impl Iterator<Item = &'a BankEvent>,
) -> Result<()> {
    let events: Vec<&BankEvent> = events.collect();
    // A client's salary credits one batch at a time (concurrent batches would both
    // find no payroll row and both insert one), locked in client order.
    let payroll: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|event| matches!(event.detail, EventDetail::PayrollCredit { .. }))
        .map(|event| event.client_id.as_str())
        .collect();
    crate::client_copy::lock_clients(transaction, "payroll", payroll).await?;
    let mut snapshots = Vec::new();
    for event in events {
        match &event.detail {
            // Tiers are by CNY balances; other currencies are kept, not averaged.
            EventDetail::BalanceSnapshot {
                balance,
                as_of_date,
            } => {
                if balance.currency() == "CNY" {
                    snapshots.push(crate::balance_watch::Snapshot {
                        client_id: &event.client_id,
                        balance_minor: balance.minor_units(),
                        day: *as_of_date,
                        event_id: &event.event_id,
                        occurred_at: event.occurred_at,
                    });
                }
            }
            _ => apply_rules(transaction, watch, event).await?,
        }
    }
    crate::balance_watch::apply_snapshots(transaction, watch, &snapshots).await
}

/// What the rules do with one newly taken event (not a balance snapshot: those
/// go through the batch), in its transaction.
pub async fn apply_rules(
    transaction: &DatabaseTransaction,
    watch: &crate::balance_watch::WatchRules,
    event: &BankEvent,
) -> Result<()> {
    match &event.detail {
        EventDetail::Transfer {
            amount,
            direction,
            counterparty_bank,
            own_bank: false,
            status,
            branch_id,
            transfer_reference,
            ..
        } if amount.currency() == "CNY" && amount.minor_units() >= watch.large_transfer_minor => {
            match (direction, status) {
                // Money about to leave for another bank: the hold-and-notify alert,
                // without a counter waiting (or the one a counter already raised).
                (Direction::Out, TransferStatus::Pending) => {
                    let outflow = crate::outflow::Outflow {
                        request_key: format!("feed/{}", event.event_id),
                        transfer_reference: transfer_reference.clone(),
                        client_id: event.client_id.clone(),
                        amount: amount.clone(),
                        counterparty_bank: counterparty_bank.clone(),
                        branch_id: branch_id.clone().unwrap_or_default(),
                        home_branch_id: None,
                    };
                    crate::outflow::raise_in(transaction, &outflow, event.occurred_at).await?;
                    Ok(())
                }
                // Money won from another bank: keep it and grow it.
                (Direction::In, TransferStatus::Posted) => {
                    crate::outflow::inflow_follow_up(transaction, event, amount, counterparty_bank)
                        .await
                }
                _ => Ok(()),
            }
        }
        EventDetail::ProductMaturity { .. } => crate::maturities::record(transaction, event).await,
        EventDetail::PayrollCredit { employer_id, .. } => {
            crate::payroll::apply_credit(
                transaction,
                &event.client_id,
                employer_id,
                event.occurred_at,
            )
            .await
        }
        _ => Ok(()),
    }
}
