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

impl From<lapin::Error> for BusError {
    fn from(error: lapin::Error) -> Self {
        BusError::Broker(error.to_string())
    }
}
