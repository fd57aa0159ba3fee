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

/// The crm.v1 descriptors, read once (the JSON mapping and the RPC names need them).
static POOL: std::sync::LazyLock<Result<prost_reflect::DescriptorPool, String>> =
    std::sync::LazyLock::new(|| {
        prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .map_err(|error| error.to_string())
    });

/// Whether `service`/`method` is an RPC of crm.v1 (`crm.v1.ReferralService`,
/// `CreateReferral`): metrics label only real methods, so a caller inventing
/// paths can't invent new series.
pub fn is_crm_method(service: &str, method: &str) -> bool {
    POOL.as_ref().is_ok_and(|pool| {
        pool.get_service_by_name(service)
            .is_some_and(|found| found.methods().any(|known| known.name() == method))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_real_methods_are_crm_methods() {
        assert!(super::is_crm_method(
            "crm.v1.ReferralService",
            "CreateReferral"
        ));
        assert!(!super::is_crm_method("crm.v1.ReferralService", "Nope"));
        assert!(!super::is_crm_method("crm.v1.Nope", "CreateReferral"));
    }
}
