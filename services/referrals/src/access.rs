//! Who may read which referral and whose work queue. One rule per role, used both
//! to check a loaded row and, as a condition, in the SQL of a list — so a list
//! can never show what a single read would refuse.

use crate::store::{referral, routing_staff};
use crm_auth::Principal;
use crm_domain::{Role, StaffId, Violations};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait};

use crate::ReferralsState;
use crate::error::{ReferralsError, Result};

/// The referrals a caller may read. API.md: a teller reads the referrals they
/// made, an RM those they hold, a branch manager those of their branch, the system
/// all; campaign admins read reports, not referrals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReferralScope {
    Everything,
    MadeBy(String),
    HeldBy(String),
    Branch(String),
}

impl ReferralScope {
    pub(crate) fn of(principal: &Principal) -> Result<Self> {
        Ok(match principal.role {
            Role::System => ReferralScope::Everything,
            Role::Teller => ReferralScope::MadeBy(principal.staff_id.to_string()),
            Role::Rm => ReferralScope::HeldBy(principal.staff_id.to_string()),
            Role::BranchManager => ReferralScope::Branch(principal.branch_id.to_string()),
            Role::CampaignAdmin => {
                return Err(ReferralsError::PermissionDenied(
                    "campaign admins read reports, not referrals".into(),
                ));
            }
        })
    }

    /// True when `model` is in scope (a row already loaded).
    pub(crate) fn allows(&self, model: &referral::Model) -> bool {
        match self {
            ReferralScope::Everything => true,
            ReferralScope::MadeBy(teller) => &model.referrer_id == teller,
            ReferralScope::HeldBy(rm) => &model.assigned_rm_id == rm,
            ReferralScope::Branch(branch) => &model.branch_id == branch,
        }
    }

    /// The same rule as a SQL condition, for lists.
    pub(crate) fn condition(&self) -> Condition {
        match self {
            ReferralScope::Everything => Condition::all(),
            ReferralScope::MadeBy(teller) => {
                Condition::all().add(referral::Column::ReferrerId.eq(teller.as_str()))
            }
            ReferralScope::HeldBy(rm) => {
                Condition::all().add(referral::Column::AssignedRmId.eq(rm.as_str()))
            }
            ReferralScope::Branch(branch) => {
                Condition::all().add(referral::Column::BranchId.eq(branch.as_str()))
            }
        }
    }
}

/// True when `principal` may read `model` whole.
pub(crate) fn may_read_referral(principal: &Principal, model: &referral::Model) -> bool {
    ReferralScope::of(principal).is_ok_and(|scope| scope.allows(model))
}

/// Whether `principal` may change `model` (accept it, record its outcome): its
/// holder may, and the branch manager of its branch.
pub(crate) fn may_work_on(principal: &Principal, model: &referral::Model) -> Result<()> {
    let holder = model.assigned_rm_id == principal.staff_id.as_str();
    let manager =
        principal.role == Role::BranchManager && model.branch_id == principal.branch_id.as_str();
    if holder || manager {
        Ok(())
    } else {
        Err(ReferralsError::PermissionDenied(
            "referral is held by another RM".into(),
        ))
    }
}

/// A referral the caller may read: NOT_FOUND if there is none, PERMISSION_DENIED
/// if it is outside their scope.
pub(crate) async fn find_in_scope(
    db: &impl ConnectionTrait,
    principal: &Principal,
    referral_id: &str,
) -> Result<referral::Model> {
    let scope = ReferralScope::of(principal)?;
    let stored = crate::referral_reads::find_referral(db, referral_id).await?;
    if !scope.allows(&stored) {
        return Err(ReferralsError::PermissionDenied(
            "referral is outside your scope".into(),
        ));
    }
    Ok(stored)
}

/// Whose queue a caller may read: their own, or (a manager) an RM of their branch.
pub(crate) async fn queue_owner(
    state: &ReferralsState,
    principal: &Principal,
    requested: &str,
) -> Result<StaffId> {
    let mut violations = Violations::new();
    let requested = violations
        .check("rm_id", StaffId::parse_optional(requested))
        .flatten();
    if !violations.is_empty() {
        return Err(violations.into());
    }
    let Some(requested) = requested.filter(|id| id != &principal.staff_id) else {
        return match principal.role {
            Role::Rm | Role::BranchManager => Ok(principal.staff_id.clone()),
            role => Err(ReferralsError::PermissionDenied(format!(
                "role {role} has no work queue"
            ))),
        };
    };
    match principal.role {
        Role::System => Ok(requested),
        Role::BranchManager => {
            let member = routing_staff::Entity::find_by_id(requested.as_str())
                .one(&state.db)
                .await?;
            match member {
                Some(member) if member.branch_id == principal.branch_id.as_str() => Ok(requested),
                _ => Err(ReferralsError::PermissionDenied(
                    "RM of another branch".into(),
                )),
            }
        }
        _ => Err(ReferralsError::PermissionDenied(
            "may read own queue only".into(),
        )),
    }
}
