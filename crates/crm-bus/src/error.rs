#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("broker connection failed: {0}")]
    Connect(String),
    #[error("broker operation failed: {0}")]
    Broker(String),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for routing key {0}")]
    Unroutable(String),
    #[error("timed out waiting for the broker")]
    Timeout,
    #[error("message payload does not decode: {0}")]
    Payload(#[from] serde_json::Error),
    #[error("the transport is shut down")]
    Closed,
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
}

impl BusError {
    /// A low-cardinality name of the failure, for metrics' `error.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            BusError::Connect(_) => "connect",
            BusError::Broker(_) => "broker",
            BusError::Nacked => "nacked",
            BusError::Unroutable(_) => "unroutable",
            BusError::Timeout => "timeout",
            BusError::Payload(_) => "payload",
            BusError::Closed => "closed",
            BusError::Db(_) => "database",
        }
    }
}

impl From<lapin::Error> for BusError {
    fn from(error: lapin::Error) -> Self {
        BusError::Broker(error.to_string())
    }
}
