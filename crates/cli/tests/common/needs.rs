//! What some tests need from the machine: root's namespaces, and programs
//! from a few Debian packages. Every test that needs one of them asks here,
//! so giving up behaves the same everywhere.

/// Set by CI (`.ci/run`): there a test that cannot run must fail, since a
/// skip would hide that nothing was tested.
const REQUIRE: &str = "HEARTHNET_REQUIRE_PRIVILEGED_TESTS";

/// The one way a test gives up because this machine does not let it run
/// (no root, no namespaces): a failure under `HEARTHNET_REQUIRE_PRIVILEGED_TESTS`,
/// else a `SKIPPED` line on stderr. The caller returns right after.
pub fn cannot_run_here(reason: &str) {
    assert!(
        std::env::var_os(REQUIRE).is_none(),
        "{REQUIRE} is set, but this test cannot run here: {reason}"
    );
    eprintln!("SKIPPED: {reason}");
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Fails naming the Debian package when `program` is not on `PATH`, rather
/// than leaving an "exec failed" from inside a namespace to be decoded.
/// `scripts/test` installs them all.
pub fn program(program: &str, package: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| dir.join(program).is_file());
    assert!(
        found,
        "`{program}` is not on PATH: install the Debian package {package} (`scripts/test` does, as root)"
    );
}
