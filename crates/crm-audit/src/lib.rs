//! The suite's one audit trail: who read or changed which client's data, when,
//! under which request, from which service, and whether it was allowed.
//!
//! The trail is stored by the client book (the clients service owns the
//! `audit_events` table and answers ListAuditEvents). It writes its own lines in
//! the transaction of the read or write they record. Every other service that
//! shows client data (the timeline, the console, appointments) writes its lines
//! with [`record_via_outbox`]: as `audit.recorded` messages in its own outbox, in
//! its own transaction, which the client book consumes into the same table. A
//! read whose line cannot be written fails rather than go unrecorded; a line
//! written waits in the sender's outbox while the broker is away, in the client
//! book's queue while the client book is, and is retried in place (never
//! dead-lettered) while the client book's database is down.

use chrono::{DateTime, Utc};
use crm_auth::Principal;
use crm_domain::messages::AUDIT_RECORDED;
use crm_grpc::RpcError;
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};

/// The caller of one RPC, as the trail records them.
#[derive(Debug, Clone)]
pub struct Actor {
    pub principal: Principal,
    pub request_id: String,
}

impl Actor {
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Actor, RpcError> {
        Ok(Actor {
            principal: crm_auth::principal_of(request)?,
            request_id: crm_auth::request_id_of(request),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
        }
    }
}

/// The client a line is about: its id and home branch (so a branch manager can be
/// shown the trail of their branch's clients).
#[derive(Debug, Clone, Copy)]
pub struct ClientRef<'a> {
    pub client_id: &'a str,
    pub home_branch_id: &'a str,
}

/// One line of the trail, before it is stamped with actor and time.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `client.read`, `client.search`, `timeline.read`, …
    pub action: &'static str,
    pub client_id: String,
    pub client_branch_id: String,
    pub decision: Decision,
    /// Why it was denied, or which filters a search used; never personal data.
    pub reason: String,
}

impl Entry {
    pub fn allowed(action: &'static str, client: ClientRef<'_>) -> Entry {
        Entry {
            action,
            client_id: client.client_id.to_owned(),
            client_branch_id: client.home_branch_id.to_owned(),
            decision: Decision::Allowed,
            reason: String::new(),
        }
    }

    /// A refusal: of a client that exists (`client`), or of the id the caller asked
    /// for when it was not found or not theirs to know about.
    pub fn denied(
        action: &'static str,
        client: Option<ClientRef<'_>>,
        requested_client_id: &str,
        why: &str,
    ) -> Entry {
        Entry {
            action,
            client_id: client
                .map_or(requested_client_id, |c| c.client_id)
                .to_owned(),
            client_branch_id: client
                .map(|c| c.home_branch_id)
                .unwrap_or_default()
                .to_owned(),
            decision: Decision::Denied,
            reason: why.to_owned(),
        }
    }

    /// A line for a request that named no client (a search that found none).
    pub fn without_client(action: &'static str, decision: Decision, reason: &str) -> Entry {
        Entry {
            action,
            client_id: String::new(),
            client_branch_id: String::new(),
            decision,
            reason: reason.to_owned(),
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Entry {
        self.reason = reason.into();
        self
    }
}

/// A line of the trail as stored, and as it travels (`audit.recorded`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLine {
    /// UUIDv7 minted where the line is written: ordering by id is ordering by time,
    /// and storing a redelivered line twice is impossible.
    pub audit_event_id: String,
    /// The service the read or write happened in.
    pub service: String,
    pub actor_id: String,
    pub actor_role: String,
    pub actor_branch_id: String,
    pub action: String,
    pub client_id: String,
    pub client_branch_id: String,
    pub decision: String,
    pub reason: String,
    /// For a read of many (a search page): the clients it showed.
    pub client_ids: Vec<String>,
    pub request_id: String,
    pub occurred_at: DateTime<Utc>,
}

impl AuditLine {
    /// `entry` by `actor` in `service`, now.
    pub fn new(service: &str, actor: &Actor, entry: Entry, client_ids: Vec<String>) -> AuditLine {
        AuditLine {
            audit_event_id: uuid::Uuid::now_v7().to_string(),
            service: service.to_owned(),
            actor_id: actor.principal.staff_id.to_string(),
            actor_role: actor.principal.role.to_string(),
            actor_branch_id: actor.principal.branch_id.to_string(),
            action: entry.action.to_owned(),
            client_id: entry.client_id,
            client_branch_id: entry.client_branch_id,
            decision: entry.decision.as_str().to_owned(),
            reason: entry.reason,
            client_ids,
            request_id: actor.request_id.clone(),
            occurred_at: Utc::now(),
        }
    }
}

/// Records `entries` by `actor` from `service` (any service but the client book)
/// in `connection`'s transaction, through that service's outbox.
pub async fn record_via_outbox(
    connection: &impl ConnectionTrait,
    service: &str,
    actor: &Actor,
    entries: impl IntoIterator<Item = Entry>,
) -> Result<(), crm_bus::BusError> {
    for entry in entries {
        let line = AuditLine::new(service, actor, entry, Vec::new());
        crm_bus::outbox::enqueue_event(connection, service, AUDIT_RECORDED, AUDIT_RECORDED, &line)
            .await?;
    }
    Ok(())
}

/// Records one read of many clients (a list page) by `actor` from `service`,
/// naming every client it showed, so each of their trails includes it.
pub async fn record_read_of_many_via_outbox(
    connection: &impl ConnectionTrait,
    service: &str,
    actor: &Actor,
    action: &'static str,
    reason: &str,
    client_ids: Vec<String>,
) -> Result<(), crm_bus::BusError> {
    let entry = Entry::without_client(action, Decision::Allowed, reason);
    let line = AuditLine::new(service, actor, entry, client_ids);
    crm_bus::outbox::enqueue_event(connection, service, AUDIT_RECORDED, AUDIT_RECORDED, &line).await
}
