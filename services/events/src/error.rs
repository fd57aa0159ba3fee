//! The events service's errors, converted once into the suite's [`RpcError`].

use crm_domain::Violations;
use crm_grpc::RpcError;

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
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

impl From<Violations> for EventsError {
    fn from(violations: Violations) -> Self {
        EventsError::InvalidArgument(violations)
    }
}

impl From<EventsError> for RpcError {
    fn from(error: EventsError) -> Self {
        match error {
            EventsError::InvalidArgument(violations) => RpcError::InvalidArgument(violations),
            EventsError::Rpc(error) => error,
            EventsError::Db(error) => error.into(),
            EventsError::Bus(error) => error.into(),
            EventsError::Corrupt(what) => RpcError::corrupt(what),
            EventsError::Encode(error) => error.into(),
        }
    }
}

impl From<EventsError> for tonic::Status {
    fn from(error: EventsError) -> Self {
        RpcError::from(error).into()
    }
}

pub type Result<T, E = EventsError> = std::result::Result<T, E>;

/// An error of this service's work inside a consumed message's transaction: a
/// database failure keeps its kind (transient ones are retried in place); stored
/// data that can't be read is poison.
impl From<EventsError> for crm_bus::HandlerError {
    fn from(error: EventsError) -> Self {
        match error {
            EventsError::Db(error) => error.into(),
            EventsError::Bus(error) => error.into(),
            other => crm_bus::HandlerError::Poison(other.to_string()),
        }
    }
}
