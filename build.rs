// The query macros read migrations, sqlx.toml and the offline data at compile time; cargo does
// not know that, so tell it when to re-run them.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=sqlx.toml");
    println!("cargo:rerun-if-changed=.sqlx");
    println!("cargo:rerun-if-env-changed=SQLX_OFFLINE");
    println!("cargo:rerun-if-env-changed=SQLX_OFFLINE_DIR");
    println!("cargo:rerun-if-env-changed=DATABASE_URL");
}
