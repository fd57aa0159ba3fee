//! What every RPC handler does at the edge: find the caller and name the request.

use crm_grpc::RpcError;

use crate::Principal;

/// The caller put on the request by the interceptor.
pub fn principal_of<T>(request: &tonic::Request<T>) -> Result<Principal, RpcError> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| RpcError::Unauthenticated("no authenticated caller".to_owned()))
}

/// The caller's `x-request-id`, or a fresh one, for the audit log and the logs.
pub fn request_id_of<T>(request: &tonic::Request<T>) -> String {
    request
        .metadata()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty() && value.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}
