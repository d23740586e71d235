//! An example web service on shared-db (feature `axum`).
//!
//! ```sh
//! cargo run --example service --features axum      # listens on 127.0.0.1:3000
//! curl -s localhost:3000/ready
//! curl -s -XPOST localhost:3000/plans -H 'content-type: application/json' -d '{"prompt":"a plan"}'
//! ```
//!
//! `DATABASE_URL` selects the database (read from `.env` too; the embedded cluster when unset,
//! which a production service would not do: it would call `Database::connect` and fail without
//! a URL); `SERVICE_ADDR` the listen address. The routes are in `app.rs`.

mod app;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = dotenvy::dotenv(); // optional
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let db = shared_db::Database::connect_or_embedded(&shared_db::Config::from_env()?).await?;
    db.migrate().await?; // safe from every replica at once
    let addr = std::env::var("SERVICE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "listening");
    axum::serve(listener, app::router(db.clone()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    db.close().await;
    Ok(())
}
