//! GetReferral and ListReferrals, each within the caller's [`ReferralScope`].

use crate::store::{referral, referral_history};
use crm_auth::principal_of;
use crm_domain::referral::ReferralStatus;
use crm_domain::{BranchId, StaffId, Violations};
use crm_grpc::{WireEnum, wire};
use crm_proto::v1 as pb;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tonic::{Request, Response};

use crate::access::{ReferralScope, find_in_scope};
use crate::error::{ReferralsError, Result};
use crate::referral_wire::{change_to_proto, parse_uuid, to_proto};
use crate::service::Referrals;

/// The referral, locked for the rest of the caller's transaction (PostgreSQL; on
/// SQLite the single connection already serialises writers): every change reads,
/// checks the state machine, then writes — two at once must not both pass.
pub(crate) async fn find_referral_for_update(
    transaction: &impl ConnectionTrait,
    referral_id: &str,
) -> Result<referral::Model> {
    referral::Entity::find_by_id(referral_id)
        .lock_exclusive()
        .one(transaction)
        .await?
        .ok_or_else(|| ReferralsError::NotFound(format!("referral {referral_id}")))
}

pub(crate) async fn find_referral(
    db: &impl ConnectionTrait,
    referral_id: &str,
) -> Result<referral::Model> {
    referral::Entity::find_by_id(referral_id)
        .one(db)
        .await?
        .ok_or_else(|| ReferralsError::NotFound(format!("referral {referral_id}")))
}

impl Referrals {
    #[tracing::instrument(skip_all)]
    pub(crate) async fn handle_get_referral(
        &self,
        request: Request<pb::GetReferralRequest>,
    ) -> Result<Response<pb::GetReferralResponse>> {
        let principal = principal_of(&request)?;
        let mut violations = Violations::new();
        let id = parse_uuid(
            &mut violations,
            "referral_id",
            &request.get_ref().referral_id,
        );
        let id = violations.finish(|| id)?;
        let stored = find_in_scope(&self.state.db, &principal, &id).await?;
        let history = referral_history::Entity::find()
            .filter(referral_history::Column::ReferralId.eq(id.as_str()))
            .order_by_asc(referral_history::Column::HistoryId)
            .all(&self.state.db)
            .await?;
        let mut referral = to_proto(stored, &principal, &self.state.vault)?;
        referral.history = history.into_iter().map(change_to_proto).collect();
        Ok(Response::new(pb::GetReferralResponse {
            referral: Some(referral),
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn handle_list_referrals(
        &self,
        request: Request<pb::ListReferralsRequest>,
    ) -> Result<Response<pb::ListReferralsResponse>> {
        let principal = principal_of(&request)?;
        let input = request.into_inner();
        let mut violations = Violations::new();
        let referrer = violations
            .check("referrer_id", StaffId::parse_optional(&input.referrer_id))
            .flatten();
        let assigned = violations
            .check(
                "assigned_rm_id",
                StaffId::parse_optional(&input.assigned_rm_id),
            )
            .flatten();
        let branch = violations
            .check("branch_id", BranchId::parse_optional(&input.branch_id))
            .flatten();
        let status = if input.status == 0 {
            None
        } else {
            let status = ReferralStatus::from_proto(input.status);
            if status.is_none() {
                violations.add("status", "is not a known status");
            }
            status
        };
        let page_size = violations.check("page_size", wire::page_size(input.page_size));
        let after = if input.page_token.is_empty() {
            None
        } else {
            parse_uuid(&mut violations, "page_token", &input.page_token)
        };
        let page_size = violations.finish(|| page_size)?;
        let mut query = referral::Entity::find()
            .order_by_desc(referral::Column::ReferralId)
            .limit(page_size + 1);
        // Scope first: the caller's role fixes the filter it may not widen.
        query = query.filter(ReferralScope::of(&principal)?.condition());
        if let Some(referrer) = referrer {
            query = query.filter(referral::Column::ReferrerId.eq(referrer.as_str()));
        }
        if let Some(assigned) = assigned {
            query = query.filter(referral::Column::AssignedRmId.eq(assigned.as_str()));
        }
        if let Some(branch) = branch {
            query = query.filter(referral::Column::BranchId.eq(branch.as_str()));
        }
        if let Some(status) = status {
            query = query.filter(referral::Column::Status.eq(status.as_str()));
        }
        if let Some(after) = after {
            query = query.filter(referral::Column::ReferralId.lt(after));
        }
        let rows = query.all(&self.state.db).await?;
        let (rows, next_page_token) =
            wire::into_page(rows, page_size, |row| row.referral_id.clone());
        Ok(Response::new(pb::ListReferralsResponse {
            referrals: rows
                .into_iter()
                .map(|row| to_proto(row, &principal, &self.state.vault))
                .collect::<Result<_, _>>()?,
            next_page_token,
        }))
    }
}
