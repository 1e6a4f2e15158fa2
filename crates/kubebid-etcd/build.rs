//! Generates the etcd v3 value-carrying message types from proto/ with a pure-Rust protobuf compiler, so
//! building needs no protoc on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/etcd-kv.proto");
    let fds = protox::compile(["proto/etcd-kv.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
