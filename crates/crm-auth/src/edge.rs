//! What every RPC handler does at the edge: find the caller, name the request, and
//! answer bad input with one field violation per bad field.

use crm_domain::Violations;
use tonic_types::{ErrorDetails, StatusExt};

use crate::Principal;

/// The caller put on the request by the interceptor.
pub fn principal_of<T>(request: &tonic::Request<T>) -> Result<Principal, tonic::Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| tonic::Status::unauthenticated("no authenticated caller"))
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

/// `INVALID_ARGUMENT` with `google.rpc.BadRequest`: one violation per bad field.
pub fn invalid_argument(violations: &Violations) -> tonic::Status {
    let mut details = ErrorDetails::new();
    for violation in violations.iter() {
        details.add_bad_request_violation(violation.field.clone(), violation.description.clone());
    }
    tonic::Status::with_error_details(
        tonic::Code::InvalidArgument,
        violations.to_string(),
        details,
    )
}
