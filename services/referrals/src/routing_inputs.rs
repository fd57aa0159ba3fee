//! Loads what the routing chain looks at from the local projections.

use crate::store::{routing_pair, routing_staff};
use chrono::{NaiveDate, Utc};
use chrono_tz::Tz;
use crm_domain::routing::Candidate;
use crm_domain::{BranchId, Role, StaffId};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::error::{ReferralsError, Result};

/// A stored copy of a staff member as routing weighs them. A row whose ids no
/// longer parse is corrupt: routing fails loudly rather than quietly skip someone.
fn candidate(row: &routing_staff::Model) -> Result<Candidate> {
    let corrupt =
        |what: &str| ReferralsError::Corrupt(format!("routing_staff {:?}: {what}", row.staff_id));
    Ok(Candidate {
        staff_id: StaffId::parse(&row.staff_id).map_err(|_| corrupt("staff id"))?,
        role: row.role,
        branch_id: BranchId::parse(&row.branch_id).map_err(|_| corrupt("branch id"))?,
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

/// The teller's paired RM today (in the branch's time zone), if they have one.
/// Read before routing's lock: pairs change by directory news, not by routing.
pub async fn paired_rm_id(
    db: &impl ConnectionTrait,
    teller_id: &StaffId,
    time_zone: Tz,
) -> Result<Option<String>> {
    let today = Utc::now().with_timezone(&time_zone).date_naive();
    Ok(routing_pair::Entity::find_by_id(teller_id.as_str())
        .one(db)
        .await?
        .filter(|pair| pair_is_current(pair, today))
        .map(|pair| pair.rm_id))
}

/// The branch's pool and the named RMs (who may sit in other branches), as they
/// are now: one query, since it runs under routing's lock.
pub async fn load(
    db: &impl ConnectionTrait,
    branch_id: &BranchId,
    primary_rm_id: Option<&str>,
    paired_rm_id: Option<&str>,
) -> Result<Candidates> {
    let named: Vec<&str> = [primary_rm_id, paired_rm_id]
        .into_iter()
        .flatten()
        .collect();
    let in_pool = Condition::all()
        .add(routing_staff::Column::BranchId.eq(branch_id.as_str()))
        .add(routing_staff::Column::Role.is_in([Role::Rm, Role::BranchManager]));
    let rows = routing_staff::Entity::find()
        .filter(
            Condition::any()
                .add(in_pool)
                .add(routing_staff::Column::StaffId.is_in(named)),
        )
        .order_by_asc(routing_staff::Column::StaffId)
        .all(db)
        .await?;
    let find_named = |id: Option<&str>| {
        id.and_then(|id| rows.iter().find(|row| row.staff_id == id))
            .map(candidate)
            .transpose()
    };
    let is_pool = |row: &&routing_staff::Model| {
        row.branch_id == branch_id.as_str()
            && (row.role == Role::Rm || row.role == Role::BranchManager)
    };
    Ok(Candidates {
        primary_rm: find_named(primary_rm_id)?,
        paired_rm: find_named(paired_rm_id)?,
        branch_staff: rows
            .iter()
            .filter(is_pool)
            .map(candidate)
            .collect::<Result<_>>()?,
    })
}
