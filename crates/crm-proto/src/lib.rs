//! The crm.v1 API as generated Rust: messages, clients and servers.

pub mod codec;
pub mod json;

pub use prost_types;
pub use tonic;

#[allow(clippy::all, clippy::pedantic, missing_docs)] // generated code
pub mod crm {
    pub mod v1 {
        tonic::include_proto!("crm.v1");
    }
}

pub use crm::v1;

/// The encoded descriptor set of every crm.v1 file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/crm_descriptor.bin"));
