//! Page tokens a caller cannot forge or carry into another search: the token is the
//! last key of the page plus a signature over that key, the caller's identity and
//! the search's filters. Another caller, other filters or an edited key fail the
//! check and answer INVALID_ARGUMENT on `page_token`.

use crate::Principal;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crm_store::Vault;

pub struct PageTokens<'a> {
    vault: &'a Vault,
    scope: String,
}

impl<'a> PageTokens<'a> {
    /// `filters`: every parameter that shapes the result, by name.
    pub fn new(vault: &'a Vault, principal: &Principal, filters: &[(&str, &str)]) -> Self {
        let mut scope = format!(
            "{}|{}|{}",
            principal.staff_id, principal.role, principal.branch_id
        );
        for (name, value) in filters {
            scope.push_str(&format!("|{name}={value}"));
        }
        Self { vault, scope }
    }

    fn signed_bytes(&self, key: &str) -> Vec<u8> {
        format!("{}\u{0}{key}", self.scope).into_bytes()
    }

    /// The token for the page after `key`; empty when there is no next page.
    pub fn issue(&self, key: &str) -> String {
        if key.is_empty() {
            return String::new();
        }
        let signature = self.vault.sign(&self.signed_bytes(key));
        format!("{}.{signature}", URL_SAFE_NO_PAD.encode(key))
    }

    /// The key a token continues after (None: the first page).
    pub fn read(&self, token: &str) -> Result<Option<String>, &'static str> {
        const FOREIGN: &str = "is not a page token of this search";
        if token.is_empty() {
            return Ok(None);
        }
        let (key, signature) = token.split_once('.').ok_or(FOREIGN)?;
        let key = URL_SAFE_NO_PAD
            .decode(key)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(FOREIGN)?;
        if self.vault.verify(&self.signed_bytes(&key), signature) {
            Ok(Some(key))
        } else {
            Err(FOREIGN)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_domain::{BranchId, Role, StaffId};

    fn principal(staff: &str) -> Principal {
        Principal {
            staff_id: StaffId::parse(staff).unwrap(),
            role: Role::Rm,
            branch_id: BranchId::parse("B-001").unwrap(),
        }
    }

    #[test]
    fn a_token_works_only_for_the_search_and_caller_that_received_it() {
        let vault = Vault::from_base64(&Vault::generate_key().unwrap()).unwrap();
        let mine = PageTokens::new(&vault, &principal("RM-1"), &[("segment", "coal")]);
        let token = mine.issue("C-000123");
        assert_eq!(mine.read(&token), Ok(Some("C-000123".to_owned())));
        assert_eq!(mine.read(""), Ok(None));
        let other_caller = PageTokens::new(&vault, &principal("RM-2"), &[("segment", "coal")]);
        assert!(other_caller.read(&token).is_err());
        let other_filter = PageTokens::new(&vault, &principal("RM-1"), &[("segment", "payroll")]);
        assert!(other_filter.read(&token).is_err());
        let (_, signature) = token.split_once('.').unwrap();
        let edited = format!("{}.{signature}", URL_SAFE_NO_PAD.encode("C-000000"));
        assert!(mine.read(&edited).is_err());
        assert!(mine.read("C-000123").is_err());
    }
}
