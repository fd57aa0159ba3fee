//! One answer for each kind of failure, decided by the error's kind, never by its
//! text; internal causes are logged with their chain and answered opaquely.

use crm_bus::BusError;
use crm_domain::Violations;
use crm_domain::referral::IllegalTransition;
use tonic_types::{ErrorDetails, StatusExt};

/// What an RPC can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// One violation per bad field; nothing was written.
    #[error("{0}")]
    InvalidArgument(Violations),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// What was not found ("referral 0193…"); answered as "… not found".
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The thing is not in a state that allows this (an illegal transition).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A concurrent change won; reading again and retrying is safe.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unimplemented(&'static str),
    /// A dependency (the database, the broker) cannot be reached now; the same
    /// request again later is safe (idempotency keys make it so).
    #[error("{dependency} unavailable: {cause}")]
    Unavailable {
        dependency: &'static str,
        cause: String,
    },
    /// Our fault: logged with its cause, answered as an opaque INTERNAL.
    #[error("{what}: {cause}")]
    Internal { what: &'static str, cause: String },
}

impl RpcError {
    pub fn internal(what: &'static str, cause: impl std::fmt::Display) -> Self {
        RpcError::Internal {
            what,
            cause: cause.to_string(),
        }
    }

    /// A stored row that no longer parses: fails once and loudly.
    pub fn corrupt(cause: impl std::fmt::Display) -> Self {
        RpcError::internal("corrupt stored data", cause)
    }
}

impl From<RpcError> for tonic::Status {
    fn from(error: RpcError) -> Self {
        use tonic::Status;
        match error {
            RpcError::InvalidArgument(violations) => invalid_argument(&violations),
            RpcError::Unauthenticated(why) => Status::unauthenticated(why),
            RpcError::PermissionDenied(why) => Status::permission_denied(why),
            RpcError::NotFound(what) => Status::not_found(format!("{what} not found")),
            RpcError::AlreadyExists(why) => Status::already_exists(why),
            RpcError::FailedPrecondition(why) => Status::failed_precondition(why),
            RpcError::Aborted(why) => Status::aborted(why),
            RpcError::ResourceExhausted(why) => Status::resource_exhausted(why),
            RpcError::Unimplemented(why) => Status::unimplemented(why),
            RpcError::Unavailable { dependency, cause } => {
                tracing::warn!(dependency, %cause, "dependency unavailable");
                Status::unavailable(format!("{dependency} unavailable; retry"))
            }
            RpcError::Internal { what, cause } => {
                tracing::error!(what, %cause, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// `INVALID_ARGUMENT` with `google.rpc.BadRequest`: one violation per bad field.
fn invalid_argument(violations: &Violations) -> tonic::Status {
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

impl From<Violations> for RpcError {
    fn from(violations: Violations) -> Self {
        RpcError::InvalidArgument(violations)
    }
}

impl From<sea_orm::DbErr> for RpcError {
    fn from(error: sea_orm::DbErr) -> Self {
        if crm_store::db::is_unavailable(&error) {
            RpcError::Unavailable {
                dependency: "database",
                cause: error.to_string(),
            }
        } else {
            // `{:?}` keeps the chain (the driver's error inside sea-orm's).
            RpcError::internal("database error", format!("{error:?}"))
        }
    }
}

impl From<BusError> for RpcError {
    fn from(error: BusError) -> Self {
        match error {
            // The broker cannot take or confirm the message now, or this process
            // is shutting down: the retry (here or at another replica) will do.
            BusError::Connect(_)
            | BusError::Broker(_)
            | BusError::Timeout
            | BusError::Nacked
            | BusError::Closed => RpcError::Unavailable {
                dependency: "message broker",
                cause: error.to_string(),
            },
            BusError::Db(error) => RpcError::from(error),
            BusError::Unroutable(_) | BusError::Payload(_) => {
                RpcError::internal("message error", error)
            }
        }
    }
}

impl From<crm_store::VaultError> for RpcError {
    fn from(error: crm_store::VaultError) -> Self {
        RpcError::internal("personal data could not be sealed or opened", error)
    }
}

impl From<serde_json::Error> for RpcError {
    fn from(error: serde_json::Error) -> Self {
        RpcError::internal("record could not be encoded or decoded", error)
    }
}

impl From<IllegalTransition> for RpcError {
    fn from(error: IllegalTransition) -> Self {
        RpcError::FailedPrecondition(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn code(error: impl Into<RpcError>) -> Code {
        tonic::Status::from(error.into()).code()
    }

    #[test]
    fn a_dependency_that_is_down_is_unavailable_whichever_service_asks() {
        assert_eq!(
            code(sea_orm::DbErr::ConnectionAcquire(
                sea_orm::ConnAcquireErr::Timeout
            )),
            Code::Unavailable
        );
        assert_eq!(code(BusError::Connect("refused".into())), Code::Unavailable);
        assert_eq!(
            code(BusError::Broker("channel closed".into())),
            Code::Unavailable
        );
        assert_eq!(code(BusError::Timeout), Code::Unavailable);
        assert_eq!(
            code(BusError::Db(sea_orm::DbErr::ConnectionAcquire(
                sea_orm::ConnAcquireErr::Timeout
            ))),
            Code::Unavailable
        );
    }

    #[test]
    fn our_own_faults_are_an_opaque_internal() {
        let status = tonic::Status::from(RpcError::from(sea_orm::DbErr::Custom(
            "secret detail".into(),
        )));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        assert_eq!(code(BusError::Unroutable("x".into())), Code::Internal);
        assert_eq!(code(RpcError::corrupt("status 'bogus'")), Code::Internal);
    }

    #[test]
    fn domain_refusals_are_failed_preconditions_naming_the_state() {
        let illegal = IllegalTransition {
            current: crm_domain::referral::ReferralStatus::Declined,
            action: "accept",
        };
        let status = tonic::Status::from(RpcError::from(illegal));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status.message().contains("declined"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn bad_input_carries_one_violation_per_field() {
        let mut violations = Violations::default();
        violations.add("client_id", "must not be empty");
        violations.add("need", "must be set");
        let status = tonic::Status::from(RpcError::from(violations));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("BadRequest details");
        assert_eq!(bad_request.field_violations.len(), 2);
    }
}
