// Generates berth.images.v1 (server and client) from proto/ with protoc
// (Debian's protobuf-compiler, installed by scripts/setup).
fn main() {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .compile_protos(&["proto/berth/images/v1/images.proto"], &["proto"])
        .expect("compile proto/berth/images/v1/images.proto (is protoc installed? scripts/setup installs protobuf-compiler)");
}
