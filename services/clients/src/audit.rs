//! The audit trail: who read or wrote which client's data, when, under which
//! request, and whether it was allowed. Rows are only ever inserted (the database
//! refuses updates and deletes). Writes record their row in the write's own
//! transaction; reads and denials record theirs before the answer leaves, and a
//! read whose audit row cannot be written fails rather than go unrecorded.

use crate::store::{audit_event, client};
use chrono::Utc;
use crm_auth::Principal;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};

/// The caller of one RPC, as the trail records them.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    pub(crate) principal: Principal,
    pub(crate) request_id: String,
}

impl Actor {
    pub(crate) fn of<T>(request: &tonic::Request<T>) -> Result<Actor, crm_grpc::RpcError> {
        Ok(Actor {
            principal: crm_auth::principal_of(request)?,
            request_id: crm_auth::request_id_of(request),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Allowed,
    Denied,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
        }
    }
}

/// One line of the trail.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) action: &'static str,
    pub(crate) client_id: String,
    pub(crate) client_branch_id: String,
    pub(crate) decision: Decision,
    /// Why it was denied, or which filters a search used; never personal data.
    pub(crate) reason: String,
}

impl Entry {
    pub(crate) fn allowed(action: &'static str, client: &client::Model) -> Entry {
        Entry {
            action,
            client_id: client.client_id.clone(),
            client_branch_id: client.home_branch_id.clone(),
            decision: Decision::Allowed,
            reason: String::new(),
        }
    }

    pub(crate) fn denied(
        action: &'static str,
        client: Option<&client::Model>,
        requested_client_id: &str,
        why: &str,
    ) -> Entry {
        Entry {
            action,
            client_id: client.map_or_else(
                || requested_client_id.to_owned(),
                |model| model.client_id.clone(),
            ),
            client_branch_id: client
                .map(|model| model.home_branch_id.clone())
                .unwrap_or_default(),
            decision: Decision::Denied,
            reason: why.to_owned(),
        }
    }

    /// A line for a request that named no client (a search that found none).
    pub(crate) fn without_client(action: &'static str, decision: Decision, reason: &str) -> Entry {
        Entry {
            action,
            client_id: String::new(),
            client_branch_id: String::new(),
            decision,
            reason: reason.to_owned(),
        }
    }

    pub(crate) fn with_reason(mut self, reason: impl Into<String>) -> Entry {
        self.reason = reason.into();
        self
    }
}

/// One row of the trail: `entry` by `actor`; `client_ids` names the clients a
/// read of many showed (empty otherwise).
fn audit_row(
    actor: &Actor,
    entry: Entry,
    client_ids: String,
    now: chrono::DateTime<Utc>,
) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        audit_event_id: Set(uuid::Uuid::now_v7().to_string()),
        actor_id: Set(actor.principal.staff_id.to_string()),
        actor_role: Set(actor.principal.role.to_string()),
        actor_branch_id: Set(actor.principal.branch_id.to_string()),
        action: Set(entry.action.to_owned()),
        client_id: Set(entry.client_id),
        client_branch_id: Set(entry.client_branch_id),
        decision: Set(entry.decision.as_str().to_owned()),
        reason: Set(entry.reason),
        client_ids: Set(client_ids),
        request_id: Set(actor.request_id.clone()),
        occurred_at: Set(now),
    }
}

/// Appends `entries` for `actor`, in one statement.
pub(crate) async fn record(
    db: &impl ConnectionTrait,
    actor: &Actor,
    entries: impl IntoIterator<Item = Entry>,
) -> Result<(), sea_orm::DbErr> {
    let now = Utc::now();
    let rows: Vec<audit_event::ActiveModel> = entries
        .into_iter()
        .map(|entry| audit_row(actor, entry, String::new(), now))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    audit_event::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Appends one line for a read of many clients (a search page), naming every
/// client it showed, so the trail of each of them includes it.
pub(crate) async fn record_read_of_many(
    db: &impl ConnectionTrait,
    actor: &Actor,
    action: &'static str,
    reason: &str,
    client_ids: Vec<String>,
) -> Result<(), sea_orm::DbErr> {
    let entry = Entry::without_client(action, Decision::Allowed, reason);
    // Client ids are `[A-Z0-9-]`: a comma never occurs inside one.
    let row = audit_row(actor, entry, client_ids.join(","), Utc::now());
    audit_event::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Records a refusal and answers PERMISSION_DENIED with its reason (or the
/// database error that kept it from being recorded).
pub(crate) async fn refuse(
    db: &impl ConnectionTrait,
    actor: &Actor,
    entry: Entry,
) -> crate::ClientsError {
    let why = entry.reason.clone();
    match record(db, actor, [entry]).await {
        Ok(()) => crate::ClientsError::PermissionDenied(why),
        Err(error) => error.into(),
    }
}

/// [`refuse`] inside an open transaction, which then commits only the refusal: on
/// SQLite's single connection a second connection would wait for this one.
pub(crate) async fn refuse_in(
    transaction: sea_orm::DatabaseTransaction,
    actor: &Actor,
    entry: Entry,
) -> crate::ClientsError {
    let refusal = refuse(&transaction, actor, entry).await;
    match transaction.commit().await {
        Ok(()) => refusal,
        Err(error) => error.into(),
    }
}
