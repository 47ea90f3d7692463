//! Records the compiler version for `hearthnet version`, and links the
//! binary with packed relative relocations where the toolchain and the C
//! library support them.

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version =
        output(&rustc, &["--version"]).unwrap_or_else(|| "rustc (unknown version)".into());
    println!("cargo:rustc-env=HEARTHNET_RUSTC_VERSION={version}");
    // A position-independent binary carries one 24-byte relocation per
    // pointer in its read-only data, all read by the loader at start:
    // 1.9 MiB of the idle node's memory. Packed (DT_RELR) they take a few
    // KiB, but the linker must know them and the C library that runs the
    // binary must apply them, so only a native build on a system that
    // has both packs them.
    if packs_relocations() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rerun-if-changed=build.rs");
}

/// A native Linux build with GNU ld 2.38 or later and glibc 2.36 or later.
fn packs_relocations() -> bool {
    let (Ok(host), Ok(target)) = (std::env::var("HOST"), std::env::var("TARGET")) else {
        return false;
    };
    if host != target || !target.contains("linux-gnu") {
        return false;
    }
    // "GNU ld (GNU Binutils for Debian) 2.40" and "glibc 2.36".
    let ld = output("ld", &["--version"]).and_then(|v| last_version(v.lines().next()?));
    let libc = output("getconf", &["GNU_LIBC_VERSION"]).and_then(|v| last_version(&v));
    ld.is_some_and(|v| v >= (2, 38)) && libc.is_some_and(|v| v >= (2, 36))
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).ok())
        .flatten()
        .map(|v| v.trim().to_owned())
}

/// The major and minor numbers of the last word of `line`, e.g. `2.40`.
fn last_version(line: &str) -> Option<(u32, u32)> {
    let word = line.split_whitespace().last()?;
    let mut parts = word.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>();
    Some((major, minor.parse().ok()?))
}
