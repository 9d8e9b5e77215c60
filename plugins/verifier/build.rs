//! Compiles `proto/tufoci/verifier/v1/verifier.proto` (needs `protoc`: Debian protobuf-compiler).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../../proto/tufoci/verifier/v1/verifier.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure().compile_protos(&[proto], &["../../proto"])?;
    Ok(())
}
