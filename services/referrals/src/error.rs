//! The referrals service's errors. Each converts into the suite's [`RpcError`],
//! whose one mapping gives the gRPC status (crm-grpc).

use crm_domain::Violations;
use crm_domain::referral::IllegalTransition;
use crm_grpc::RpcError;

#[derive(Debug, thiserror::Error)]
pub enum ReferralsError {
    #[error("{0}")]
    InvalidArgument(Violations),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The state machine refused the change.
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    /// A concurrent change won; reading again and retrying is safe.
    #[error("{0}")]
    Aborted(String),
    /// Answered at the edge (authentication, role checks).
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Bus(#[from] crm_bus::BusError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("record could not be encoded or decoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("personal data: {0}")]
    Vault(#[from] crm_store::VaultError),
}

impl From<Violations> for ReferralsError {
    fn from(violations: Violations) -> Self {
        ReferralsError::InvalidArgument(violations)
    }
}

impl From<ReferralsError> for RpcError {
    fn from(error: ReferralsError) -> Self {
        match error {
            ReferralsError::InvalidArgument(violations) => RpcError::InvalidArgument(violations),
            ReferralsError::NotFound(what) => RpcError::NotFound(what),
            ReferralsError::PermissionDenied(why) => RpcError::PermissionDenied(why),
            ReferralsError::FailedPrecondition(why) => RpcError::FailedPrecondition(why),
            ReferralsError::IllegalTransition(error) => error.into(),
            ReferralsError::Aborted(why) => RpcError::Aborted(why),
            ReferralsError::Rpc(error) => error,
            ReferralsError::Db(error) => error.into(),
            ReferralsError::Bus(error) => error.into(),
            ReferralsError::Corrupt(what) => RpcError::corrupt(what),
            ReferralsError::Encode(error) => error.into(),
            ReferralsError::Vault(error) => error.into(),
        }
    }
}

impl From<ReferralsError> for tonic::Status {
    fn from(error: ReferralsError) -> Self {
        RpcError::from(error).into()
    }
}

/// For the consumer: a store or broker failure is judged as such (retried if
/// transient); anything else fails the message.
impl From<ReferralsError> for crm_bus::HandlerError {
    fn from(error: ReferralsError) -> Self {
        match error {
            ReferralsError::Db(error) => error.into(),
            ReferralsError::Bus(error) => error.into(),
            other => crm_bus::HandlerError::Failed(other.to_string()),
        }
    }
}

pub type Result<T, E = ReferralsError> = std::result::Result<T, E>;
