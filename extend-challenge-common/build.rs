//! Compiles every .proto under `proto/` with protox (pure Rust, no system `protoc`).
//! Emits prost/tonic code, pbjson serde impls for the player API package, and one
//! encoded FileDescriptorSet that both binaries hand to gRPC reflection.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/accelbyte-asyncapi/iam/account/v1/account.proto",
    "proto/accelbyte-asyncapi/social/statistic/v1/statistic.proto",
    "proto/service.proto",
    "proto/accelbyte/event_handler.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // The embedded migrations (sqlx::migrate!) are read when the library compiles.
    println!("cargo:rerun-if-changed=migrations");
    let out = PathBuf::from(env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).open_files(PROTOS)?;
    // Encoded by protox itself, so extension options (the google.api.http annotations) are
    // kept; a round trip through prost_types::FileDescriptorSet would drop them.
    let descriptor_path = out.join("descriptor.bin");
    std::fs::write(&descriptor_path, compiler.encode_file_descriptor_set())?;
    let fds = compiler.file_descriptor_set();

    // The AsyncAPI services (the event handler's OnMessage) decode with a codec that
    // answers an undecodable message `InvalidArgument` instead of prost's `Internal`
    // (CONTRACT §2: a platform that retries `Internal` would redeliver it forever).
    let generators = ByPackage {
        asyncapi: tonic_prost_build::configure()
            .codec_path("crate::pb::codec::InvalidArgumentCodec")
            .service_generator(),
        other: tonic_prost_build::configure().service_generator(),
    };
    let mut config = tonic_prost_build::Config::new();
    config.service_generator(Box::new(generators));
    // Services come from `generators`; the builder only applies its message settings.
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_fds_with_config(fds, config)?;

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

/// Generates each service with the generator for its package.
struct ByPackage {
    asyncapi: Box<dyn prost_build::ServiceGenerator>,
    other: Box<dyn prost_build::ServiceGenerator>,
}

impl prost_build::ServiceGenerator for ByPackage {
    fn generate(&mut self, service: prost_build::Service, buf: &mut String) {
        // `accelbyte` itself is the guide's generic envelope (ours), decoded the same way.
        if service.package == "accelbyte" || service.package.starts_with("accelbyte.") {
            self.asyncapi.generate(service, buf)
        } else {
            self.other.generate(service, buf)
        }
    }

    fn finalize(&mut self, buf: &mut String) {
        self.asyncapi.finalize(buf);
        self.other.finalize(buf);
    }

    fn finalize_package(&mut self, package: &str, buf: &mut String) {
        self.asyncapi.finalize_package(package, buf);
        self.other.finalize_package(package, buf);
    }
}
