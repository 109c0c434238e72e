//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and prost.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/fleetbus/v1/cluster.proto",
        "proto/fleetbus/v1/msa.proto",
        "proto/fleetbus/v1/work.proto",
        "proto/fleetbus/v1/audit.proto",
        "proto/fleetbus/v1/api.proto",
        "proto/fleetbus/v1/placement.proto",
        "proto/fleetbus/v1/tunnel.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new()
        .enable_type_names()
        // Header values are slices of the frame they arrived in, not copies.
        .bytes([".fleetbus.v1.HttpHeader.value"])
        .compile_fds(descriptors)?;
    Ok(())
}
