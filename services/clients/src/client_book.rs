//! ClientService: the client book. Reads are scoped by the caller's role and
//! coverage here, in the service, not only by the interceptor.

use std::sync::Arc;

use chrono::Utc;
use crm_auth::{Principal, principal_of, wire};
use crm_domain::messages::{COVERAGE_CHANGED, CoverageChanged};
use crm_domain::pii::{mask_national_id, mask_phone};
use crm_domain::tier::Tier;
use crm_domain::validation::check_text;
use crm_domain::{BranchId, ClientId, Money, Role, StaffId, Violations};
use crm_proto::v1::{self as pb, client_service_server::ClientService};
use crm_store::clients::{client, staff};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, EntityTrait, IntoActiveModel,
    TransactionTrait,
};
use tonic::{Request, Response, Status};

use crate::error::{ClientsError, Result};
use crate::{ClientsState, SERVICE};

pub struct ClientBook {
    state: Arc<ClientsState>,
}

impl ClientBook {
    pub fn new(state: Arc<ClientsState>) -> Self {
        Self { state }
    }
}

/// How much of a client record a caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// Everything, PII in clear.
    Full,
    /// Everything, national id and phone masked.
    Masked,
    /// Name and tier only (campaign admins).
    NameAndTier,
}

fn covers(model: &client::Model, staff_id: &StaffId) -> bool {
    [
        &model.primary_rm_id,
        &model.wealth_manager_id,
        &model.private_banker_id,
    ]
    .into_iter()
    .any(|id| id.as_deref() == Some(staff_id.as_str()))
}

/// API.md's role table for reading one client.
fn view_for(principal: &Principal, model: &client::Model) -> Option<View> {
    let own_branch = model.home_branch_id == principal.branch_id.as_str();
    match principal.role {
        Role::System => Some(View::Full),
        Role::Rm if covers(model, &principal.staff_id) => Some(View::Full),
        Role::BranchManager if own_branch || covers(model, &principal.staff_id) => Some(View::Full),
        Role::Teller if own_branch => Some(View::Masked),
        Role::CampaignAdmin => Some(View::NameAndTier),
        _ => None,
    }
}

fn tier_to_proto(tier: &str) -> pb::Tier {
    match Tier::parse(tier) {
        Some(Tier::Mass) => pb::Tier::Mass,
        Some(Tier::Wealth) => pb::Tier::Wealth,
        Some(Tier::Hnw) => pb::Tier::Hnw,
        Some(Tier::Private) => pb::Tier::Private,
        None => pb::Tier::Unspecified,
    }
}

fn kind_to_proto(kind: &str) -> pb::ClientKind {
    match kind {
        "individual" => pb::ClientKind::Individual,
        "corporate" => pb::ClientKind::Corporate,
        _ => pb::ClientKind::Unspecified,
    }
}

fn client_to_proto(model: client::Model, view: View) -> pb::Client {
    let tier = tier_to_proto(&model.tier) as i32;
    if view == View::NameAndTier {
        return pb::Client {
            client_id: model.client_id,
            full_name: model.full_name,
            tier,
            ..Default::default()
        };
    }
    let (national_id, phone) = match view {
        View::Full => (model.national_id, model.phone),
        _ => (
            mask_national_id(&model.national_id),
            mask_phone(&model.phone),
        ),
    };
    pb::Client {
        client_id: model.client_id,
        full_name: model.full_name,
        national_id,
        phone,
        home_branch_id: model.home_branch_id,
        kind: kind_to_proto(&model.kind) as i32,
        segments: serde_json::from_str(&model.segments).unwrap_or_default(),
        do_not_contact: model.do_not_contact,
        tier,
        aum_daily_avg: Some(pb::Money {
            minor_units: model.aum_minor_units,
            currency: model.aum_currency,
        }),
        coverage: Some(pb::Coverage {
            primary_rm_id: model.primary_rm_id.unwrap_or_default(),
            wealth_manager_id: model.wealth_manager_id.unwrap_or_default(),
            private_banker_id: model.private_banker_id.unwrap_or_default(),
        }),
        last_contact_at: wire::optional_timestamp(model.last_contact_at),
        created_at: Some(wire::timestamp(model.created_at)),
        updated_at: Some(wire::timestamp(model.updated_at)),
    }
}

/// A client record as parsed from an UpsertClient request.
struct ClientInput {
    client_id: ClientId,
    full_name: String,
    national_id: String,
    phone: String,
    home_branch_id: BranchId,
    kind: &'static str,
    segments: Vec<String>,
    do_not_contact: bool,
    aum: Money,
}

fn parse_client(input: &pb::Client) -> std::result::Result<ClientInput, Violations> {
    let mut violations = Violations::new();
    let client_id = violations.check("client.client_id", ClientId::parse(&input.client_id));
    check_text(
        &mut violations,
        "client.full_name",
        &input.full_name,
        true,
        200,
    );
    if input.national_id.len() > 32 || !input.national_id.chars().all(|c| c.is_ascii_alphanumeric())
    {
        violations.add(
            "client.national_id",
            "must be at most 32 letters and digits",
        );
    }
    if input.phone.len() > 20 || !input.phone.chars().all(|c| c.is_ascii_digit() || c == '+') {
        violations.add("client.phone", "must be at most 20 digits");
    }
    let home_branch_id = violations.check(
        "client.home_branch_id",
        BranchId::parse(&input.home_branch_id),
    );
    let kind = match pb::ClientKind::try_from(input.kind) {
        Ok(pb::ClientKind::Individual) => Some("individual"),
        Ok(pb::ClientKind::Corporate) => Some("corporate"),
        _ => {
            violations.add("client.kind", "must be INDIVIDUAL or CORPORATE");
            None
        }
    };
    for (index, segment) in input.segments.iter().enumerate() {
        let well_formed = !segment.is_empty()
            && segment.len() <= 40
            && segment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !well_formed {
            violations.add(
                format!("client.segments[{index}]"),
                "must be 1 to 40 of a-z, 0-9, '_'",
            );
        }
    }
    let aum = match &input.aum_daily_avg {
        Some(money) => violations.check(
            "client.aum_daily_avg",
            Money::parse_non_negative(money.minor_units, &money.currency),
        ),
        None => Some(Money::cny(0)),
    };
    violations.finish(|| {
        Some(ClientInput {
            client_id: client_id?,
            full_name: input.full_name.trim().to_owned(),
            national_id: input.national_id.clone(),
            phone: input.phone.clone(),
            home_branch_id: home_branch_id?,
            kind: kind?,
            segments: input.segments.clone(),
            do_not_contact: input.do_not_contact,
            aum: aum?,
        })
    })
}

/// Announces a client's routing-relevant data in the caller's transaction.
async fn announce_coverage(
    transaction: &impl ConnectionTrait,
    model: &client::Model,
    reason: &str,
) -> Result<()> {
    let message = CoverageChanged {
        client_id: model.client_id.clone(),
        home_branch_id: model.home_branch_id.clone(),
        primary_rm_id: model.primary_rm_id.clone(),
        wealth_manager_id: model.wealth_manager_id.clone(),
        private_banker_id: model.private_banker_id.clone(),
        do_not_contact: model.do_not_contact,
        reason: reason.to_owned(),
        updated_at: model.updated_at,
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

async fn find_client(db: &impl ConnectionTrait, client_id: &ClientId) -> Result<client::Model> {
    client::Entity::find_by_id(client_id.as_str())
        .one(db)
        .await?
        .ok_or_else(|| ClientsError::NotFound(format!("client {client_id}")))
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
    match staff::Entity::find_by_id(staff_id.as_str()).one(db).await? {
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

/// The RPC handlers, in the crate's own error type so `?` reads plainly.
impl ClientBook {
    #[tracing::instrument(skip_all, fields(client_id))]
    async fn handle_upsert_client(
        &self,
        request: Request<pb::UpsertClientRequest>,
    ) -> Result<Response<pb::UpsertClientResponse>> {
        let principal = principal_of(&request)?;
        principal.require_any(
            &[Role::System, Role::Rm, Role::BranchManager],
            "upsert clients",
        )?;
        let input = parse_client(&request.into_inner().client.unwrap_or_default())?;
        tracing::Span::current().record("client_id", input.client_id.as_str());
        let db = &self.state.db;
        let now = Utc::now();
        let tier = self.state.tiers.classify(input.aum.minor_units());
        let transaction = db.begin().await?;
        let existing = client::Entity::find_by_id(input.client_id.as_str())
            .one(&transaction)
            .await?;
        let segments = serde_json::to_string(&input.segments).unwrap_or_else(|_| "[]".to_owned());
        let (stored, announce) = match existing {
            None => {
                if principal.role != Role::System {
                    return Err(ClientsError::PermissionDenied(
                        "only core banking (system) creates clients".into(),
                    ));
                }
                let row = client::ActiveModel {
                    client_id: Set(input.client_id.to_string()),
                    full_name: Set(input.full_name),
                    national_id: Set(input.national_id),
                    phone: Set(input.phone),
                    home_branch_id: Set(input.home_branch_id.to_string()),
                    kind: Set(input.kind.to_owned()),
                    segments: Set(segments),
                    do_not_contact: Set(input.do_not_contact),
                    tier: Set(tier.to_string()),
                    aum_minor_units: Set(input.aum.minor_units()),
                    aum_currency: Set(input.aum.currency().to_owned()),
                    primary_rm_id: Set(None),
                    wealth_manager_id: Set(None),
                    private_banker_id: Set(None),
                    last_contact_at: Set(None),
                    created_at: Set(now),
                    updated_at: Set(now),
                };
                (row.insert(&transaction).await?, true)
            }
            Some(current) => {
                if view_for(&principal, &current) != Some(View::Full) {
                    return Err(ClientsError::PermissionDenied(
                        "client is outside your coverage".into(),
                    ));
                }
                let routing_relevant = current.home_branch_id != input.home_branch_id.as_str()
                    || current.do_not_contact != input.do_not_contact;
                let mut row = current.into_active_model();
                row.full_name = Set(input.full_name);
                row.national_id = Set(input.national_id);
                row.phone = Set(input.phone);
                row.home_branch_id = Set(input.home_branch_id.to_string());
                row.kind = Set(input.kind.to_owned());
                row.segments = Set(segments);
                row.do_not_contact = Set(input.do_not_contact);
                row.tier = Set(tier.to_string());
                row.aum_minor_units = Set(input.aum.minor_units());
                row.aum_currency = Set(input.aum.currency().to_owned());
                row.updated_at = Set(now);
                (row.update(&transaction).await?, routing_relevant)
            }
        };
        if announce {
            announce_coverage(&transaction, &stored, "client record changed").await?;
        }
        transaction.commit().await?;
        self.state.outbox.wake();
        Ok(Response::new(pb::UpsertClientResponse {
            client: Some(client_to_proto(stored, View::Full)),
        }))
    }

    #[tracing::instrument(skip_all, fields(client_id))]
    async fn handle_get_client(
        &self,
        request: Request<pb::GetClientRequest>,
    ) -> Result<Response<pb::GetClientResponse>> {
        let principal = principal_of(&request)?;
        let mut violations = Violations::new();
        let client_id =
            violations.check("client_id", ClientId::parse(&request.get_ref().client_id));
        let client_id = violations.finish(|| client_id)?;
        tracing::Span::current().record("client_id", client_id.as_str());
        let stored = find_client(&self.state.db, &client_id).await?;
        let view = view_for(&principal, &stored)
            .ok_or_else(|| ClientsError::PermissionDenied("client is outside your scope".into()))?;
        Ok(Response::new(pb::GetClientResponse {
            client: Some(client_to_proto(stored, view)),
        }))
    }

    #[tracing::instrument(skip_all, fields(client_id))]
    async fn handle_assign_coverage(
        &self,
        request: Request<pb::AssignCoverageRequest>,
    ) -> Result<Response<pb::AssignCoverageResponse>> {
        let principal = principal_of(&request)?;
        principal.require_any(&[Role::System, Role::BranchManager], "assign coverage")?;
        let input = request.into_inner();
        let db = &self.state.db;
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
        let transaction = db.begin().await?;
        let current = find_client(&transaction, &client_id).await?;
        if principal.role == Role::BranchManager
            && current.home_branch_id != principal.branch_id.as_str()
        {
            return Err(ClientsError::PermissionDenied(
                "client of another branch".into(),
            ));
        }
        let mut row = current.into_active_model();
        row.primary_rm_id = Set(primary);
        row.wealth_manager_id = Set(wealth);
        row.private_banker_id = Set(private);
        row.updated_at = Set(Utc::now());
        let stored = row.update(&transaction).await?;
        let reason = if input.reason.trim().is_empty() {
            "coverage assigned"
        } else {
            input.reason.trim()
        };
        announce_coverage(&transaction, &stored, reason).await?;
        transaction.commit().await?;
        self.state.outbox.wake();
        Ok(Response::new(pb::AssignCoverageResponse {
            client: Some(client_to_proto(stored, View::Full)),
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
        _request: Request<pb::SearchClientsRequest>,
    ) -> Result<Response<pb::SearchClientsResponse>, Status> {
        Err(Status::unimplemented(
            "SearchClients arrives with the client-book issue",
        ))
    }

    async fn assign_coverage(
        &self,
        request: Request<pb::AssignCoverageRequest>,
    ) -> Result<Response<pb::AssignCoverageResponse>, Status> {
        Ok(self.handle_assign_coverage(request).await?)
    }

    async fn log_interaction(
        &self,
        _request: Request<pb::LogInteractionRequest>,
    ) -> Result<Response<pb::LogInteractionResponse>, Status> {
        Err(Status::unimplemented(
            "LogInteraction arrives with the client-book issue",
        ))
    }

    async fn list_interactions(
        &self,
        _request: Request<pb::ListInteractionsRequest>,
    ) -> Result<Response<pb::ListInteractionsResponse>, Status> {
        Err(Status::unimplemented(
            "ListInteractions arrives with the client-book issue",
        ))
    }

    async fn list_audit_events(
        &self,
        _request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        Err(Status::unimplemented(
            "ListAuditEvents arrives with the client-book issue",
        ))
    }
}
