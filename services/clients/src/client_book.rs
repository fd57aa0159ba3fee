//! ClientService: the client book. Who may see what lives in `access`; every read
//! and write leaves a line in the audit trail (`audit`).

use std::sync::Arc;

use crate::store::{client, client_segment, staff};
use chrono::Utc;
use crm_domain::messages::{COVERAGE_CHANGED, CoverageChanged};
use crm_domain::validation::check_text;
use crm_domain::{ClientId, Role, StaffId, Violations};
use crm_proto::v1::{self as pb, client_service_server::ClientService};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, QuerySelect, TransactionTrait,
};
use tonic::{Request, Response, Status};

use crate::access::{View, view_for};
use crate::audit_writer::{self, Actor, Entry};
use crate::client_profile;
use crate::client_wire::{ClientInput, client_to_proto, parse_client};
use crate::error::{ClientsError, Result};
use crate::{ClientsState, SERVICE, tiering};

pub struct ClientBook {
    pub(crate) state: Arc<ClientsState>,
}

impl ClientBook {
    pub fn new(state: Arc<ClientsState>) -> Self {
        Self { state }
    }
}

/// A client id from a request for the audit trail: the parsed id, or nothing.
pub(crate) fn audited_client_id(raw: &str) -> String {
    ClientId::parse(raw)
        .map(|id| id.to_string())
        .unwrap_or_default()
}

/// Announces a client's routing-relevant data in the caller's transaction.
async fn announce_coverage(
    transaction: &impl ConnectionTrait,
    model: &client::Model,
    reason: &str,
    vault: &crm_store::Vault,
) -> Result<()> {
    let message = CoverageChanged {
        phone_hashes: vault.lookup_hashes(&vault.open(&model.phone)?),
        client_id: model.client_id.clone(),
        home_branch_id: model.home_branch_id.clone(),
        primary_rm_id: model.primary_rm_id.clone(),
        wealth_manager_id: model.wealth_manager_id.clone(),
        private_banker_id: model.private_banker_id.clone(),
        do_not_contact: model.do_not_contact,
        reason: reason.to_owned(),
        updated_at: model.updated_at,
        phone_hash: model.phone_hash.clone(),
    };
    crm_bus::outbox::enqueue_event(
        transaction,
        SERVICE,
        COVERAGE_CHANGED,
        COVERAGE_CHANGED,
        &message,
    )
    .await?;
    Ok(())
}

pub(crate) async fn find_client(
    db: &impl ConnectionTrait,
    client_id: &ClientId,
) -> Result<client::Model> {
    client::Entity::find_by_id(client_id.as_str())
        .one(db)
        .await?
        .ok_or_else(|| ClientsError::NotFound(format!("client {client_id}")))
}

/// The one answer to a caller with a bounded scope about a client outside it — or
/// about no client at all, so the difference can't be used to list customer numbers.
pub(crate) const OUTSIDE_SCOPE: &str = "client is outside your scope";

/// Whether NOT_FOUND may be told apart from PERMISSION_DENIED for this caller:
/// only for roles that may see every client.
pub(crate) fn sees_every_client(role: Role) -> bool {
    matches!(role, Role::System | Role::CampaignAdmin)
}

/// `client_id` as `actor` may use it for `action`: the record and its view, or a
/// refusal written to the trail. An unknown id is refused like a foreign one for
/// callers with a bounded scope.
pub(crate) async fn find_in_scope(
    db: &impl ConnectionTrait,
    actor: &Actor,
    action: &'static str,
    client_id: &ClientId,
    may_use: impl Fn(&crm_auth::Principal, &client::Model) -> Option<View>,
) -> Result<(client::Model, View)> {
    let found = client::Entity::find_by_id(client_id.as_str())
        .one(db)
        .await?;
    let Some(model) = found else {
        if sees_every_client(actor.principal.role) {
            return Err(ClientsError::NotFound(format!("client {client_id}")));
        }
        let entry = Entry::denied(action, None, client_id.as_str(), OUTSIDE_SCOPE);
        return Err(audit_writer::refuse(db, actor, entry).await);
    };
    match may_use(&actor.principal, &model) {
        Some(view) => Ok((model, view)),
        None => {
            let entry = Entry::denied(
                action,
                Some(audit_writer::subject(&model)),
                "",
                OUTSIDE_SCOPE,
            );
            Err(audit_writer::refuse(db, actor, entry).await)
        }
    }
}

/// Replaces the client's segment rows.
/// The segment of clients whose salary the bank receives.
pub(crate) const PAYROLL: &str = "payroll";

pub(crate) async fn store_segments(
    transaction: &impl ConnectionTrait,
    client_id: &str,
    segments: &[String],
) -> Result<()> {
    client_segment::Entity::delete_many()
        .filter(client_segment::Column::ClientId.eq(client_id))
        .exec(transaction)
        .await?;
    if segments.is_empty() {
        return Ok(());
    }
    client_segment::Entity::insert_many(segments.iter().map(|segment| {
        client_segment::ActiveModel {
            client_id: Set(client_id.to_owned()),
            segment: Set(segment.clone()),
        }
    }))
    .exec_without_returning(transaction)
    .await?;
    Ok(())
}

/// An optional coverage slot: empty, or an active staff member.
async fn check_coverage_staff(
    db: &impl ConnectionTrait,
    violations: &mut Violations,
    field: &str,
    value: &str,
) -> Result<Option<String>> {
    let Some(staff_id) = violations
        .check(field, StaffId::parse_optional(value))
        .flatten()
    else {
        return Ok(None);
    };
    let covering_roles = [Role::Rm.as_str(), Role::BranchManager.as_str()];
    match staff::Entity::find_by_id(staff_id.as_str()).one(db).await? {
        Some(member) if !covering_roles.contains(&member.role.as_str()) => {
            violations.add(field, format!("{staff_id} is not an RM or branch manager"));
            Ok(None)
        }
        Some(member) if member.active => Ok(Some(staff_id.to_string())),
        Some(_) => {
            violations.add(field, format!("{staff_id} is not active"));
            Ok(None)
        }
        None => {
            violations.add(field, format!("{staff_id} is not in the directory"));
            Ok(None)
        }
    }
}

const CREATE: &str = "client.create";
const UPDATE: &str = "client.update";
const READ: &str = "client.read";
const ASSIGN_COVERAGE: &str = "client.assign_coverage";

/// The RPC handlers, in the crate's own error type so `?` reads plainly.
impl ClientBook {
    #[tracing::instrument(skip_all, fields(client_id))]
    async fn handle_upsert_client(
        &self,
        request: Request<pb::UpsertClientRequest>,
    ) -> Result<Response<pb::UpsertClientResponse>> {
        let actor = Actor::of(&request)?;
        let principal = &actor.principal;
        let db = &self.state.db;
        let raw = request.into_inner().client.unwrap_or_default();
        if !matches!(
            principal.role,
            Role::System | Role::Rm | Role::BranchManager
        ) {
            let why = format!("role {} may not write client records", principal.role);
            let entry = Entry::denied(UPDATE, None, &audited_client_id(&raw.client_id), &why);
            return Err(audit_writer::refuse(db, &actor, entry).await);
        }
        let input = parse_client(&raw)?;
        tracing::Span::current().record("client_id", input.client_id.as_str());
        let transaction = db.begin().await?;
        // Locked for the rest of the transaction: the update writes the record
        // back whole, and core banking's new average must not be rolled back by
        // an RM's edit that read the record before it (PostgreSQL; SQLite's one
        // connection already serialises writers).
        let existing = client::Entity::find_by_id(input.client_id.as_str())
            .lock_exclusive()
            .one(&transaction)
            .await?;
        let (stored, previous_tier, routing_relevant) = match existing {
            None if principal.role != Role::System => {
                // Only core banking creates clients; staff hear the same answer as
                // for a client outside their scope.
                let entry = Entry::denied(CREATE, None, input.client_id.as_str(), OUTSIDE_SCOPE);
                return Err(audit_writer::refuse_in(transaction, &actor, entry).await);
            }
            None => {
                let stored = self.insert_client(&transaction, input).await?;
                audit_writer::record(
                    &transaction,
                    &actor,
                    [Entry::allowed(CREATE, audit_writer::subject(&stored))],
                )
                .await?;
                (stored, None, true)
            }
            Some(current) => {
                if let Some(why) = self.update_refusal(principal, &current, &input) {
                    let entry =
                        Entry::denied(UPDATE, Some(audit_writer::subject(&current)), "", &why);
                    return Err(audit_writer::refuse_in(transaction, &actor, entry).await);
                }
                let previous_tier = current.tier;
                let routing_relevant = current.home_branch_id != input.home_branch_id.as_str()
                    || current.do_not_contact != input.do_not_contact;
                let stored = self.update_client(&transaction, current, input).await?;
                audit_writer::record(
                    &transaction,
                    &actor,
                    [Entry::allowed(UPDATE, audit_writer::subject(&stored))],
                )
                .await?;
                (stored, Some(previous_tier), routing_relevant)
            }
        };
        if routing_relevant {
            announce_coverage(
                &transaction,
                &stored,
                "client record changed",
                &self.state.vault,
            )
            .await?;
        }
        tiering::announce_if_changed(&transaction, &stored, previous_tier).await?;
        client_profile::announce(&transaction, &stored, &self.state.tiers.thresholds).await?;
        transaction.commit().await?;
        self.state.outbox.wake();
        Ok(Response::new(pb::UpsertClientResponse {
            client: Some(client_to_proto(stored, View::Full, &self.state.vault)?),
        }))
    }

    /// Why `principal` may not apply `input` to `current`, if they may not.
    fn update_refusal(
        &self,
        principal: &crm_auth::Principal,
        current: &client::Model,
        input: &ClientInput,
    ) -> Option<String> {
        if view_for(principal, current) != Some(View::Full) {
            return Some(OUTSIDE_SCOPE.into());
        }
        if principal.role == Role::System {
            return None;
        }
        // Balances and the home branch come from core banking, not from staff.
        if input
            .aum
            .as_ref()
            .is_some_and(|aum| aum.minor_units() != current.aum_minor_units)
        {
            return Some("aum_daily_avg comes from core banking (system) only".into());
        }
        if input.home_branch_id.as_str() != current.home_branch_id {
            return Some("only core banking (system) moves a client to another branch".into());
        }
        None
    }

    async fn insert_client(
        &self,
        transaction: &impl ConnectionTrait,
        input: ClientInput,
    ) -> Result<client::Model> {
        let vault = &self.state.vault;
        let now = Utc::now();
        let aum = input.aum.unwrap_or(crm_domain::Money::cny(0));
        let tier = tiering::next_tier(&self.state.tiers, None, aum.minor_units());
        let row = client::ActiveModel {
            client_id: Set(input.client_id.to_string()),
            full_name: Set(input.full_name),
            national_id: Set(vault.seal(&input.national_id)?),
            national_id_hash: Set(vault.lookup_hash(&input.national_id)),
            phone: Set(vault.seal(&input.phone)?),
            phone_hash: Set(vault.lookup_hash(&input.phone)),
            home_branch_id: Set(input.home_branch_id.to_string()),
            kind: Set(input.kind),
            segments: Set(serde_json::to_string(&input.segments)?),
            do_not_contact: Set(input.do_not_contact),
            marketing_consent: Set(input.marketing_consent.unwrap_or(true)),
            tier: Set(tier),
            aum_minor_units: Set(aum.minor_units()),
            aum_currency: Set(aum.currency().to_owned()),
            aum_feed_updated_at: Set(None),
            payroll_employer_id: Set(None),
            primary_rm_id: Set(None),
            wealth_manager_id: Set(None),
            private_banker_id: Set(None),
            last_contact_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let stored = row.insert(transaction).await?;
        store_segments(transaction, &stored.client_id, &input.segments).await?;
        Ok(stored)
    }

    async fn update_client(
        &self,
        transaction: &impl ConnectionTrait,
        current: client::Model,
        input: ClientInput,
    ) -> Result<client::Model> {
        let vault = &self.state.vault;
        let mut input = input;
        // A payroll client stays one whatever segments the caller sends: the feed
        // knows who pays their salary.
        if current.payroll_employer_id.is_some() && !input.segments.iter().any(|s| s == PAYROLL) {
            input.segments.push(PAYROLL.to_owned());
        }
        let segments = serde_json::to_string(&input.segments)?;
        // Once the balance feed sets the average it is its one writer.
        let (aum_minor, aum_currency) = match input.aum {
            Some(aum) if current.aum_feed_updated_at.is_none() => {
                (aum.minor_units(), aum.currency().to_owned())
            }
            _ => (current.aum_minor_units, current.aum_currency.clone()),
        };
        let tier = tiering::next_tier(&self.state.tiers, Some(current.tier), aum_minor);
        let mut row = current.into_active_model();
        row.full_name = Set(input.full_name);
        row.national_id = Set(vault.seal(&input.national_id)?);
        row.national_id_hash = Set(vault.lookup_hash(&input.national_id));
        row.phone = Set(vault.seal(&input.phone)?);
        row.phone_hash = Set(vault.lookup_hash(&input.phone));
        row.home_branch_id = Set(input.home_branch_id.to_string());
        row.kind = Set(input.kind);
        row.segments = Set(segments);
        row.do_not_contact = Set(input.do_not_contact);
        if let Some(consent) = input.marketing_consent {
            row.marketing_consent = Set(consent);
        }
        row.tier = Set(tier);
        row.aum_minor_units = Set(aum_minor);
        row.aum_currency = Set(aum_currency);
        row.updated_at = Set(Utc::now());
        // The row update takes the row lock first, so concurrent upserts rewrite
        // the segment rows one after the other and they agree with the record.
        let stored = row.update(transaction).await?;
        store_segments(transaction, &stored.client_id, &input.segments).await?;
        Ok(stored)
    }

    #[tracing::instrument(skip_all, fields(client_id))]
    async fn handle_get_client(
        &self,
        request: Request<pb::GetClientRequest>,
    ) -> Result<Response<pb::GetClientResponse>> {
        let actor = Actor::of(&request)?;
        let mut violations = Violations::new();
        let client_id =
            violations.check("client_id", ClientId::parse(&request.get_ref().client_id));
        let client_id = violations.finish(|| client_id)?;
        tracing::Span::current().record("client_id", client_id.as_str());
        let db = &self.state.db;
        let (stored, view) = find_in_scope(db, &actor, READ, &client_id, view_for).await?;
        self.state
            .audit
            .record(
                &actor,
                [Entry::allowed(READ, audit_writer::subject(&stored))],
            )
            .await?;
        Ok(Response::new(pb::GetClientResponse {
            client: Some(client_to_proto(stored, view, &self.state.vault)?),
        }))
    }

    #[tracing::instrument(skip_all, fields(client_id))]
    async fn handle_assign_coverage(
        &self,
        request: Request<pb::AssignCoverageRequest>,
    ) -> Result<Response<pb::AssignCoverageResponse>> {
        let actor = Actor::of(&request)?;
        let principal = &actor.principal;
        let input = request.into_inner();
        let db = &self.state.db;
        if !matches!(principal.role, Role::System | Role::BranchManager) {
            let why = format!("role {} may not assign coverage", principal.role);
            let entry = Entry::denied(
                ASSIGN_COVERAGE,
                None,
                &audited_client_id(&input.client_id),
                &why,
            );
            return Err(audit_writer::refuse(db, &actor, entry).await);
        }
        let mut violations = Violations::new();
        let client_id = violations.check("client_id", ClientId::parse(&input.client_id));
        check_text(&mut violations, "reason", &input.reason, false, 500);
        let primary =
            check_coverage_staff(db, &mut violations, "primary_rm_id", &input.primary_rm_id)
                .await?;
        let wealth = check_coverage_staff(
            db,
            &mut violations,
            "wealth_manager_id",
            &input.wealth_manager_id,
        )
        .await?;
        let private = check_coverage_staff(
            db,
            &mut violations,
            "private_banker_id",
            &input.private_banker_id,
        )
        .await?;
        let client_id = violations.finish(|| client_id)?;
        tracing::Span::current().record("client_id", client_id.as_str());
        // A branch manager assigns coverage of their own branch's clients.
        let own_branch = |principal: &crm_auth::Principal, model: &client::Model| {
            (principal.role == Role::System || model.home_branch_id == principal.branch_id.as_str())
                .then_some(View::Full)
        };
        find_in_scope(db, &actor, ASSIGN_COVERAGE, &client_id, own_branch).await?;
        let transaction = db.begin().await?;
        let current = find_client(&transaction, &client_id).await?;
        let reason = if input.reason.trim().is_empty() {
            "coverage assigned"
        } else {
            input.reason.trim()
        };
        let mut row = current.into_active_model();
        row.primary_rm_id = Set(primary);
        row.wealth_manager_id = Set(wealth);
        row.private_banker_id = Set(private);
        row.updated_at = Set(Utc::now());
        let stored = row.update(&transaction).await?;
        let entry =
            Entry::allowed(ASSIGN_COVERAGE, audit_writer::subject(&stored)).with_reason(reason);
        audit_writer::record(&transaction, &actor, [entry]).await?;
        announce_coverage(&transaction, &stored, reason, &self.state.vault).await?;
        client_profile::announce(&transaction, &stored, &self.state.tiers.thresholds).await?;
        transaction.commit().await?;
        self.state.outbox.wake();
        Ok(Response::new(pb::AssignCoverageResponse {
            client: Some(client_to_proto(stored, View::Full, &self.state.vault)?),
        }))
    }
}

/// The gRPC trait: each RPC answers with its handler's result, the crate's error
/// mapped to a status in one place (`error.rs`).
#[tonic::async_trait]
impl ClientService for ClientBook {
    async fn upsert_client(
        &self,
        request: Request<pb::UpsertClientRequest>,
    ) -> Result<Response<pb::UpsertClientResponse>, Status> {
        Ok(self.handle_upsert_client(request).await?)
    }

    async fn get_client(
        &self,
        request: Request<pb::GetClientRequest>,
    ) -> Result<Response<pb::GetClientResponse>, Status> {
        Ok(self.handle_get_client(request).await?)
    }

    async fn search_clients(
        &self,
        request: Request<pb::SearchClientsRequest>,
    ) -> Result<Response<pb::SearchClientsResponse>, Status> {
        Ok(self.handle_search_clients(request).await?)
    }

    async fn assign_coverage(
        &self,
        request: Request<pb::AssignCoverageRequest>,
    ) -> Result<Response<pb::AssignCoverageResponse>, Status> {
        Ok(self.handle_assign_coverage(request).await?)
    }

    async fn log_interaction(
        &self,
        request: Request<pb::LogInteractionRequest>,
    ) -> Result<Response<pb::LogInteractionResponse>, Status> {
        Ok(self.handle_log_interaction(request).await?)
    }

    async fn list_interactions(
        &self,
        request: Request<pb::ListInteractionsRequest>,
    ) -> Result<Response<pb::ListInteractionsResponse>, Status> {
        Ok(self.handle_list_interactions(request).await?)
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        Ok(self.handle_list_audit_events(request).await?)
    }
}
