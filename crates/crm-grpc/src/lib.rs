//! The gRPC edge every service shares, so the same fault gets the same answer
//! from every service:
//!
//! - [`RpcError`] and its one mapping to `tonic::Status`. Each service's error enum
//!   converts into it; handlers never build a `Status` themselves.
//! - [`wire`]: timestamps, dates and pages between protobuf and Rust.
//! - [`WireEnum`]: each domain enum and its protobuf twin, both ways.

mod enums;
mod error;
pub mod wire;

pub use enums::{WireEnum, enum_filter};
pub use error::RpcError;
