//! The roles of API.md, as carried in a token's `role` claim.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum),
    sea_orm(rs_type = "String", db_type = "Text")
)]
pub enum Role {
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "teller"))]
    Teller,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "rm"))]
    Rm,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "branch_manager"))]
    BranchManager,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "campaign_admin"))]
    CampaignAdmin,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "system"))]
    System,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Teller,
        Role::Rm,
        Role::BranchManager,
        Role::CampaignAdmin,
        Role::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Teller => "teller",
            Role::Rm => "rm",
            Role::BranchManager => "branch_manager",
            Role::CampaignAdmin => "campaign_admin",
            Role::System => "system",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(value: &str) -> Result<Self, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == value)
            .ok_or_else(|| UnknownRole(value.to_owned()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_claim_text() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
