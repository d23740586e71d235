//! A machine without one of the HA packages fails the story that needs it at once, with the
//! program and the Debian package to install, not with a spawn error halfway through.

use crate::servers::{require_file, require_program};

#[test]
fn a_missing_program_is_named_with_the_package_that_provides_it() {
    let err = require_program("pg_autoctl_not_installed_here", "pg-auto-failover-cli")
        .expect_err("no such program")
        .to_string();
    assert!(err.contains("`pg_autoctl_not_installed_here`"), "{err}");
    assert!(
        err.contains("install the Debian package pg-auto-failover-cli"),
        "{err}"
    );
    assert!(err.contains("system-packages.txt"), "{err}");
    assert!(!err.to_lowercase().contains("permission denied"), "{err}");
}

#[test]
fn a_missing_extension_library_is_named_with_its_package() {
    let err = require_file(
        "/usr/lib/postgresql/15/lib/not_installed_here.so",
        "postgresql-15-auto-failover",
    )
    .expect_err("no such file")
    .to_string();
    assert!(
        err.contains("install the Debian package postgresql-15-auto-failover"),
        "{err}"
    );
}

#[test]
fn the_installed_server_binaries_are_found() {
    let path = require_program("pg_ctl", "postgresql").expect("postgresql is a prerequisite");
    assert!(path.ends_with("pg_ctl"));
}
