//! The README promises that Rust plus one install line is all `cargo run -- demo` and
//! `cargo test` need. That line and `system-packages.txt` (which `.ci/run` installs from) are
//! the same list, or this story fails.

use std::collections::BTreeSet;

/// The packages of `system-packages.txt`: one per line, `#` comments and blank lines skipped.
fn system_packages() -> BTreeSet<String> {
    include_str!("../../system-packages.txt")
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The packages the README's install line names (`sudo apt-get install -y <packages>`).
fn readme_install_line() -> BTreeSet<String> {
    let readme = include_str!("../../README.md");
    let lines: Vec<&str> = readme
        .lines()
        .filter(|l| l.trim_start().starts_with("sudo apt-get install"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "the README has exactly one install line, found {lines:?}"
    );
    lines[0]
        .split_whitespace()
        .skip(3)
        .filter(|w| !w.starts_with('-'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_install_line_is_system_packages_txt() {
    let file = system_packages();
    let readme = readme_install_line();
    assert!(file.contains("postgresql") && file.contains("pg-auto-failover-cli"));
    assert_eq!(
        readme,
        file,
        "README install line and system-packages.txt differ: only in README {:?}, only in the file {:?}",
        readme.difference(&file).collect::<Vec<_>>(),
        file.difference(&readme).collect::<Vec<_>>()
    );
}
