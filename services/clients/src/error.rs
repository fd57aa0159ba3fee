//! The clients service's errors and their one mapping to gRPC status codes.

use crm_domain::Violations;

#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    #[error("{0}")]
    InvalidArgument(Violations),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// Answered at the edge already (authentication, role checks).
    #[error("{0}")]
    Rejected(#[from] tonic::Status),
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
    #[error("message could not be encoded")]
    Bus(#[from] crm_bus::BusError),
    #[error("record could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("personal data: {0}")]
    Vault(#[from] crm_store::VaultError),
}

impl From<Violations> for ClientsError {
    fn from(violations: Violations) -> Self {
        ClientsError::InvalidArgument(violations)
    }
}

impl From<ClientsError> for tonic::Status {
    fn from(error: ClientsError) -> Self {
        match error {
            ClientsError::InvalidArgument(violations) => crm_auth::invalid_argument(&violations),
            ClientsError::Rejected(status) => status,
            ClientsError::NotFound(what) => tonic::Status::not_found(format!("{what} not found")),
            ClientsError::PermissionDenied(why) => tonic::Status::permission_denied(why),
            ClientsError::FailedPrecondition(why) => tonic::Status::failed_precondition(why),
            ClientsError::Db(error) if crm_store::db::is_unavailable(&error) => {
                tracing::warn!(%error, "database unavailable");
                tonic::Status::unavailable("database unavailable; retry")
            }
            ClientsError::Db(error) => {
                tracing::error!(error = ?error, "database error");
                tonic::Status::internal("internal error")
            }
            ClientsError::Bus(error) => {
                tracing::error!(error = ?error, "message error");
                tonic::Status::internal("internal error")
            }
            ClientsError::Encode(error) => {
                tracing::error!(%error, "record could not be encoded");
                tonic::Status::internal("internal error")
            }
            ClientsError::Vault(error) => {
                tracing::error!(%error, "personal data could not be sealed or opened");
                tonic::Status::internal("internal error")
            }
        }
    }
}

pub type Result<T, E = ClientsError> = std::result::Result<T, E>;
