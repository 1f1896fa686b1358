//! Compiles every .proto under `proto/` with protox (pure Rust, no system `protoc`).
//! Emits prost/tonic code, pbjson serde impls for the player API package, and one
//! encoded FileDescriptorSet that both binaries hand to gRPC reflection.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/accelbyte-asyncapi/iam/account/v1/account.proto",
    "proto/accelbyte-asyncapi/social/statistic/v1/statistic.proto",
    "proto/service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).open_files(PROTOS)?;
    // Encoded by protox itself, so extension options (the google.api.http annotations) are
    // kept; a round trip through prost_types::FileDescriptorSet would drop them.
    let descriptor_path = out.join("descriptor.bin");
    std::fs::write(&descriptor_path, compiler.encode_file_descriptor_set())?;
    let fds = compiler.file_descriptor_set();

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;

    // proto3 JSON for the REST adapter: lowerCamelCase keys, zero values emitted,
    // unknown request fields ignored (CONTRACT §3.1).
    let descriptor_bytes = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .emit_fields()
        .ignore_unknown_fields()
        .build(&[".service"])?;
    Ok(())
}
