#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

#[test]
fn version_is_one_line_with_all_four_facts() {
    let run = common::Sandbox::new().run(&["version"], None);
    assert_eq!(run.code, 0);
    assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
    let line = run.stdout.trim();
    assert!(
        line.starts_with(&format!("hearthnet {} ", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    assert!(line.contains("contract 1.0"), "{line}");
    assert!(line.contains("rustc 1."), "{line}");
    assert!(
        line.contains(&format!(
            "{}/{}",
            std::env::consts::OS,
            std::env::consts::ARCH
        )),
        "{line}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let run = common::Sandbox::new().run(&["init", "--profile", "castle"], None);
    assert_eq!(run.code, 2, "{run:?}");
}
