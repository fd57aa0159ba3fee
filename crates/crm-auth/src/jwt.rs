use std::str::FromStr;

use crm_domain::{BranchId, Role, StaffId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};

use crate::Principal;

/// The claims of API.md.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    pub branch: String,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
    #[error("token claims are invalid: {0}")]
    BadClaims(String),
    #[error("no signing key: set CRM_JWT_SECRET")]
    NoSigningKey,
    #[error("could not read key: {0}")]
    Key(String),
}

/// The keys tokens are checked (and, for development, minted) with.
pub struct JwtKeys {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
}

impl JwtKeys {
    /// HS256 with a shared secret (development, tests, a single bank deployment).
    pub fn hs256(secret: &SecretString) -> Result<Self, AuthError> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < 16 {
            return Err(AuthError::Key(
                "CRM_JWT_SECRET must be at least 16 bytes".to_owned(),
            ));
        }
        Ok(Self {
            decoding: DecodingKey::from_secret(bytes),
            encoding: Some(EncodingKey::from_secret(bytes)),
            validation: validation(Algorithm::HS256),
        })
    }

    /// RS256 with the identity provider's public key (PEM): verify only.
    pub fn rs256_public(pem: &[u8]) -> Result<Self, AuthError> {
        Ok(Self {
            decoding: DecodingKey::from_rsa_pem(pem).map_err(|e| AuthError::Key(e.to_string()))?,
            encoding: None,
            validation: validation(Algorithm::RS256),
        })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            })?;
        let claims = data.claims;
        Ok(Principal {
            staff_id: StaffId::parse(&claims.sub)
                .map_err(|e| AuthError::BadClaims(format!("sub {e}")))?,
            role: Role::from_str(&claims.role).map_err(|e| AuthError::BadClaims(e.to_string()))?,
            branch_id: BranchId::parse(&claims.branch)
                .map_err(|e| AuthError::BadClaims(format!("branch {e}")))?,
        })
    }

    /// A token for `sub` valid for `ttl`, signed with the HS256 secret.
    pub fn mint(
        &self,
        sub: &StaffId,
        role: Role,
        branch: &BranchId,
        ttl: chrono::Duration,
    ) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::NoSigningKey)?;
        let claims = Claims {
            sub: sub.to_string(),
            role: role.to_string(),
            branch: branch.to_string(),
            exp: (chrono::Utc::now() + ttl).timestamp(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| AuthError::Key(e.to_string()))
    }
}

fn validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::hs256(&SecretString::from("a-test-secret-of-enough-length")).unwrap()
    }

    #[test]
    fn a_minted_token_verifies_to_its_principal() {
        let keys = keys();
        let sub = StaffId::parse("T-0001").unwrap();
        let branch = BranchId::parse("B-001").unwrap();
        let token = keys
            .mint(&sub, Role::Teller, &branch, chrono::Duration::minutes(5))
            .unwrap();
        let principal = keys.verify(&token).unwrap();
        assert_eq!(principal.staff_id, sub);
        assert_eq!(principal.role, Role::Teller);
        assert_eq!(principal.branch_id, branch);
    }

    #[test]
    fn an_expired_token_is_rejected_as_expired() {
        let keys = keys();
        let token = keys
            .mint(
                &StaffId::parse("T-0001").unwrap(),
                Role::Teller,
                &BranchId::parse("B-001").unwrap(),
                chrono::Duration::minutes(-10),
            )
            .unwrap();
        assert!(matches!(keys.verify(&token), Err(AuthError::Expired)));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_invalid() {
        let other = JwtKeys::hs256(&SecretString::from("another-secret-of-enough-length")).unwrap();
        let token = other
            .mint(
                &StaffId::parse("T-0001").unwrap(),
                Role::Rm,
                &BranchId::parse("B-001").unwrap(),
                chrono::Duration::minutes(5),
            )
            .unwrap();
        assert!(matches!(keys().verify(&token), Err(AuthError::Invalid)));
        assert!(matches!(
            keys().verify("not.a.token"),
            Err(AuthError::Invalid)
        ));
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(JwtKeys::hs256(&SecretString::from("short")).is_err());
    }
}
