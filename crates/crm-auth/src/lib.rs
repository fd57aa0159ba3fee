//! Who is calling and what they may do: HS256 (or RS256) JWTs carrying the claims of
//! API.md, the [`Principal`] every service scopes its reads and writes by, and the
//! tonic interceptor that puts it on each request.

mod edge;
mod jwt;
pub mod page_token;
mod principal;

pub use edge::{principal_of, request_id_of};
pub use jwt::{AuthError, Claims, JwtKeys, JwtPolicy, MIN_HS256_SECRET_BYTES};
pub use principal::Principal;

use crm_grpc::RpcError;

/// When the caller's token stops being valid: a long-lived stream ends then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenExpiry(pub chrono::DateTime<chrono::Utc>);

/// The interceptor for every service: no valid token, no call.
#[derive(Clone)]
pub struct AuthInterceptor {
    keys: std::sync::Arc<JwtKeys>,
}

impl AuthInterceptor {
    pub fn new(keys: std::sync::Arc<JwtKeys>) -> Self {
        Self { keys }
    }

    /// The keys it verifies with (and, with an HS256 secret, can sign with: a
    /// service asking another for data in its own name).
    pub fn keys(&self) -> &std::sync::Arc<JwtKeys> {
        &self.keys
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| RpcError::Unauthenticated("missing bearer token".to_owned()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| {
                RpcError::Unauthenticated("authorization must be 'Bearer <token>'".to_owned())
            })?;
        let (principal, expires_at) = self.keys.verify_token(token).map_err(|error| {
            tracing::info!(%error, "rejected token");
            RpcError::Unauthenticated(error.to_string())
        })?;
        request.extensions_mut().insert(principal);
        request.extensions_mut().insert(TokenExpiry(expires_at));
        Ok(request)
    }
}
