// The query macros read migrations, sqlx.toml and the offline data at compile time; cargo does
// not know that, so tell it when to re-run them.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=sqlx.toml");
    println!("cargo:rerun-if-changed=.sqlx");
    println!("cargo:rerun-if-env-changed=SQLX_OFFLINE");
    println!("cargo:rerun-if-env-changed=SQLX_OFFLINE_DIR");
    println!("cargo:rerun-if-env-changed=DATABASE_URL");
    // `DATABASE_URL=sqlite://demo.db cargo run -- demo` runs the demo on SQLite; the query
    // macros of this crate must not check PostgreSQL queries against that file: they use the
    // offline data instead (the SQLite crate's macros read SQLITE_DATABASE_URL).
    let url = std::env::var("DATABASE_URL").unwrap_or_default();
    if url.starts_with("sqlite:") {
        println!("cargo:rustc-env=SQLX_OFFLINE=true");
    }
}
