//! The audit trail: who read or wrote which client's data, when, under which
//! request, and whether it was allowed. Rows are only ever inserted (the database
//! refuses updates and deletes). Writes record their row in the write's own
//! transaction; reads and denials record theirs before the answer leaves, and a
//! read whose audit row cannot be written fails rather than go unrecorded.

use chrono::Utc;
use crm_auth::Principal;
use crm_store::clients::{audit_event, audit_event_client, client};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DbBackend, EntityTrait, Statement, TransactionTrait,
};

/// The caller of one RPC, as the trail records them.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    pub(crate) principal: Principal,
    pub(crate) request_id: String,
}

impl Actor {
    pub(crate) fn of<T>(request: &tonic::Request<T>) -> Result<Actor, tonic::Status> {
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

/// Appends `entries` for `actor`, in one statement.
pub(crate) async fn record(
    db: &impl ConnectionTrait,
    actor: &Actor,
    entries: impl IntoIterator<Item = Entry>,
) -> Result<(), sea_orm::DbErr> {
    let now = Utc::now();
    let rows: Vec<audit_event::ActiveModel> = entries
        .into_iter()
        .map(|entry| audit_event::ActiveModel {
            audit_event_id: Set(uuid::Uuid::now_v7().to_string()),
            actor_id: Set(actor.principal.staff_id.to_string()),
            actor_role: Set(actor.principal.role.to_string()),
            actor_branch_id: Set(actor.principal.branch_id.to_string()),
            action: Set(entry.action.to_owned()),
            client_id: Set(entry.client_id),
            client_branch_id: Set(entry.client_branch_id),
            decision: Set(entry.decision.as_str().to_owned()),
            reason: Set(entry.reason),
            request_id: Set(actor.request_id.clone()),
            occurred_at: Set(now),
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    audit_event::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Appends one line for a read of many clients (a search page) and one narrow
/// row per client shown, so the trail of each of them includes it. Both land
/// together: one statement on PostgreSQL (a search is a hot path and a round trip
/// per statement is most of its cost), one transaction on SQLite.
pub(crate) async fn record_read_of_many(
    db: &crm_store::Db,
    actor: &Actor,
    action: &'static str,
    reason: &str,
    client_ids: Vec<String>,
) -> Result<(), sea_orm::DbErr> {
    let audit_event_id = uuid::Uuid::now_v7().to_string();
    let line: Vec<sea_orm::Value> = vec![
        audit_event_id.clone().into(),
        actor.principal.staff_id.to_string().into(),
        actor.principal.role.to_string().into(),
        actor.principal.branch_id.to_string().into(),
        action.into(),
        Decision::Allowed.as_str().into(),
        reason.into(),
        actor.request_id.clone().into(),
        Utc::now().into(),
    ];
    const INSERT_LINE: &str = "INSERT INTO audit_events (audit_event_id, actor_id, actor_role, \
        actor_branch_id, action, client_id, client_branch_id, decision, reason, request_id, \
        occurred_at) VALUES ($1, $2, $3, $4, $5, '', '', $6, $7, $8, $9)";
    if db.get_database_backend() == DbBackend::Postgres {
        let sql = if client_ids.is_empty() {
            INSERT_LINE.to_owned()
        } else {
            let shown: Vec<String> = (0..client_ids.len())
                .map(|n| format!("(${})", n + 10))
                .collect();
            format!(
                "WITH line AS ({INSERT_LINE} RETURNING audit_event_id) \
                 INSERT INTO audit_event_clients (client_id, audit_event_id) \
                 SELECT shown.client_id, line.audit_event_id FROM line \
                 CROSS JOIN (VALUES {}) AS shown(client_id)",
                shown.join(", ")
            )
        };
        let mut values = line;
        values.extend(client_ids.into_iter().map(sea_orm::Value::from));
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
        return Ok(());
    }
    let transaction = db.begin().await?;
    transaction
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            // SQLite numbers its parameters `?N`.
            INSERT_LINE.replace('$', "?"),
            line,
        ))
        .await?;
    if !client_ids.is_empty() {
        let shown: Vec<audit_event_client::ActiveModel> = client_ids
            .into_iter()
            .map(|client_id| audit_event_client::ActiveModel {
                client_id: Set(client_id),
                audit_event_id: Set(audit_event_id.clone()),
            })
            .collect();
        audit_event_client::Entity::insert_many(shown)
            .exec_without_returning(&transaction)
            .await?;
    }
    transaction.commit().await
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
