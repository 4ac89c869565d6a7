//! The web UI (`../ui`) is embedded into the binary: rebuild when any file in it changes, new
//! files included (the embedding macro alone only notices files it already knew).

fn main() {
    println!("cargo:rerun-if-changed=../ui");
}
