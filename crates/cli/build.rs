//! Records the compiler version for `hearthnet version`, and links the
//! binary with packed relative relocations.

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| "rustc (unknown version)".into());
    println!("cargo:rustc-env=HEARTHNET_RUSTC_VERSION={version}");
    // A position-independent binary carries one 24-byte relocation per
    // pointer in its read-only data, all read by the loader at start:
    // 1.9 MiB of the idle node's memory. Packed (DT_RELR, binutils 2.38 and
    // glibc 2.36 or later) they take a few KiB.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rerun-if-changed=build.rs");
}
