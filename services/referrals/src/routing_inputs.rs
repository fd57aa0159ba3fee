//! Loads what the routing chain looks at from the local projections.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{NaiveDate, Utc};
use crm_domain::referral::ReferralStatus;
use crm_domain::routing::Candidate;
use crm_domain::{BranchId, Role, StaffId};
use crm_store::referrals::{referral, routing_pair, routing_staff};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

use crate::error::Result;

/// Open referrals per RM, for the given RMs.
async fn open_counts(
    db: &impl ConnectionTrait,
    staff_ids: Vec<String>,
) -> Result<HashMap<String, i64>> {
    if staff_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let open: Vec<&str> = ReferralStatus::OPEN.iter().map(|s| s.as_str()).collect();
    let rows: Vec<(String, i64)> = referral::Entity::find()
        .select_only()
        .column(referral::Column::AssignedRmId)
        .column_as(Expr::col(referral::Column::ReferralId).count(), "open")
        .filter(referral::Column::AssignedRmId.is_in(staff_ids))
        .filter(referral::Column::Status.is_in(open))
        .group_by(referral::Column::AssignedRmId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

fn candidate(row: &routing_staff::Model, open: &HashMap<String, i64>) -> Option<Candidate> {
    Some(Candidate {
        staff_id: StaffId::parse(&row.staff_id).ok()?,
        role: Role::from_str(&row.role).ok()?,
        branch_id: BranchId::parse(&row.branch_id).ok()?,
        active: row.active,
        capacity: row.capacity,
        out_of_office_until: row.out_of_office_until,
        open_referrals: open.get(&row.staff_id).copied().unwrap_or(0),
        last_assigned_at: row.last_assigned_at,
    })
}

/// The people routing may consider for one referral.
pub struct Candidates {
    pub primary_rm: Option<Candidate>,
    pub paired_rm: Option<Candidate>,
    pub branch_staff: Vec<Candidate>,
}

fn pair_is_current(pair: &routing_pair::Model, today: NaiveDate) -> bool {
    pair.valid_from <= today && pair.valid_until.is_none_or(|until| until >= today)
}

pub async fn load(
    db: &impl ConnectionTrait,
    branch_id: &BranchId,
    teller_id: &StaffId,
    primary_rm_id: Option<&str>,
) -> Result<Candidates> {
    let today = Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive();
    let paired_rm_id = routing_pair::Entity::find_by_id(teller_id.as_str())
        .one(db)
        .await?
        .filter(|pair| pair_is_current(pair, today))
        .map(|pair| pair.rm_id);
    let branch_rows = routing_staff::Entity::find()
        .filter(routing_staff::Column::BranchId.eq(branch_id.as_str()))
        .filter(
            routing_staff::Column::Role.is_in([Role::Rm.as_str(), Role::BranchManager.as_str()]),
        )
        .all(db)
        .await?;
    let mut named_rows = Vec::new();
    for id in [primary_rm_id, paired_rm_id.as_deref()]
        .into_iter()
        .flatten()
    {
        match branch_rows.iter().find(|row| row.staff_id == id) {
            Some(row) => named_rows.push(row.clone()),
            None => {
                if let Some(row) = routing_staff::Entity::find_by_id(id).one(db).await? {
                    named_rows.push(row);
                }
            }
        }
    }
    let mut ids: Vec<String> = branch_rows.iter().map(|row| row.staff_id.clone()).collect();
    ids.extend(named_rows.iter().map(|row| row.staff_id.clone()));
    ids.sort();
    ids.dedup();
    let open = open_counts(db, ids).await?;
    let find_named = |id: Option<&str>| {
        id.and_then(|id| named_rows.iter().find(|row| row.staff_id == id))
            .and_then(|row| candidate(row, &open))
    };
    Ok(Candidates {
        primary_rm: find_named(primary_rm_id),
        paired_rm: find_named(paired_rm_id.as_deref()),
        branch_staff: branch_rows
            .iter()
            .filter_map(|row| candidate(row, &open))
            .collect(),
    })
}
