//! Who may see which client, and how much (API.md's role table), in one place for
//! every service that shows client data — the client book, and any service that
//! keeps its own copy of a client's coverage (the events service's timeline, the
//! console). Pure: a service applies it to a loaded row with [`client_view`], and
//! puts the same rule into its own SQL with [`client_scope`].
//!
//! | role            | reads                                         | sees               |
//! |-----------------|-----------------------------------------------|--------------------|
//! | system          | every client                                  | everything         |
//! | rm              | clients they cover (any of the three posts)   | everything         |
//! | branch_manager  | clients of their branch, and any they cover   | everything         |
//! | teller          | clients of their branch, by id or phone only  | PII masked         |
//! | campaign_admin  | every client                                  | name and tier only |

use crate::Role;

/// How much of a client record a caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientView {
    /// Everything, PII in clear.
    Full,
    /// Everything, national id and phone masked.
    Masked,
    /// Name and tier only.
    NameAndTier,
}

/// The three layered coverage posts of API.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoveragePost {
    /// The branch RM.
    PrimaryRm,
    /// The city branch's wealth-management post.
    WealthManager,
    /// The private-banking desk.
    PrivateBanker,
}

impl CoveragePost {
    pub const ALL: [CoveragePost; 3] = [
        CoveragePost::PrimaryRm,
        CoveragePost::WealthManager,
        CoveragePost::PrivateBanker,
    ];
}

/// Who asks: the fields of an authenticated caller the rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub role: Role,
    pub staff_id: &'a str,
    pub branch_id: &'a str,
}

/// What the rule looks at of a client: its home branch and who holds each post.
#[derive(Debug, Clone, Copy)]
pub struct Coverage<'a> {
    pub home_branch_id: &'a str,
    pub primary_rm_id: Option<&'a str>,
    pub wealth_manager_id: Option<&'a str>,
    pub private_banker_id: Option<&'a str>,
}

impl Coverage<'_> {
    /// Who holds `post`, if anyone.
    pub fn holder(&self, post: CoveragePost) -> Option<&str> {
        match post {
            CoveragePost::PrimaryRm => self.primary_rm_id,
            CoveragePost::WealthManager => self.wealth_manager_id,
            CoveragePost::PrivateBanker => self.private_banker_id,
        }
    }

    /// Whether `staff_id` holds any of the three posts.
    pub fn is_covered_by(&self, staff_id: &str) -> bool {
        CoveragePost::ALL
            .into_iter()
            .any(|post| self.holder(post) == Some(staff_id))
    }
}

/// What `caller` may see of one client; None: nothing.
pub fn client_view(caller: Caller<'_>, client: &Coverage<'_>) -> Option<ClientView> {
    let own_branch = client.home_branch_id == caller.branch_id;
    let covers = client.is_covered_by(caller.staff_id);
    match caller.role {
        Role::System => Some(ClientView::Full),
        Role::Rm if covers => Some(ClientView::Full),
        Role::BranchManager if own_branch || covers => Some(ClientView::Full),
        Role::Teller if own_branch => Some(ClientView::Masked),
        Role::CampaignAdmin => Some(ClientView::NameAndTier),
        _ => None,
    }
}

/// One alternative of a caller's scope: a client is in scope when any arm holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeArm {
    EveryClient,
    HomeBranch(String),
    Post(CoveragePost, String),
}

/// The clients `caller` may read, as alternatives ("arms"). A store runs one
/// keyset query per arm and merges them, because an OR across columns can't walk
/// any one index in order.
pub fn client_scope(caller: Caller<'_>) -> Vec<ScopeArm> {
    let posts = || {
        CoveragePost::ALL
            .into_iter()
            .map(|post| ScopeArm::Post(post, caller.staff_id.to_owned()))
    };
    match caller.role {
        Role::System | Role::CampaignAdmin => vec![ScopeArm::EveryClient],
        Role::Rm => posts().collect(),
        Role::BranchManager => std::iter::once(ScopeArm::HomeBranch(caller.branch_id.to_owned()))
            .chain(posts())
            .collect(),
        Role::Teller => vec![ScopeArm::HomeBranch(caller.branch_id.to_owned())],
    }
}

/// Interactions are part of the relationship: read and written by those who see
/// the client whole, never by tellers or campaign admins.
pub fn may_use_contact_log(caller: Caller<'_>, client: &Coverage<'_>) -> bool {
    client_view(caller, client) == Some(ClientView::Full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_scope(arms: &[ScopeArm], client: &Coverage<'_>) -> bool {
        arms.iter().any(|arm| match arm {
            ScopeArm::EveryClient => true,
            ScopeArm::HomeBranch(branch) => client.home_branch_id == branch,
            ScopeArm::Post(post, staff) => client.holder(*post) == Some(staff.as_str()),
        })
    }

    /// Every role against a client of its own branch it covers, one of its own
    /// branch it doesn't, one it covers from another branch (layered coverage) and
    /// a stranger — the view, and that the SQL scope agrees with it.
    #[test]
    fn the_role_table() {
        let own_covered = Coverage {
            home_branch_id: "B-1",
            primary_rm_id: Some("ME"),
            wealth_manager_id: None,
            private_banker_id: None,
        };
        let own_other = Coverage {
            home_branch_id: "B-1",
            primary_rm_id: Some("SOMEONE"),
            wealth_manager_id: None,
            private_banker_id: None,
        };
        let layered = Coverage {
            home_branch_id: "B-2",
            primary_rm_id: Some("SOMEONE"),
            wealth_manager_id: Some("ME"),
            private_banker_id: None,
        };
        let stranger = Coverage {
            home_branch_id: "B-2",
            primary_rm_id: None,
            wealth_manager_id: None,
            private_banker_id: None,
        };
        use ClientView::*;
        let table: [(Role, [Option<ClientView>; 4]); 5] = [
            (
                Role::System,
                [Some(Full), Some(Full), Some(Full), Some(Full)],
            ),
            (Role::Rm, [Some(Full), None, Some(Full), None]),
            (
                Role::BranchManager,
                [Some(Full), Some(Full), Some(Full), None],
            ),
            (Role::Teller, [Some(Masked), Some(Masked), None, None]),
            (
                Role::CampaignAdmin,
                [
                    Some(NameAndTier),
                    Some(NameAndTier),
                    Some(NameAndTier),
                    Some(NameAndTier),
                ],
            ),
        ];
        for (role, views) in table {
            let caller = Caller {
                role,
                staff_id: "ME",
                branch_id: "B-1",
            };
            let arms = client_scope(caller);
            for (client, want) in [own_covered, own_other, layered, stranger]
                .iter()
                .zip(views)
            {
                assert_eq!(client_view(caller, client), want, "{role} {client:?}");
                assert_eq!(
                    in_scope(&arms, client),
                    want.is_some(),
                    "{role} scope {client:?}"
                );
            }
        }
    }

    #[test]
    fn only_a_full_view_uses_the_contact_log() {
        let client = Coverage {
            home_branch_id: "B-1",
            primary_rm_id: None,
            wealth_manager_id: None,
            private_banker_id: None,
        };
        let caller = |role| Caller {
            role,
            staff_id: "ME",
            branch_id: "B-1",
        };
        assert!(may_use_contact_log(caller(Role::BranchManager), &client));
        assert!(!may_use_contact_log(caller(Role::Teller), &client));
        assert!(!may_use_contact_log(caller(Role::CampaignAdmin), &client));
    }
}
