//! Who may see what in the client book (API.md's role table), in one place:
//!
//! | role            | reads                                         | sees               |
//! |-----------------|-----------------------------------------------|--------------------|
//! | system          | every client                                  | everything         |
//! | rm              | clients they cover (any of the three posts)   | everything         |
//! | branch_manager  | clients of their branch, and any they cover   | everything         |
//! | teller          | clients of their branch, by id or phone only  | PII masked         |
//! | campaign_admin  | every client                                  | name and tier only |
//!
//! Single reads check the loaded row with [`view_for`]; searches put the same rule
//! into SQL with [`ClientScope`], so no query ever fetches rows outside the scope.

use crate::store::client;
use crm_auth::Principal;
use crm_domain::{Role, StaffId};
use sea_orm::{ColumnTrait, Condition};

/// How much of a client record a caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// Everything, PII in clear.
    Full,
    /// Everything, national id and phone masked.
    Masked,
    /// Name and tier only.
    NameAndTier,
}

/// Whether `staff_id` holds any of the client's three coverage posts.
pub(crate) fn covers(model: &client::Model, staff_id: &StaffId) -> bool {
    [
        &model.primary_rm_id,
        &model.wealth_manager_id,
        &model.private_banker_id,
    ]
    .into_iter()
    .any(|id| id.as_deref() == Some(staff_id.as_str()))
}

/// What `principal` may see of one client; None: nothing.
pub(crate) fn view_for(principal: &Principal, model: &client::Model) -> Option<View> {
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

/// The three coverage posts of `staff_id`, one predicate each: every one can walk
/// its `(post, client_id)` index in client-id order.
pub(crate) fn coverage_arms(staff_id: &str) -> Vec<Condition> {
    vec![
        Condition::all().add(client::Column::PrimaryRmId.eq(staff_id)),
        Condition::all().add(client::Column::WealthManagerId.eq(staff_id)),
        Condition::all().add(client::Column::PrivateBankerId.eq(staff_id)),
    ]
}

/// The rows of `clients` a caller's searches may touch, as alternatives ("arms"):
/// a client is in scope when any arm holds. Searches run one keyset query per arm
/// and merge them, because an OR across columns can't walk any one index in order
/// and a database then reads every covered client to sort them.
pub(crate) struct ClientScope(Vec<Condition>);

impl ClientScope {
    pub(crate) fn of(principal: &Principal) -> ClientScope {
        let branch = client::Column::HomeBranchId.eq(principal.branch_id.as_str());
        let staff_id = principal.staff_id.as_str();
        ClientScope(match principal.role {
            Role::System | Role::CampaignAdmin => vec![Condition::all()],
            Role::Rm => coverage_arms(staff_id),
            Role::BranchManager => {
                let mut arms = vec![Condition::all().add(branch)];
                arms.extend(coverage_arms(staff_id));
                arms
            }
            Role::Teller => vec![Condition::all().add(branch)],
        })
    }

    pub(crate) fn arms(self) -> Vec<Condition> {
        self.0
    }

    /// The scope as one condition (any arm).
    pub(crate) fn condition(self) -> Condition {
        self.0
            .into_iter()
            .fold(Condition::any(), |any, arm| any.add(arm))
    }
}

/// Interactions are part of the relationship: read and written by those who see
/// the client whole, never by tellers or campaign admins.
pub(crate) fn may_use_contact_log(principal: &Principal, model: &client::Model) -> bool {
    view_for(principal, model) == Some(View::Full)
}
