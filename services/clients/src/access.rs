//! The client book's side of the access rule (crm_domain::client_access, the one
//! role table): the rule applied to a loaded row with [`view_for`], and put into
//! SQL on this service's `clients` table with [`ClientScope`], so no query ever
//! fetches rows outside the scope.

use crate::store::client;
use crm_auth::Principal;
use crm_domain::client_access::{self, Coverage, CoveragePost, ScopeArm};
use sea_orm::{ColumnTrait, Condition};

pub(crate) use crm_domain::client_access::ClientView as View;

/// What the rule looks at of a stored client.
pub(crate) fn coverage_of(model: &client::Model) -> Coverage<'_> {
    Coverage {
        home_branch_id: &model.home_branch_id,
        primary_rm_id: model.primary_rm_id.as_deref(),
        wealth_manager_id: model.wealth_manager_id.as_deref(),
        private_banker_id: model.private_banker_id.as_deref(),
    }
}

/// What `principal` may see of one client; None: nothing.
pub(crate) fn view_for(principal: &Principal, model: &client::Model) -> Option<View> {
    client_access::client_view(principal.caller(), &coverage_of(model))
}

/// The column of `post` in this service's `clients` table.
fn post_column(post: CoveragePost) -> client::Column {
    match post {
        CoveragePost::PrimaryRm => client::Column::PrimaryRmId,
        CoveragePost::WealthManager => client::Column::WealthManagerId,
        CoveragePost::PrivateBanker => client::Column::PrivateBankerId,
    }
}

/// One arm of the rule as a condition on the `clients` table.
fn arm_condition(arm: ScopeArm) -> Condition {
    match arm {
        ScopeArm::EveryClient => Condition::all(),
        ScopeArm::HomeBranch(branch) => {
            Condition::all().add(client::Column::HomeBranchId.eq(branch))
        }
        ScopeArm::Post(post, staff_id) => Condition::all().add(post_column(post).eq(staff_id)),
    }
}

/// The three coverage posts of `staff_id`, one predicate each: every one can walk
/// its `(post, client_id)` index in client-id order.
pub(crate) fn coverage_arms(staff_id: &str) -> Vec<Condition> {
    CoveragePost::ALL
        .into_iter()
        .map(|post| arm_condition(ScopeArm::Post(post, staff_id.to_owned())))
        .collect()
}

/// The rows of `clients` a caller's searches may touch, as alternatives ("arms"):
/// a client is in scope when any arm holds. Searches run one keyset query per arm
/// and merge them, because an OR across columns can't walk any one index in order
/// and a database then reads every covered client to sort them.
pub(crate) struct ClientScope(Vec<Condition>);

impl ClientScope {
    pub(crate) fn of(principal: &Principal) -> ClientScope {
        ClientScope(
            client_access::client_scope(principal.caller())
                .into_iter()
                .map(arm_condition)
                .collect(),
        )
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
    client_access::may_use_contact_log(principal.caller(), &coverage_of(model))
}
