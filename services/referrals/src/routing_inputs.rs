//! Loads what the routing chain looks at from the local projections.

use std::str::FromStr;

use chrono::{NaiveDate, Utc};
use crm_domain::routing::Candidate;
use crm_domain::{BranchId, Role, StaffId};
use crm_store::referrals::{routing_pair, routing_staff};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::error::Result;

fn candidate(row: &routing_staff::Model) -> Option<Candidate> {
    Some(Candidate {
        staff_id: StaffId::parse(&row.staff_id).ok()?,
        role: Role::from_str(&row.role).ok()?,
        branch_id: BranchId::parse(&row.branch_id).ok()?,
        active: row.active,
        capacity: row.capacity,
        out_of_office_until: row.out_of_office_until,
        open_referrals: i64::from(row.open_referrals),
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
    let find_named = |id: Option<&str>| {
        id.and_then(|id| named_rows.iter().find(|row| row.staff_id == id))
            .and_then(candidate)
    };
    Ok(Candidates {
        primary_rm: find_named(primary_rm_id),
        paired_rm: find_named(paired_rm_id.as_deref()),
        branch_staff: branch_rows.iter().filter_map(candidate).collect(),
    })
}
