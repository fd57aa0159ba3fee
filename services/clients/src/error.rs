//! The clients service's errors. Each converts into the suite's [`RpcError`],
//! whose one mapping gives the gRPC status (crm-grpc).

use crm_domain::Violations;
use crm_grpc::RpcError;

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
    /// Answered at the edge (authentication, role checks).
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
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

impl From<ClientsError> for RpcError {
    fn from(error: ClientsError) -> Self {
        match error {
            ClientsError::InvalidArgument(violations) => RpcError::InvalidArgument(violations),
            ClientsError::NotFound(what) => RpcError::NotFound(what),
            ClientsError::PermissionDenied(why) => RpcError::PermissionDenied(why),
            ClientsError::FailedPrecondition(why) => RpcError::FailedPrecondition(why),
            ClientsError::Rpc(error) => error,
            ClientsError::Db(error) => error.into(),
            ClientsError::Bus(error) => error.into(),
            ClientsError::Encode(error) => error.into(),
            ClientsError::Vault(error) => error.into(),
        }
    }
}

impl From<ClientsError> for tonic::Status {
    fn from(error: ClientsError) -> Self {
        RpcError::from(error).into()
    }
}

pub type Result<T, E = ClientsError> = std::result::Result<T, E>;
