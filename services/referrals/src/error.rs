//! The referrals service's errors and their one mapping to gRPC status codes.

use crm_domain::Violations;

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
    /// A concurrent change won; reading again and retrying is safe.
    #[error("{0}")]
    Aborted(String),
    /// Answered at the edge already (authentication, role checks).
    #[error("{0}")]
    Rejected(#[from] tonic::Status),
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
    #[error("bus error")]
    Bus(#[from] crm_bus::BusError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("personal data: {0}")]
    Vault(#[from] crm_store::VaultError),
}

impl From<Violations> for ReferralsError {
    fn from(violations: Violations) -> Self {
        ReferralsError::InvalidArgument(violations)
    }
}

impl From<ReferralsError> for tonic::Status {
    fn from(error: ReferralsError) -> Self {
        match error {
            ReferralsError::InvalidArgument(violations) => crm_auth::invalid_argument(&violations),
            ReferralsError::Rejected(status) => status,
            ReferralsError::NotFound(what) => tonic::Status::not_found(format!("{what} not found")),
            ReferralsError::PermissionDenied(why) => tonic::Status::permission_denied(why),
            ReferralsError::FailedPrecondition(why) => tonic::Status::failed_precondition(why),
            ReferralsError::Aborted(why) => tonic::Status::aborted(why),
            ReferralsError::Db(error) if crm_store::db::is_unavailable(&error) => {
                tracing::warn!(%error, "database unavailable");
                tonic::Status::unavailable("database unavailable; retry")
            }
            ReferralsError::Bus(
                crm_bus::BusError::Connect(reason) | crm_bus::BusError::Broker(reason),
            ) => {
                tracing::warn!(%reason, "broker unavailable");
                tonic::Status::unavailable("message broker unavailable; retry")
            }
            ReferralsError::Db(error) => {
                tracing::error!(error = ?error, "database error");
                tonic::Status::internal("internal error")
            }
            ReferralsError::Bus(error) => {
                tracing::error!(error = ?error, "bus error");
                tonic::Status::internal("internal error")
            }
            ReferralsError::Vault(error) => {
                tracing::error!(%error, "personal data could not be sealed or opened");
                tonic::Status::internal("internal error")
            }
            ReferralsError::Corrupt(what) => {
                tracing::error!(%what, "corrupt stored data");
                tonic::Status::internal("internal error")
            }
        }
    }
}

pub type Result<T, E = ReferralsError> = std::result::Result<T, E>;
