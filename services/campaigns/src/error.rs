//! The campaigns service's errors, converted once into the suite's [`RpcError`].

use crm_domain::Violations;
use crm_grpc::RpcError;

#[derive(Debug, thiserror::Error)]
pub enum CampaignsError {
    #[error("{0}")]
    InvalidArgument(Violations),
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
}

impl From<Violations> for CampaignsError {
    fn from(violations: Violations) -> Self {
        CampaignsError::InvalidArgument(violations)
    }
}

impl From<CampaignsError> for RpcError {
    fn from(error: CampaignsError) -> Self {
        match error {
            CampaignsError::InvalidArgument(violations) => RpcError::InvalidArgument(violations),
            CampaignsError::Rpc(error) => error,
            CampaignsError::Db(error) => error.into(),
            CampaignsError::Bus(error) => error.into(),
            CampaignsError::Corrupt(what) => RpcError::corrupt(what),
            CampaignsError::Encode(error) => error.into(),
        }
    }
}

impl From<CampaignsError> for tonic::Status {
    fn from(error: CampaignsError) -> Self {
        RpcError::from(error).into()
    }
}

pub type Result<T, E = CampaignsError> = std::result::Result<T, E>;

/// An error of this service's work inside a consumed message's transaction: a
/// database failure keeps its kind (transient ones are retried in place); stored
/// data that can't be read is poison.
impl From<CampaignsError> for crm_bus::HandlerError {
    fn from(error: CampaignsError) -> Self {
        match error {
            CampaignsError::Db(error) => error.into(),
            CampaignsError::Bus(error) => error.into(),
            other => crm_bus::HandlerError::Poison(other.to_string()),
        }
    }
}
