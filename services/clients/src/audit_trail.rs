//! ListAuditEvents: the trail of one client or one actor over a time range, newest
//! first. The system role reads all of it; a branch manager reads what concerns
//! their branch (its clients, or its staff as actors). Reading the trail is itself
//! recorded.

use crate::store::{audit_event, client, staff};
use chrono::{DateTime, Utc};
use crm_domain::{ClientId, Role, StaffId, Violations};
use crm_proto::v1 as pb;
use sea_orm::DbBackend;
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tonic::{Request, Response};

use crate::audit_writer::{self, Actor, Decision, Entry};
use crate::client_book::{ClientBook, audited_client_id};
use crate::error::Result;
use crm_auth::page_token::PageTokens;

const LIST: &str = "audit.list";

/// Lines of reads of many that showed `client_id`: through the GIN index on
/// PostgreSQL, by pattern on SQLite (the embedded default's trail is small).
/// sea-query passes PostgreSQL's `$1` through as written and binds SQLite's `?`.
fn shown_client(backend: DbBackend, client_id: &str) -> SimpleExpr {
    match backend {
        DbBackend::Postgres => Expr::cust_with_values(
            "string_to_array(client_ids, ',') @> ARRAY[$1]::text[]",
            [client_id],
        ),
        _ => Expr::cust_with_values(
            "(',' || client_ids || ',') LIKE ?",
            [format!("%,{client_id},%")],
        ),
    }
}

fn audit_event_to_proto(model: audit_event::Model) -> pb::AuditEvent {
    pb::AuditEvent {
        audit_event_id: model.audit_event_id,
        actor_id: model.actor_id,
        actor_role: model.actor_role,
        action: model.action,
        client_id: model.client_id,
        decision: model.decision,
        request_id: model.request_id,
        occurred_at: Some(crm_grpc::wire::timestamp(model.occurred_at)),
        service: model.service,
    }
}

struct AuditQuery {
    client_id: Option<ClientId>,
    actor_id: Option<StaffId>,
    from_time: Option<DateTime<Utc>>,
    to_time: Option<DateTime<Utc>>,
    page_size: u64,
}

fn parse(input: &pb::ListAuditEventsRequest) -> std::result::Result<AuditQuery, Violations> {
    let mut violations = Violations::new();
    let client_id = if input.client_id.is_empty() {
        Some(None)
    } else {
        violations
            .check("client_id", ClientId::parse(&input.client_id))
            .map(Some)
    };
    let actor_id = violations.check("actor_id", StaffId::parse_optional(&input.actor_id));
    if input.client_id.is_empty() && input.actor_id.is_empty() {
        violations.add("client_id", "client_id or actor_id is required");
    }
    let time =
        |violations: &mut Violations, field: &str, value: &Option<prost_types::Timestamp>| {
            match value {
                Some(ts) => violations
                    .check(field, crm_grpc::wire::datetime(ts))
                    .map(Some),
                None => Some(None),
            }
        };
    let from_time = time(&mut violations, "from_time", &input.from_time);
    let to_time = time(&mut violations, "to_time", &input.to_time);
    if let (Some(Some(from)), Some(Some(to))) = (from_time, to_time)
        && to <= from
    {
        violations.add("to_time", "must be after from_time");
    }
    let page_size = violations.check("page_size", crm_grpc::wire::page_size(input.page_size));
    violations.finish(|| {
        Some(AuditQuery {
            client_id: client_id?,
            actor_id: actor_id?,
            from_time: from_time?,
            to_time: to_time?,
            page_size: page_size?,
        })
    })
}

impl ClientBook {
    /// Why a branch manager may not read this part of the trail, if they may not.
    async fn audit_refusal(
        &self,
        actor: &Actor,
        query: &AuditQuery,
    ) -> Result<Option<(&'static str, Option<client::Model>)>> {
        let principal = &actor.principal;
        match principal.role {
            Role::System => return Ok(None),
            Role::BranchManager => {}
            _ => {
                return Ok(Some((
                    "only branch managers and the system role read the audit trail",
                    None,
                )));
            }
        }
        let db = &self.state.db;
        let branch = principal.branch_id.as_str();
        if let Some(client_id) = &query.client_id {
            let found = client::Entity::find_by_id(client_id.as_str())
                .one(db)
                .await?;
            if let Some(model) = found.filter(|model| model.home_branch_id != branch) {
                return Ok(Some(("client of another branch", Some(model))));
            }
        }
        if let Some(actor_id) = &query.actor_id {
            let found = staff::Entity::find_by_id(actor_id.as_str()).one(db).await?;
            if found.is_none_or(|member| member.branch_id != branch) {
                return Ok(Some(("actor outside your branch", None)));
            }
        }
        Ok(None)
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn handle_list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>> {
        let actor = Actor::of(&request)?;
        let input = request.into_inner();
        let db = &self.state.db;
        let query = parse(&input)?;
        if let Some((why, client)) = self.audit_refusal(&actor, &query).await? {
            let entry = Entry::denied(
                LIST,
                client.as_ref().map(audit_writer::subject),
                &audited_client_id(&input.client_id),
                why,
            );
            return Err(audit_writer::refuse(db, &actor, entry).await);
        }
        let time_range = |ts: &Option<prost_types::Timestamp>| {
            ts.as_ref()
                .map(|ts| format!("{}.{:09}", ts.seconds, ts.nanos))
                .unwrap_or_default()
        };
        let tokens = PageTokens::new(
            &self.state.vault,
            &actor.principal,
            &[
                ("client_id", input.client_id.as_str()),
                ("actor_id", input.actor_id.as_str()),
                ("from_time", &time_range(&input.from_time)),
                ("to_time", &time_range(&input.to_time)),
                ("page_size", &query.page_size.to_string()),
            ],
        );
        let mut violations = Violations::new();
        let after = violations.check("page_token", tokens.read(&input.page_token));
        let after = violations.finish(|| after)?;

        let mut select = audit_event::Entity::find()
            .order_by_desc(audit_event::Column::AuditEventId)
            .limit(query.page_size + 1);
        // A branch manager was let through above only for a client of their branch
        // or an actor of their branch: every line about either is theirs to read.
        if let Some(client_id) = &query.client_id {
            select = select.filter(
                Condition::any()
                    .add(audit_event::Column::ClientId.eq(client_id.as_str()))
                    .add(shown_client(db.get_database_backend(), client_id.as_str())),
            );
        }
        if let Some(actor_id) = &query.actor_id {
            select = select.filter(audit_event::Column::ActorId.eq(actor_id.as_str()));
        }
        if let Some(from) = query.from_time {
            select = select.filter(audit_event::Column::OccurredAt.gte(from));
        }
        if let Some(to) = query.to_time {
            select = select.filter(audit_event::Column::OccurredAt.lt(to));
        }
        if let Some(after) = &after {
            select = select.filter(audit_event::Column::AuditEventId.lt(after.as_str()));
        }
        let rows = select.all(db).await?;
        let entry = Entry::without_client(LIST, Decision::Allowed, "");
        let entry = Entry {
            client_id: audited_client_id(&input.client_id),
            ..entry
        };
        audit_writer::record(db, &actor, [entry]).await?;
        let (rows, last_key) =
            crm_grpc::wire::into_page(rows, query.page_size, |row| row.audit_event_id.clone());
        Ok(Response::new(pb::ListAuditEventsResponse {
            audit_events: rows
                .into_iter()
                .map(|row| {
                    // A search line names no single client; asked about one, it is
                    // about that one.
                    let mut event = audit_event_to_proto(row);
                    if event.client_id.is_empty()
                        && let Some(client_id) = &query.client_id
                    {
                        event.client_id = client_id.to_string();
                    }
                    event
                })
                .collect(),
            next_page_token: tokens.issue(&last_key),
        }))
    }
}
