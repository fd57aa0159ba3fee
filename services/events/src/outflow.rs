//! Hold-and-notify. Before a counter (at any branch) moves a large sum to another
//! bank, the client's RM is told first with an URGENT alert on their phone, so
//! they can call and keep the funds; the counter waits up to `wait_seconds` for
//! the RM to complete the alert with a note, then proceeds either way.
//!
//! The alert is asked of the RM work queue (`work_items.requested`, routed by the
//! referral chain: the client's primary RM, or who the chain picks when they are
//! away); the queue says who got it (`work_items.assigned`) and when it was done
//! (`work_item.completed`), and the alert's row records both. A waiting call
//! reads that row, so it sees the answer whichever replica took the message.
//! One alert per counter request (by key) and per transfer reference: a retry, or
//! the PENDING transfer arriving on the feed, joins the alert already raised.

use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_bus::HandlerError;
use crm_domain::messages::{
    RequestedWorkItem, WORK_ITEMS_REQUESTED, WorkItemCompleted, WorkItemsAssigned,
    WorkItemsRequested,
};
use crm_domain::referral::{FundsOutcome, Priority, WorkItemKind};
use crm_domain::validation::is_token;
use crm_domain::{BranchId, ClientId, Money, Violations};
use crm_proto::v1 as pb;
use crm_store::db::is_unique_violation;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseTransaction, EntityTrait, QueryFilter, TransactionTrait,
};

use crate::SERVICE;
use crate::error::Result;
use crate::store::outflow_alert;

/// The longest a counter may wait for the RM.
pub const MAX_WAIT_SECONDS: i32 = 120;
/// How often a waiting call looks for the RM's answer.
const POLL: Duration = Duration::from_millis(100);
/// The prefix of the RM queue's source key of an alert.
const SOURCE_PREFIX: &str = "outflow:";
/// The prefix of the private banker's copy of an alert (not an answer to wait for).
const PRIVATE_BANKER_PREFIX: &str = "outflow-private-banker:";

/// A large outflow about to happen, checked.
#[derive(Clone)]
pub struct Outflow {
    pub request_key: String,
    pub transfer_reference: Option<String>,
    pub client_id: String,
    pub amount: Money,
    pub counterparty_bank: String,
    pub branch_id: String,
    /// Where the client banks, when known here (the RM queue's copy may lag).
    pub home_branch_id: Option<String>,
}

/// Checks a counter's request; the caller's branch stands in for an empty one.
pub fn parse(
    input: &pb::NotifyLargeOutflowRequest,
    caller: &crm_auth::Principal,
) -> std::result::Result<(Outflow, Duration), Violations> {
    let mut violations = Violations::new();
    let key = input.idempotency_key.as_str();
    if key.is_empty() || !is_token(key, 128) {
        violations.add(
            "idempotency_key",
            "is required: 1 to 128 printable ASCII characters without spaces",
        );
    }
    let client_id = violations.check("client_id", ClientId::parse(&input.client_id));
    let amount = match &input.amount {
        Some(money) => match Money::parse(money.minor_units, &money.currency) {
            Ok(amount) if amount.minor_units() > 0 => Some(amount),
            Ok(_) => {
                violations.add("amount", "must be more than zero");
                None
            }
            Err(error) => {
                violations.add("amount", error.to_string());
                None
            }
        },
        None => {
            violations.add("amount", "is required");
            None
        }
    };
    crm_domain::validation::check_text(
        &mut violations,
        "counterparty_bank",
        &input.counterparty_bank,
        true,
        100,
    );
    let branch_id = if input.branch_id.is_empty() {
        Some(caller.branch_id.to_string())
    } else {
        violations
            .check("branch_id", BranchId::parse(&input.branch_id))
            .map(|branch| branch.to_string())
    };
    if !(0..=MAX_WAIT_SECONDS).contains(&input.wait_seconds) {
        violations.add("wait_seconds", format!("must be 0 to {MAX_WAIT_SECONDS}"));
    }
    let reference = input.transfer_reference.as_str();
    if !is_token(reference, 64) {
        violations.add(
            "transfer_reference",
            "must be at most 64 printable ASCII characters without spaces",
        );
    }
    let wait = Duration::from_secs(u64::try_from(input.wait_seconds).unwrap_or(0));
    violations.finish(|| {
        Some((
            Outflow {
                request_key: format!("{}/{key}", caller.staff_id),
                transfer_reference: (!reference.is_empty()).then(|| reference.to_owned()),
                client_id: client_id?.to_string(),
                amount: amount?,
                counterparty_bank: input.counterparty_bank.trim().to_owned(),
                branch_id: branch_id?,
                home_branch_id: None,
            },
            wait,
        ))
    })
}

/// What an earlier request left: the alert of the same request, or of the same
/// transfer of the same client.
enum Earlier {
    None,
    Alert(Box<outflow_alert::Model>),
    /// The transfer reference is another client's: nothing of theirs is shown.
    ReferenceOfAnotherClient,
}

async fn find(db: &impl ConnectionTrait, outflow: &Outflow) -> Result<Earlier> {
    let mut same =
        Condition::any().add(outflow_alert::Column::RequestKey.eq(outflow.request_key.as_str()));
    if let Some(reference) = &outflow.transfer_reference {
        same = same.add(outflow_alert::Column::TransferReference.eq(reference.as_str()));
    }
    let found = outflow_alert::Entity::find().filter(same).all(db).await?;
    if let Some(own) = found.iter().find(|a| a.request_key == outflow.request_key) {
        return Ok(Earlier::Alert(Box::new(own.clone())));
    }
    Ok(match found.into_iter().next() {
        Some(alert) if alert.client_id == outflow.client_id => Earlier::Alert(Box::new(alert)),
        Some(_) => Earlier::ReferenceOfAnotherClient,
        None => Earlier::None,
    })
}

/// Raises the alert in the caller's transaction: its row and its request to the
/// RM work queue, in the outbox with it.
async fn insert(
    transaction: &DatabaseTransaction,
    outflow: &Outflow,
    now: DateTime<Utc>,
    due: DateTime<Utc>,
) -> Result<outflow_alert::Model> {
    let alert = outflow_alert::ActiveModel {
        alert_id: Set(uuid::Uuid::now_v7().to_string()),
        request_key: Set(outflow.request_key.clone()),
        transfer_reference: Set(outflow.transfer_reference.clone()),
        client_id: Set(outflow.client_id.clone()),
        amount_minor: Set(outflow.amount.minor_units()),
        currency: Set(outflow.amount.currency().to_owned()),
        counterparty_bank: Set(outflow.counterparty_bank.clone()),
        branch_id: Set(outflow.branch_id.clone()),
        rm_id: Set(String::new()),
        acknowledged: Set(false),
        rm_note: Set(String::new()),
        created_at: Set(now),
        acknowledged_at: Set(None),
        funds_outcome: Set(None),
        funds_kept_minor: Set(None),
    }
    .insert(transaction)
    .await?;
    let mut items = vec![RequestedWorkItem {
        source_key: format!("{SOURCE_PREFIX}{}", alert.alert_id),
        kind: WorkItemKind::Alert,
        client_id: alert.client_id.clone(),
        title: format!(
            "Large transfer out: {} to {}",
            outflow.amount, outflow.counterparty_bank
        ),
        detail: format!(
            "Rule: hold-and-notify. The client is at a counter of branch {} about to move {} \
                 to {}. Call them now to keep the funds; complete this item with what they said \
                 (the counter sees your note).",
            outflow.branch_id, outflow.amount, outflow.counterparty_bank
        ),
        priority: Priority::Urgent,
        due_at: Some(due),
        rm_id: None,
        home_branch_id: outflow.home_branch_id.clone(),
    }];
    items.extend(private_banker_notice(transaction, &alert, outflow).await?);
    let request = WorkItemsRequested {
        requested_by: SERVICE.to_owned(),
        items,
    };
    crm_bus::outbox::enqueue_event(
        transaction,
        SERVICE,
        WORK_ITEMS_REQUESTED,
        WORK_ITEMS_REQUESTED,
        &request,
    )
    .await?;
    Ok(alert)
}

/// A private-banking client's private banker is told too (for information: the
/// RM is the one asked to answer), when the book's copy names one.
async fn private_banker_notice(
    connection: &impl ConnectionTrait,
    alert: &outflow_alert::Model,
    outflow: &Outflow,
) -> Result<Option<RequestedWorkItem>> {
    let private = crate::client_copy::tier_of(connection, &alert.client_id).await?
        == Some(crm_domain::tier::Tier::Private.as_str().to_owned());
    if !private {
        return Ok(None);
    }
    let Some(client) = crate::client_copy::find(connection, &alert.client_id).await? else {
        return Ok(None);
    };
    let Some(banker) = client
        .private_banker_id
        .filter(|banker| Some(banker) != client.primary_rm_id.as_ref())
    else {
        return Ok(None);
    };
    Ok(Some(RequestedWorkItem {
        source_key: format!("{PRIVATE_BANKER_PREFIX}{}", alert.alert_id),
        kind: WorkItemKind::Alert,
        client_id: alert.client_id.clone(),
        title: format!(
            "Private client: large transfer out, {} to {}",
            outflow.amount, outflow.counterparty_bank
        ),
        detail: format!(
            "Rule: hold-and-notify, private banking. Your private client is at a counter of \
             branch {} about to move {} to {}. Their RM has been asked to call; this is for \
             your information.",
            outflow.branch_id, outflow.amount, outflow.counterparty_bank
        ),
        priority: Priority::High,
        due_at: None,
        rm_id: Some(banker),
        home_branch_id: None,
    }))
}

/// The alert of `outflow`: the one already raised for its key or transfer, or a
/// new one. Concurrent retries of one request raise one alert.
pub async fn raise(
    db: &crm_store::Db,
    outflow: &Outflow,
    due: DateTime<Utc>,
) -> Result<outflow_alert::Model> {
    let refused = || {
        crate::EventsError::Rpc(crm_grpc::RpcError::FailedPrecondition(
            "transfer_reference names another client's transfer".into(),
        ))
    };
    match find(db, outflow).await? {
        Earlier::Alert(alert) => return Ok(*alert),
        Earlier::ReferenceOfAnotherClient => return Err(refused()),
        Earlier::None => {}
    }
    let transaction = db.begin().await?;
    match insert(&transaction, outflow, Utc::now(), due).await {
        Ok(alert) => {
            transaction.commit().await?;
            tracing::info!(alert_id = %alert.alert_id, client_id = %alert.client_id, "large outflow alert raised");
            Ok(alert)
        }
        Err(crate::EventsError::Db(error)) if is_unique_violation(&error) => {
            transaction.rollback().await?;
            match find(db, outflow).await? {
                Earlier::Alert(alert) => Ok(*alert),
                Earlier::ReferenceOfAnotherClient => Err(refused()),
                Earlier::None => Err(crate::EventsError::Corrupt(
                    "an alert raced in and vanished".into(),
                )),
            }
        }
        Err(error) => Err(error),
    }
}

/// The feed's PENDING transfer out: joins the alert a counter raised for the same
/// transfer, or raises one, in the ingest's transaction.
pub async fn raise_in(
    transaction: &DatabaseTransaction,
    outflow: &Outflow,
    occurred_at: DateTime<Utc>,
) -> Result<()> {
    let outflow = match find(transaction, outflow).await? {
        Earlier::Alert(_) => return Ok(()),
        // Another client's reference (a data error upstream): this client's RM is
        // still told, under no reference.
        Earlier::ReferenceOfAnotherClient => &Outflow {
            transfer_reference: None,
            ..outflow.clone()
        },
        Earlier::None => outflow,
    };
    // A counter raising the same transfer at this moment wins the reference; the
    // savepoint keeps the rest of the ingest's batch.
    let savepoint = transaction.begin().await?;
    let due = occurred_at + chrono::Duration::hours(1);
    match insert(&savepoint, outflow, Utc::now(), due).await {
        Ok(alert) => {
            savepoint.commit().await?;
            tracing::info!(alert_id = %alert.alert_id, client_id = %alert.client_id, "large outflow on the feed");
            Ok(())
        }
        Err(crate::EventsError::Db(error)) if is_unique_violation(&error) => {
            savepoint.rollback().await?;
            Ok(())
        }
        Err(error) => {
            savepoint.rollback().await?;
            Err(error)
        }
    }
}

/// A large sum in from another bank: a follow-up for the RM to keep and grow it
/// (the bank's practice of winning other banks' assets).
pub async fn inflow_follow_up(
    transaction: &DatabaseTransaction,
    event: &crate::ingest::BankEvent,
    amount: &Money,
    counterparty_bank: &str,
) -> Result<()> {
    let request = WorkItemsRequested {
        requested_by: SERVICE.to_owned(),
        items: vec![RequestedWorkItem {
            source_key: format!("inflow:{}", event.event_id),
            kind: WorkItemKind::FollowUp,
            client_id: event.client_id.clone(),
            title: format!("{amount} in from {counterparty_bank}"),
            detail: format!(
                "Rule: large transfer in from another bank (CRM_LARGE_TRANSFER_CNY). {amount} \
                 arrived from {counterparty_bank}. Call to keep the funds here and offer where \
                 to put them."
            ),
            priority: Priority::Normal,
            due_at: Some(event.occurred_at + chrono::Duration::days(3)),
            rm_id: None,
            home_branch_id: None,
        }],
    };
    crm_bus::outbox::enqueue_event(
        transaction,
        SERVICE,
        WORK_ITEMS_REQUESTED,
        WORK_ITEMS_REQUESTED,
        &request,
    )
    .await?;
    Ok(())
}

/// Waits up to `wait` for the RM's answer; the alert as it then stands.
pub async fn wait_for_answer(
    db: &crm_store::Db,
    alert: outflow_alert::Model,
    wait: Duration,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<outflow_alert::Model> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut current = alert;
    while !current.acknowledged && tokio::time::Instant::now() < deadline {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = shutdown.cancelled() => break,
        }
        // A read that can't finish by the deadline (a pool starved, a database
        // gone) is not waited for: the counter gets the alert as it stood.
        let read = outflow_alert::Entity::find_by_id(current.alert_id.as_str()).one(db);
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(Some(fresh))) => current = fresh,
            Ok(Ok(None)) | Err(_) => {}
            Ok(Err(error)) => return Err(error.into()),
        }
    }
    Ok(current)
}

/// The alert id of a source key of ours, if it is one.
fn alert_id(source_key: &str) -> Option<&str> {
    source_key.strip_prefix(SOURCE_PREFIX)
}

/// Records who the RM queue gave our alerts to.
pub async fn apply_assigned(
    transaction: &DatabaseTransaction,
    message: WorkItemsAssigned,
) -> std::result::Result<(), HandlerError> {
    if message.requested_by != SERVICE {
        return Ok(());
    }
    for item in message.items {
        let Some(alert_id) = alert_id(&item.source_key) else {
            continue;
        };
        // Nobody yet, or an answer already in: nothing to record.
        if item.rm_id.is_empty() {
            continue;
        }
        outflow_alert::Entity::update_many()
            .col_expr(outflow_alert::Column::RmId, Expr::value(item.rm_id))
            .filter(outflow_alert::Column::AlertId.eq(alert_id))
            .filter(outflow_alert::Column::Acknowledged.eq(false))
            .exec(transaction)
            .await?;
    }
    Ok(())
}

/// How much of an alert's amount stayed, by the RM's answer: all of it when kept
/// (unless they said how much), what they said when kept in part, nothing when
/// gone. An amount in another currency than the alert's is not comparable: kept
/// unknown.
pub fn funds_kept(
    alert: &outflow_alert::Model,
    outcome: Option<FundsOutcome>,
    said_minor: Option<i64>,
    said_currency: Option<&str>,
) -> Option<i64> {
    let said = match said_currency {
        Some(currency) if currency != alert.currency => None,
        _ => said_minor.map(|minor| minor.clamp(0, alert.amount_minor)),
    };
    match outcome? {
        FundsOutcome::Kept => Some(said.unwrap_or(alert.amount_minor)),
        FundsOutcome::PartlyKept => said,
        FundsOutcome::Gone => Some(0),
    }
}

/// Records the RM's answer to one of our alerts, and counts its outcome.
pub async fn apply_completed(
    transaction: &DatabaseTransaction,
    message: WorkItemCompleted,
) -> std::result::Result<(), HandlerError> {
    if message.requested_by != SERVICE {
        return Ok(());
    }
    let Some(alert_id) = alert_id(&message.source_key) else {
        return Ok(());
    };
    let Some(alert) = outflow_alert::Entity::find_by_id(alert_id)
        .one(transaction)
        .await?
    else {
        return Ok(());
    };
    let kept = funds_kept(
        &alert,
        message.funds_outcome,
        message.funds_kept_minor,
        message.funds_kept_currency.as_deref(),
    );
    outflow_alert::Entity::update_many()
        .col_expr(outflow_alert::Column::Acknowledged, Expr::value(true))
        .col_expr(
            outflow_alert::Column::RmId,
            Expr::value(message.rm_id.clone()),
        )
        .col_expr(outflow_alert::Column::RmNote, Expr::value(message.outcome))
        .col_expr(
            outflow_alert::Column::AcknowledgedAt,
            Expr::value(Some(message.completed_at)),
        )
        .col_expr(
            outflow_alert::Column::FundsOutcome,
            Expr::value(
                message
                    .funds_outcome
                    .map(|outcome| outcome.as_str().to_owned()),
            ),
        )
        .col_expr(outflow_alert::Column::FundsKeptMinor, Expr::value(kept))
        .filter(outflow_alert::Column::AlertId.eq(alert_id))
        .exec(transaction)
        .await?;
    if !alert.acknowledged {
        let outcome = message
            .funds_outcome
            .map_or("not said", |outcome| outcome.as_str());
        opentelemetry::global::meter("crm.events")
            .u64_counter("crm.events.outflow_alerts.answered")
            .with_description(
                "Large-outflow alerts answered by the RM, by what became of the funds",
            )
            .build()
            .add(1, &[opentelemetry::KeyValue::new("funds", outcome)]);
    }
    Ok(())
}

/// One RM's answers to large-outflow alerts over a period: how many, what became
/// of the funds, and how much stayed (per currency of the alerts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutflowTally {
    pub rm_id: String,
    pub currency: String,
    pub answered: i64,
    pub kept: i64,
    pub partly_kept: i64,
    pub gone: i64,
    pub kept_minor: i64,
}

/// The tally of answers given in `[from, to)`, per RM and currency, the RM who
/// kept the most first (campaign league tables rank it).
pub async fn tally(
    db: &impl ConnectionTrait,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<OutflowTally>> {
    let answered = outflow_alert::Entity::find()
        .filter(outflow_alert::Column::Acknowledged.eq(true))
        .filter(outflow_alert::Column::AcknowledgedAt.gte(from))
        .filter(outflow_alert::Column::AcknowledgedAt.lt(to))
        .all(db)
        .await?;
    let mut tallies: std::collections::BTreeMap<(String, String), OutflowTally> =
        std::collections::BTreeMap::new();
    for alert in answered {
        let tally = tallies
            .entry((alert.rm_id.clone(), alert.currency.clone()))
            .or_insert_with(|| OutflowTally {
                rm_id: alert.rm_id.clone(),
                currency: alert.currency.clone(),
                answered: 0,
                kept: 0,
                partly_kept: 0,
                gone: 0,
                kept_minor: 0,
            });
        tally.answered += 1;
        match alert.funds_outcome {
            Some(FundsOutcome::Kept) => tally.kept += 1,
            Some(FundsOutcome::PartlyKept) => tally.partly_kept += 1,
            Some(FundsOutcome::Gone) => tally.gone += 1,
            None => {}
        }
        tally.kept_minor += alert.funds_kept_minor.unwrap_or(0);
    }
    let mut tallies: Vec<OutflowTally> = tallies.into_values().collect();
    tallies.sort_by(|a, b| b.kept_minor.cmp(&a.kept_minor).then(a.rm_id.cmp(&b.rm_id)));
    Ok(tallies)
}
