//! Compiles the protocol's .proto files with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "protos/streams.proto",
        "protos/persistent.proto",
        "protos/serverfeatures.proto",
    ];
    for proto in protos
        .iter()
        .chain(&["protos/shared.proto", "protos/status.proto"])
    {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["protos"])?;
    tonic_build::configure()
        // The client half is for the crate's own protocol tests (malformed requests).
        .build_client(true)
        // Event payloads are shared between the live feed and every subscriber without copying.
        .bytes(["."])
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    Ok(())
}
