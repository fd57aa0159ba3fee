//! Ids parsed once at the edge and never re-checked.
//!
//! Client ids are the bank's customer numbers; staff and branch ids follow the same
//! shape (`T-0001`, `B-001`). Ids the suite mints are UUIDv7 strings.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is required")]
    Missing,
    #[error("must be 1 to 32 characters of A-Z, 0-9 and '-'")]
    Malformed,
    #[error("must be a UUID")]
    NotUuid,
}

fn is_bank_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

macro_rules! bank_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, IdError> {
                if value.is_empty() {
                    return Err(IdError::Missing);
                }
                if !is_bank_id(value) {
                    return Err(IdError::Malformed);
                }
                Ok(Self(value.to_owned()))
            }

            /// Empty means "not given"; anything else must parse.
            pub fn parse_optional(value: &str) -> Result<Option<Self>, IdError> {
                if value.is_empty() {
                    Ok(None)
                } else {
                    Self::parse(value).map(Some)
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

bank_id!(
    /// A bank customer number, `^[A-Z0-9-]{1,32}$`.
    ClientId
);
bank_id!(
    /// A staff member's id (teller, RM, manager, admin, or a system job).
    StaffId
);
bank_id!(
    /// A branch id.
    BranchId
);

/// Parses an id the suite minted (UUIDv7), keeping its canonical text.
pub fn parse_uuid(value: &str) -> Result<uuid::Uuid, IdError> {
    if value.is_empty() {
        return Err(IdError::Missing);
    }
    uuid::Uuid::parse_str(value).map_err(|_| IdError::NotUuid)
}

/// Mints a new time-ordered id.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_numbers_are_upper_case_digits_and_dashes() {
        assert!(ClientId::parse("C-000123").is_ok());
        assert_eq!(ClientId::parse(""), Err(IdError::Missing));
        assert_eq!(ClientId::parse("c-1"), Err(IdError::Malformed));
        assert_eq!(ClientId::parse("C 1"), Err(IdError::Malformed));
        assert_eq!(ClientId::parse(&"A".repeat(33)), Err(IdError::Malformed));
        assert!(ClientId::parse(&"A".repeat(32)).is_ok());
    }

    #[test]
    fn minted_ids_parse_back() {
        let id = new_id();
        assert_eq!(parse_uuid(&id.to_string()), Ok(id));
        assert_eq!(parse_uuid("nope"), Err(IdError::NotUuid));
    }
}
