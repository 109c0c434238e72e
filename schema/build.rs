//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and prost.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/fleetbus/v1/cluster.proto",
        "proto/fleetbus/v1/msa.proto",
        "proto/fleetbus/v1/work.proto",
        "proto/fleetbus/v1/audit.proto",
        "proto/fleetbus/v1/api.proto",
        "proto/fleetbus/v1/placement.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new()
        .enable_type_names()
        .compile_fds(descriptors)?;
    Ok(())
}
