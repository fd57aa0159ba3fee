//! Tokens: HS256 with a shared secret for development and tests; RS256 or ES256
//! public keys (a PEM, or the identity provider's JWKS) for a bank's identity
//! provider. Every token is checked for its signature, `exp` and `nbf`, a lifetime
//! no longer than the policy allows, and — when configured — its issuer and
//! audience, so a token minted for another application is refused.

use std::str::FromStr;

use crm_domain::{BranchId, Role, StaffId};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
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

/// RFC 7518 §3.2: an HS256 key at least as long as the hash, 32 bytes.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// What a token must satisfy beyond its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtPolicy {
    /// `iss` must be this, when set.
    pub issuer: Option<String>,
    /// `aud` must contain this, when set; unset, `aud` is not looked at.
    pub audience: Option<String>,
    /// The longest a token may still be valid for when it is presented: a token
    /// good for a year is a stolen credential waiting to happen.
    pub max_lifetime: chrono::Duration,
}

impl Default for JwtPolicy {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            max_lifetime: chrono::Duration::hours(12),
        }
    }
}

/// One key tokens may be signed with.
struct Verifier {
    /// The JWKS `kid`; a token naming a `kid` is checked only against that key.
    key_id: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The keys tokens are checked (and, for development, minted) with.
pub struct JwtKeys {
    verifiers: Vec<Verifier>,
    encoding: Option<EncodingKey>,
    policy: JwtPolicy,
}

impl JwtKeys {
    /// HS256 with a shared secret (development, tests, a single bank deployment).
    pub fn hs256(secret: &SecretString) -> Result<Self, AuthError> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_HS256_SECRET_BYTES {
            return Err(AuthError::Key(format!(
                "CRM_JWT_SECRET must be at least {MIN_HS256_SECRET_BYTES} bytes"
            )));
        }
        Ok(Self {
            verifiers: vec![Verifier {
                key_id: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(bytes),
            }],
            encoding: Some(EncodingKey::from_secret(bytes)),
            policy: JwtPolicy::default(),
        })
    }

    /// The identity provider's public keys, verify only: a JWKS document (JSON,
    /// RSA and P-256 keys), or one PEM public key (RSA → RS256, EC → ES256).
    pub fn public_keys(document: &[u8]) -> Result<Self, AuthError> {
        let verifiers = if document.trim_ascii_start().starts_with(b"{") {
            jwks_verifiers(document)?
        } else {
            vec![pem_verifier(document)?]
        };
        Ok(Self {
            verifiers,
            encoding: None,
            policy: JwtPolicy::default(),
        })
    }

    /// RS256 with the identity provider's public key (PEM): verify only.
    pub fn rs256_public(pem: &[u8]) -> Result<Self, AuthError> {
        Self::public_keys(pem)
    }

    pub fn with_policy(mut self, policy: JwtPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_token(token).map(|(principal, _)| principal)
    }

    /// The caller and when their token stops being valid (a stream must end then).
    pub fn verify_token(
        &self,
        token: &str,
    ) -> Result<(Principal, chrono::DateTime<chrono::Utc>), AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let mut outcome = Err(AuthError::Invalid);
        let candidates = self.verifiers.iter().filter(|verifier| {
            verifier.algorithm == header.alg
                && match (&header.kid, &verifier.key_id) {
                    (Some(wanted), Some(key_id)) => wanted == key_id,
                    _ => true,
                }
        });
        for verifier in candidates {
            let validation = validation(verifier.algorithm, &self.policy);
            match jsonwebtoken::decode::<Claims>(token, &verifier.key, &validation) {
                Ok(data) => {
                    outcome = Ok(data.claims);
                    break;
                }
                Err(error) => {
                    if matches!(
                        error.kind(),
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature
                    ) {
                        outcome = Err(AuthError::Expired);
                    }
                }
            }
        }
        let claims = outcome?;
        let now = chrono::Utc::now().timestamp();
        if claims.exp - now > self.policy.max_lifetime.num_seconds() {
            return Err(AuthError::BadClaims(format!(
                "a token may be valid for at most {} minutes",
                self.policy.max_lifetime.num_minutes()
            )));
        }
        let expires_at = chrono::DateTime::from_timestamp(claims.exp, 0)
            .ok_or_else(|| AuthError::BadClaims("exp out of range".to_owned()))?;
        let principal = Principal {
            staff_id: StaffId::parse(&claims.sub)
                .map_err(|e| AuthError::BadClaims(format!("sub {e}")))?,
            role: Role::from_str(&claims.role).map_err(|e| AuthError::BadClaims(e.to_string()))?,
            branch_id: BranchId::parse(&claims.branch)
                .map_err(|e| AuthError::BadClaims(format!("branch {e}")))?,
        };
        Ok((principal, expires_at))
    }

    /// A token for `sub` valid for `ttl`, signed with the HS256 secret (and
    /// carrying the configured issuer and audience, so the policy accepts it).
    pub fn mint(
        &self,
        sub: &StaffId,
        role: Role,
        branch: &BranchId,
        ttl: chrono::Duration,
    ) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::NoSigningKey)?;
        let now = chrono::Utc::now();
        let mut claims = serde_json::json!({
            "sub": sub.to_string(),
            "role": role.to_string(),
            "branch": branch.to_string(),
            "iat": now.timestamp(),
            "exp": (now + ttl).timestamp(),
        });
        if let Some(issuer) = &self.policy.issuer {
            claims["iss"] = issuer.clone().into();
        }
        if let Some(audience) = &self.policy.audience {
            claims["aud"] = audience.clone().into();
        }
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| AuthError::Key(e.to_string()))
    }
}

fn pem_verifier(pem: &[u8]) -> Result<Verifier, AuthError> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(Verifier {
            key_id: None,
            algorithm: Algorithm::RS256,
            key,
        });
    }
    DecodingKey::from_ec_pem(pem)
        .map(|key| Verifier {
            key_id: None,
            algorithm: Algorithm::ES256,
            key,
        })
        .map_err(|e| AuthError::Key(format!("not an RSA or EC public key in PEM: {e}")))
}

fn jwks_verifiers(document: &[u8]) -> Result<Vec<Verifier>, AuthError> {
    let set: JwkSet = serde_json::from_slice(document)
        .map_err(|e| AuthError::Key(format!("not a JWKS document: {e}")))?;
    let mut verifiers = Vec::new();
    for jwk in &set.keys {
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
            // Symmetric and other keys have no place in a public key set.
            _ => continue,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| AuthError::Key(e.to_string()))?;
        verifiers.push(Verifier {
            key_id: jwk.common.key_id.clone(),
            algorithm,
            key,
        });
    }
    if verifiers.is_empty() {
        return Err(AuthError::Key(
            "the JWKS holds no RSA or P-256 public key".to_owned(),
        ));
    }
    Ok(verifiers)
}

fn validation(algorithm: Algorithm, policy: &JwtPolicy) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = 5;
    validation.validate_nbf = true;
    let mut required = vec!["exp", "sub"];
    if let Some(issuer) = &policy.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &policy.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        // No audience configured: a provider's `aud` is not ours to judge.
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-thirty-two-bytes!";

    fn keys() -> JwtKeys {
        JwtKeys::hs256(&SecretString::from(SECRET)).unwrap()
    }

    fn sign(claims: serde_json::Value, header: Header, key: &EncodingKey) -> String {
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    fn claims(extra: serde_json::Value) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        let mut claims = serde_json::json!({
            "sub": "T-0001", "role": "teller", "branch": "B-001",
            "iat": now, "exp": now + 600,
        });
        for (key, value) in extra.as_object().unwrap() {
            claims[key] = value.clone();
        }
        claims
    }

    fn hs256_token(extra: serde_json::Value) -> String {
        sign(
            claims(extra),
            Header::new(Algorithm::HS256),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
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
        let other =
            JwtKeys::hs256(&SecretString::from("another-secret-of-thirty-two-bytes")).unwrap();
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
    fn a_secret_shorter_than_32_bytes_is_refused() {
        assert!(JwtKeys::hs256(&SecretString::from("short")).is_err());
        assert!(JwtKeys::hs256(&SecretString::from("x".repeat(31))).is_err());
        assert!(JwtKeys::hs256(&SecretString::from("x".repeat(32))).is_ok());
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let keys = keys().with_policy(JwtPolicy {
            issuer: Some("https://idp.bank.example".into()),
            audience: Some("rm-crm".into()),
            ..JwtPolicy::default()
        });
        let ours = serde_json::json!({"iss": "https://idp.bank.example", "aud": "rm-crm"});
        assert!(keys.verify(&hs256_token(ours)).is_ok());
        for foreign in [
            serde_json::json!({"iss": "https://idp.bank.example", "aud": "payroll-app"}),
            serde_json::json!({"iss": "https://evil.example", "aud": "rm-crm"}),
            serde_json::json!({"aud": "rm-crm"}),
            serde_json::json!({"iss": "https://idp.bank.example"}),
        ] {
            assert!(
                keys.verify(&hs256_token(foreign.clone())).is_err(),
                "{foreign}"
            );
        }
        // And a minted token carries them.
        let minted = keys
            .mint(
                &StaffId::parse("T-0001").unwrap(),
                Role::Teller,
                &BranchId::parse("B-001").unwrap(),
                chrono::Duration::minutes(5),
            )
            .unwrap();
        assert!(keys.verify(&minted).is_ok());
    }

    #[test]
    fn without_a_configured_audience_a_providers_aud_is_accepted() {
        let token = hs256_token(serde_json::json!({"aud": "some-provider-client"}));
        assert!(keys().verify(&token).is_ok());
    }

    #[test]
    fn a_token_not_yet_valid_or_valid_too_long_is_refused() {
        let now = chrono::Utc::now().timestamp();
        let early = hs256_token(serde_json::json!({"nbf": now + 3600}));
        assert!(keys().verify(&early).is_err());
        let forever = hs256_token(serde_json::json!({"exp": now + 400 * 24 * 3600}));
        assert!(matches!(
            keys().verify(&forever),
            Err(AuthError::BadClaims(_))
        ));
        let short_policy = keys().with_policy(JwtPolicy {
            max_lifetime: chrono::Duration::minutes(5),
            ..JwtPolicy::default()
        });
        assert!(
            short_policy
                .verify(&hs256_token(serde_json::json!({})))
                .is_err()
        );
    }

    const RSA_KEY: &[u8] = include_bytes!("../testdata/rs256-test-only.key.pem");
    const RSA_PUB: &[u8] = include_bytes!("../testdata/rs256-test-only.pub.pem");
    const EC_KEY: &[u8] = include_bytes!("../testdata/es256-test-only.key.pem");
    const EC_PUB: &[u8] = include_bytes!("../testdata/es256-test-only.pub.pem");

    #[test]
    fn rs256_and_es256_public_keys_in_pem_verify_their_tokens() {
        let rs = sign(
            claims(serde_json::json!({})),
            Header::new(Algorithm::RS256),
            &EncodingKey::from_rsa_pem(RSA_KEY).unwrap(),
        );
        let es = sign(
            claims(serde_json::json!({})),
            Header::new(Algorithm::ES256),
            &EncodingKey::from_ec_pem(EC_KEY).unwrap(),
        );
        let rsa = JwtKeys::public_keys(RSA_PUB).unwrap();
        let ec = JwtKeys::public_keys(EC_PUB).unwrap();
        assert!(rsa.verify(&rs).is_ok());
        assert!(ec.verify(&es).is_ok());
        assert!(
            rsa.verify(&es).is_err(),
            "an ES256 token against the RSA key"
        );
        assert!(ec.verify(&rs).is_err());
        // Nor can anyone sign with the public key as an HS256 secret.
        let confused = sign(
            claims(serde_json::json!({})),
            Header::new(Algorithm::HS256),
            &EncodingKey::from_secret(RSA_PUB),
        );
        assert!(rsa.verify(&confused).is_err());
    }

    #[test]
    fn a_jwks_picks_the_key_its_kid_names() {
        let rsa_jwk = {
            let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(
                &EncodingKey::from_rsa_pem(RSA_KEY).unwrap(),
                Algorithm::RS256,
            )
            .unwrap();
            jwk.common.key_id = Some("rsa-2026".into());
            jwk
        };
        let ec_jwk = {
            let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(
                &EncodingKey::from_ec_pem(EC_KEY).unwrap(),
                Algorithm::ES256,
            )
            .unwrap();
            jwk.common.key_id = Some("ec-2026".into());
            jwk
        };
        let document = serde_json::to_vec(&JwkSet {
            keys: vec![rsa_jwk, ec_jwk],
        })
        .unwrap();
        let keys = JwtKeys::public_keys(&document).unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec-2026".into());
        let token = sign(
            claims(serde_json::json!({})),
            header,
            &EncodingKey::from_ec_pem(EC_KEY).unwrap(),
        );
        assert!(keys.verify(&token).is_ok());
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-2026".into());
        let token = sign(
            claims(serde_json::json!({})),
            header,
            &EncodingKey::from_rsa_pem(RSA_KEY).unwrap(),
        );
        assert!(keys.verify(&token).is_ok());
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("retired-key".into());
        let token = sign(
            claims(serde_json::json!({})),
            header,
            &EncodingKey::from_rsa_pem(RSA_KEY).unwrap(),
        );
        assert!(keys.verify(&token).is_err(), "a kid the set doesn't hold");
    }
}
