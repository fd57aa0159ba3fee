//! DirectoryService: branches, staff and teller↔RM pairs.

use std::str::FromStr;
use std::sync::Arc;

use crate::store::{branch, staff, teller_pair};
use chrono::{NaiveDate, Utc};
use crm_auth::{Principal, principal_of};
use crm_domain::messages::{BRANCH_CHANGED, PAIR_CHANGED, STAFF_CHANGED};
use crm_domain::validation::check_text;
use crm_domain::{BranchId, Role, StaffId, Violations};
use crm_grpc::{WireEnum, wire};
use crm_proto::v1::{self as pb, directory_service_server::DirectoryService};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use tonic::{Request, Response, Status};

use crate::ClientsState;
use crate::audit_writer::{self, Actor, Decision, Entry};
use crate::directory_events::{self, branch_changed, pair_changed, staff_changed};
use crate::error::{ClientsError, Result};

pub struct Directory {
    state: Arc<ClientsState>,
}

impl Directory {
    pub fn new(state: Arc<ClientsState>) -> Self {
        Self { state }
    }
}

fn branch_to_proto(model: branch::Model) -> pb::Branch {
    pb::Branch {
        branch_id: model.branch_id,
        name: model.name,
        city: model.city,
        time_zone: model.time_zone,
    }
}

fn staff_to_proto(model: staff::Model) -> pb::Staff {
    pb::Staff {
        staff_id: model.staff_id,
        name: model.name,
        role: model.role.to_wire(),
        branch_id: model.branch_id,
        active: model.active,
        capacity: model.capacity,
        out_of_office_until: wire::optional_timestamp(model.out_of_office_until),
    }
}

fn today_in_shanghai() -> NaiveDate {
    Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
}

/// Directory writes: the system role, or a branch manager for their own branch.
const UPSERT_BRANCH: &str = "directory.upsert_branch";
const UPSERT_STAFF: &str = "directory.upsert_staff";
const PAIR_TELLER: &str = "directory.pair_teller";

/// Why `principal` may not change the directory of `branch`, if they may not: the
/// system may change any branch's, a branch manager only their own.
fn directory_write_refusal(principal: &Principal, branch: &str) -> Option<String> {
    match principal.role {
        Role::System => None,
        Role::BranchManager if principal.branch_id.as_str() == branch => None,
        _ => Some(format!(
            "role {} may not change the directory of branch {branch}",
            principal.role
        )),
    }
}

/// The first refusal among the branches a write touches (what the request names
/// and what is stored), as a denied line of the trail.
fn refusal_of(principal: &Principal, action: &'static str, branches: &[&str]) -> Option<Entry> {
    branches
        .iter()
        .find_map(|branch| directory_write_refusal(principal, branch))
        .map(|why| Entry::without_client(action, Decision::Denied, &why))
}

async fn find_staff(db: &impl ConnectionTrait, staff_id: &StaffId) -> Result<staff::Model> {
    staff::Entity::find_by_id(staff_id.as_str())
        .one(db)
        .await?
        .ok_or_else(|| ClientsError::NotFound(format!("staff {staff_id}")))
}

/// The RPC handlers, in the crate's own error type so `?` reads plainly.
impl Directory {
    #[tracing::instrument(skip_all, fields(branch_id))]
    async fn handle_upsert_branch(
        &self,
        request: Request<pb::UpsertBranchRequest>,
    ) -> Result<Response<pb::UpsertBranchResponse>> {
        let actor = Actor::of(&request)?;
        if !actor.principal.is(Role::System) {
            let why = format!("role {} may not upsert branches", actor.principal.role);
            let entry = Entry::without_client(UPSERT_BRANCH, Decision::Denied, &why);
            return Err(audit_writer::refuse(&self.state.db, &actor, entry).await);
        }
        let input = request.into_inner().branch.unwrap_or_default();
        let mut violations = Violations::new();
        let branch_id = violations.check("branch.branch_id", BranchId::parse(&input.branch_id));
        check_text(&mut violations, "branch.name", &input.name, true, 100);
        check_text(&mut violations, "branch.city", &input.city, true, 100);
        let time_zone = if input.time_zone.is_empty() {
            "Asia/Shanghai".to_owned()
        } else {
            if chrono_tz::Tz::from_str(&input.time_zone).is_err() {
                violations.add(
                    "branch.time_zone",
                    "must be an IANA time zone such as Asia/Shanghai",
                );
            }
            input.time_zone.clone()
        };
        let branch_id = violations.finish(|| branch_id)?;
        tracing::Span::current().record("branch_id", branch_id.as_str());
        let now = Utc::now();
        let row = branch::ActiveModel {
            branch_id: Set(branch_id.to_string()),
            name: Set(input.name.trim().to_owned()),
            city: Set(input.city.trim().to_owned()),
            time_zone: Set(time_zone),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let transaction = self.state.db.begin().await?;
        branch::Entity::insert(row)
            .on_conflict(
                OnConflict::column(branch::Column::BranchId)
                    .update_columns([
                        branch::Column::Name,
                        branch::Column::City,
                        branch::Column::TimeZone,
                        branch::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&transaction)
            .await?;
        let stored = branch::Entity::find_by_id(branch_id.as_str())
            .one(&transaction)
            .await?
            .ok_or_else(|| ClientsError::NotFound(format!("branch {branch_id}")))?;
        // Routing keeps each branch's time zone: SLA deadlines count its hours.
        directory_events::publish(&transaction, BRANCH_CHANGED, &branch_changed(&stored)).await?;
        let line = Entry::without_client(
            UPSERT_BRANCH,
            Decision::Allowed,
            &format!("branch {branch_id}"),
        );
        audit_writer::record(&transaction, &actor, [line]).await?;
        transaction.commit().await?;
        self.state.outbox.wake();
        Ok(Response::new(pb::UpsertBranchResponse {
            branch: Some(branch_to_proto(stored)),
        }))
    }

    #[tracing::instrument(skip_all, fields(staff_id))]
    async fn handle_upsert_staff(
        &self,
        request: Request<pb::UpsertStaffRequest>,
    ) -> Result<Response<pb::UpsertStaffResponse>> {
        let actor = Actor::of(&request)?;
        let principal = &actor.principal;
        let input = request.into_inner().staff.unwrap_or_default();
        let mut violations = Violations::new();
        let staff_id = violations.check("staff.staff_id", StaffId::parse(&input.staff_id));
        check_text(&mut violations, "staff.name", &input.name, true, 100);
        let role = Role::from_proto(input.role);
        if role.is_none() {
            violations.add("staff.role", "must be a known role, not UNSPECIFIED");
        }
        let branch_id = violations.check("staff.branch_id", BranchId::parse(&input.branch_id));
        if !(0..=1000).contains(&input.capacity) {
            violations.add("staff.capacity", "must be between 0 and 1000");
        }
        let out_of_office_until = match &input.out_of_office_until {
            Some(ts) => violations.check("staff.out_of_office_until", wire::datetime(ts)),
            None => None,
        };
        let (staff_id, role, branch_id) =
            violations.finish(|| Some((staff_id?, role?, branch_id?)))?;
        tracing::Span::current().record("staff_id", staff_id.as_str());
        let db = &self.state.db;
        if let Some(refusal) = refusal_of(principal, UPSERT_STAFF, &[branch_id.as_str()]) {
            return Err(audit_writer::refuse(db, &actor, refusal).await);
        }
        if role == Role::System && principal.role != Role::System {
            let why = "only the system role may create system accounts";
            let entry = Entry::without_client(UPSERT_STAFF, Decision::Denied, why);
            return Err(audit_writer::refuse(db, &actor, entry).await);
        }
        if branch::Entity::find_by_id(branch_id.as_str())
            .one(db)
            .await?
            .is_none()
        {
            return Err(ClientsError::NotFound(format!("branch {branch_id}")));
        }
        let now = Utc::now();
        let transaction = db.begin().await?;
        // The stored row decides too: naming one's own branch in the request must
        // not move, deactivate or re-role someone of another branch. Locked, so
        // the check holds until the write commits.
        let existing = staff::Entity::find_by_id(staff_id.as_str())
            .lock_exclusive()
            .one(&transaction)
            .await?;
        if let Some(existing) = &existing {
            let refusal = refusal_of(principal, UPSERT_STAFF, &[existing.branch_id.as_str()])
                .or_else(|| {
                    (existing.role == Role::System && principal.role != Role::System).then(|| {
                        let why = "only the system role may change system accounts";
                        Entry::without_client(UPSERT_STAFF, Decision::Denied, why)
                    })
                });
            if let Some(refusal) = refusal {
                return Err(audit_writer::refuse_in(transaction, &actor, refusal).await);
            }
        }
        let row = staff::ActiveModel {
            staff_id: Set(staff_id.to_string()),
            name: Set(input.name.trim().to_owned()),
            role: Set(role),
            branch_id: Set(branch_id.to_string()),
            active: Set(input.active),
            capacity: Set(input.capacity),
            out_of_office_until: Set(out_of_office_until),
            created_at: Set(now),
            updated_at: Set(now),
        };
        staff::Entity::insert(row)
            .on_conflict(
                OnConflict::column(staff::Column::StaffId)
                    .update_columns([
                        staff::Column::Name,
                        staff::Column::Role,
                        staff::Column::BranchId,
                        staff::Column::Active,
                        staff::Column::Capacity,
                        staff::Column::OutOfOfficeUntil,
                        staff::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&transaction)
            .await?;
        let stored = find_staff(&transaction, &staff_id).await?;
        directory_events::publish(&transaction, STAFF_CHANGED, &staff_changed(&stored)).await?;
        let subject = format!("staff {staff_id} of branch {branch_id}");
        let line = Entry::without_client(UPSERT_STAFF, Decision::Allowed, &subject);
        audit_writer::record(&transaction, &actor, [line]).await?;
        transaction.commit().await?;
        self.state.outbox.wake();
        Ok(Response::new(pb::UpsertStaffResponse {
            staff: Some(staff_to_proto(stored)),
        }))
    }

    #[tracing::instrument(skip_all, fields(teller_id, rm_id))]
    async fn handle_pair_teller(
        &self,
        request: Request<pb::PairTellerRequest>,
    ) -> Result<Response<pb::PairTellerResponse>> {
        let actor = Actor::of(&request)?;
        let principal = &actor.principal;
        let input = request.into_inner();
        let mut violations = Violations::new();
        let teller_id = violations.check("teller_id", StaffId::parse(&input.teller_id));
        let rm_id = violations.check("rm_id", StaffId::parse(&input.rm_id));
        let valid_from = match &input.valid_from {
            Some(date) => violations.check("valid_from", wire::date_from_proto(date)),
            None => Some(today_in_shanghai()),
        };
        let valid_until = match &input.valid_until {
            Some(date) => violations.check("valid_until", wire::date_from_proto(date)),
            None => None,
        };
        if let (Some(from), Some(until)) = (valid_from, valid_until)
            && until < from
        {
            violations.add("valid_until", "must not be before valid_from");
        }
        let (teller_id, rm_id, valid_from) =
            violations.finish(|| Some((teller_id?, rm_id?, valid_from?)))?;
        let span = tracing::Span::current();
        span.record("teller_id", teller_id.as_str());
        span.record("rm_id", rm_id.as_str());
        let db = &self.state.db;
        let teller = find_staff(db, &teller_id).await?;
        let rm = find_staff(db, &rm_id).await?;
        // Both ends are the caller's to pair: their teller with their branch's RM.
        let branches = [teller.branch_id.as_str(), rm.branch_id.as_str()];
        if let Some(refusal) = refusal_of(principal, PAIR_TELLER, &branches) {
            return Err(audit_writer::refuse(db, &actor, refusal).await);
        }
        if teller.role != Role::Teller {
            return Err(ClientsError::FailedPrecondition(format!(
                "{teller_id} is not a teller"
            )));
        }
        if rm.role != Role::Rm {
            return Err(ClientsError::FailedPrecondition(format!(
                "{rm_id} is not an RM"
            )));
        }
        let now = Utc::now();
        let transaction = db.begin().await?;
        // A teller has at most one active pair: the new one replaces the old.
        teller_pair::Entity::update_many()
            .col_expr(teller_pair::Column::Active, false.into())
            .filter(teller_pair::Column::TellerId.eq(teller_id.as_str()))
            .filter(teller_pair::Column::Active.eq(true))
            .exec(&transaction)
            .await?;
        let pair = teller_pair::Model {
            pair_id: uuid::Uuid::now_v7().to_string(),
            teller_id: teller_id.to_string(),
            rm_id: rm_id.to_string(),
            valid_from,
            valid_until,
            active: true,
            created_at: now,
        };
        teller_pair::Entity::insert(pair.clone().into_active_model())
            .exec_without_returning(&transaction)
            .await?;
        directory_events::publish(&transaction, PAIR_CHANGED, &pair_changed(&pair)).await?;
        let subject = format!("teller {teller_id} paired with {rm_id}");
        let line = Entry::without_client(PAIR_TELLER, Decision::Allowed, &subject);
        audit_writer::record(&transaction, &actor, [line]).await?;
        transaction.commit().await?;
        self.state.outbox.wake();
        Ok(Response::new(pb::PairTellerResponse {
            pair: Some(pb::TellerPair {
                teller_id: teller_id.to_string(),
                rm_id: rm_id.to_string(),
                valid_from: Some(wire::date_to_proto(valid_from)),
                valid_until: valid_until.map(wire::date_to_proto),
            }),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn handle_list_staff(
        &self,
        request: Request<pb::ListStaffRequest>,
    ) -> Result<Response<pb::ListStaffResponse>> {
        let principal = principal_of(&request)?;
        let input = request.into_inner();
        let mut violations = Violations::new();
        let branch_id = violations.check("branch_id", BranchId::parse(&input.branch_id));
        let role = if input.role == 0 {
            None
        } else {
            let role = Role::from_proto(input.role);
            if role.is_none() {
                violations.add("role", "is not a known role");
            }
            role
        };
        let page_size = violations.check("page_size", wire::page_size(input.page_size));
        let after = violations.check("page_token", StaffId::parse_optional(&input.page_token));
        let (branch_id, page_size, after) =
            violations.finish(|| Some((branch_id?, page_size?, after?)))?;
        let any_branch = matches!(principal.role, Role::System | Role::CampaignAdmin);
        if !any_branch && principal.branch_id != branch_id {
            return Err(ClientsError::PermissionDenied(format!(
                "may list staff of branch {} only",
                principal.branch_id
            )));
        }
        let mut query = staff::Entity::find()
            .filter(staff::Column::BranchId.eq(branch_id.as_str()))
            .order_by_asc(staff::Column::StaffId)
            .limit(page_size + 1);
        if let Some(role) = role {
            query = query.filter(staff::Column::Role.eq(role.as_str()));
        }
        if let Some(after) = &after {
            query = query.filter(staff::Column::StaffId.gt(after.as_str()));
        }
        let rows = query.all(&self.state.db).await?;
        let (rows, next_page_token) = wire::into_page(rows, page_size, |row| row.staff_id.clone());
        Ok(Response::new(pb::ListStaffResponse {
            staff: rows.into_iter().map(staff_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn handle_get_branch(
        &self,
        request: Request<pb::GetBranchRequest>,
    ) -> Result<Response<pb::GetBranchResponse>> {
        principal_of(&request)?;
        let mut violations = Violations::new();
        let branch_id =
            violations.check("branch_id", BranchId::parse(&request.get_ref().branch_id));
        let branch_id = violations.finish(|| branch_id)?;
        let stored = branch::Entity::find_by_id(branch_id.as_str())
            .one(&self.state.db)
            .await?
            .ok_or_else(|| ClientsError::NotFound(format!("branch {branch_id}")))?;
        Ok(Response::new(pb::GetBranchResponse {
            branch: Some(branch_to_proto(stored)),
        }))
    }

    async fn handle_get_staff(
        &self,
        request: Request<pb::GetStaffRequest>,
    ) -> Result<Response<pb::GetStaffResponse>> {
        let principal = principal_of(&request)?;
        let mut violations = Violations::new();
        let staff_id = violations.check("staff_id", StaffId::parse(&request.get_ref().staff_id));
        let staff_id = violations.finish(|| staff_id)?;
        let stored = find_staff(&self.state.db, &staff_id).await?;
        let any_branch = matches!(principal.role, Role::System | Role::CampaignAdmin);
        if !any_branch && stored.branch_id != principal.branch_id.as_str() {
            return Err(ClientsError::PermissionDenied(
                "staff of another branch".into(),
            ));
        }
        Ok(Response::new(pb::GetStaffResponse {
            staff: Some(staff_to_proto(stored)),
        }))
    }
}

/// The gRPC trait: each RPC answers with its handler's result, the crate's error
/// mapped to a status in one place (`error.rs`).
#[tonic::async_trait]
impl DirectoryService for Directory {
    async fn upsert_branch(
        &self,
        request: Request<pb::UpsertBranchRequest>,
    ) -> Result<Response<pb::UpsertBranchResponse>, Status> {
        Ok(self.handle_upsert_branch(request).await?)
    }

    async fn upsert_staff(
        &self,
        request: Request<pb::UpsertStaffRequest>,
    ) -> Result<Response<pb::UpsertStaffResponse>, Status> {
        Ok(self.handle_upsert_staff(request).await?)
    }

    async fn pair_teller(
        &self,
        request: Request<pb::PairTellerRequest>,
    ) -> Result<Response<pb::PairTellerResponse>, Status> {
        Ok(self.handle_pair_teller(request).await?)
    }

    async fn list_staff(
        &self,
        request: Request<pb::ListStaffRequest>,
    ) -> Result<Response<pb::ListStaffResponse>, Status> {
        Ok(self.handle_list_staff(request).await?)
    }

    async fn get_branch(
        &self,
        request: Request<pb::GetBranchRequest>,
    ) -> Result<Response<pb::GetBranchResponse>, Status> {
        Ok(self.handle_get_branch(request).await?)
    }

    async fn get_staff(
        &self,
        request: Request<pb::GetStaffRequest>,
    ) -> Result<Response<pb::GetStaffResponse>, Status> {
        Ok(self.handle_get_staff(request).await?)
    }
}
