//! Generates the KMS v2 and tenant key gRPC types from proto/ with a pure-Rust protobuf compiler, so building
//! needs no protoc on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/kms-v2.proto");
    println!("cargo:rerun-if-changed=proto/tenant-keys.proto");
    let fds = protox::compile(["proto/kms-v2.proto", "proto/tenant-keys.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
