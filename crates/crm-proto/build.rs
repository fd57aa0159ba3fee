//! Compiles proto/crm/v1 with protox (pure Rust: no protoc on a fresh machine) and
//! writes the descriptor set for gRPC reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let files = [
        "crm/v1/common.proto",
        "crm/v1/directory.proto",
        "crm/v1/clients.proto",
        "crm/v1/referrals.proto",
        "crm/v1/events.proto",
        "crm/v1/campaigns.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    let descriptor_set = protox::compile(files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("crm_descriptor.bin"),
        descriptor_set.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Undecodable bytes are INVALID_ARGUMENT, not INTERNAL (src/codec.rs).
        .codec_path("crate::codec::StrictCodec")
        .compile_fds(descriptor_set)?;
    Ok(())
}
