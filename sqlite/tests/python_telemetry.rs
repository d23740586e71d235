//! The telemetry tables shared with Python on one SQLite file: rows a PlanExe service writes
//! through its SQLAlchemy models (events, workers, nonces, token metrics, feedback, an API key)
//! read back exactly through `shared_db_sqlite::planexe`, and the rows Rust writes read back
//! exactly through the same models (`sqlite/tests/python/telemetry_writer.py`).
//!
//! The Python packages come from `.ci/python-sqlite` (pinned, in a virtualenv under
//! `target/tools`; `.ci/run` installs it, and this test does when it is missing).

mod common;

use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use common::{fresh_file, python};
use serde_json::{Value, json};
use shared_db::Config;
use shared_db::planexe::EventType;
use shared_db::planexe::feedback_item::NewFeedback;
use shared_db::planexe::token_metrics::{NewTokenMetric, TokenUsage};
use shared_db::planexe::user_api_key::{ApiKeySecret, RawApiKey};
use shared_db::planexe::{Keyset, PlanState};
use shared_db_sqlite::Database;
use shared_db_sqlite::planexe::{
    events, feedback_item, nonces, plans, token_metrics, user_account, user_api_key, workers,
};
use uuid::Uuid;

const SECRET: &str = "python-telemetry-secret";

/// Run the Python side with `args`; its one JSON line.
fn run_python(file: &std::path::Path, args: &[&str]) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/telemetry_writer.py"
    );
    let out = Command::new(python())
        .arg(script)
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Python side failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_rust_read_each_others_telemetry_rows_exactly() {
    let path = fresh_file("telemetry");
    let db = Database::connect(&Config {
        sqlite_busy_timeout: Duration::from_secs(30),
        ..Config::new(format!("sqlite://{}", path.display()))
    })
    .await
    .unwrap();
    db.migrate().await.unwrap();
    let mut conn = db.acquire().await.unwrap();
    let plan = plans::enqueue(&mut conn, &Default::default())
        .await
        .unwrap()
        .id;
    let user = user_account::create(&mut conn, None).await.unwrap();
    let raw = RawApiKey::generate().unwrap();

    // --- Python writes, Rust reads.
    let wrote = run_python(
        &path,
        &[
            "write",
            &plan.to_string(),
            &user.to_string(),
            raw.expose(),
            SECRET,
        ],
    );

    let failed = events::list_by_type(&mut conn, EventType::TaskFailed, 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].message, "python failed");
    assert_eq!(
        failed[0].context.as_deref(),
        Some(&json!({ "task_id": plan.to_string(), "reason": "timeout \u{e9}" }))
    );
    let of_plan = events::list_by_plan(&mut conn, plan, 200).await.unwrap();
    assert!(of_plan.iter().any(|e| e.message == "python failed"));
    let null_ctx = events::list_by_type(&mut conn, EventType::GenericEvent, 10)
        .await
        .unwrap();
    assert_eq!(null_ctx[0].message, "python null context");
    assert_eq!(null_ctx[0].context, None, "JSON null reads as absent");

    let stale = workers::list_stale(&mut conn, Duration::from_secs(3600), 10)
        .await
        .unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].id, "python-worker");
    assert_eq!(stale[0].current_task_id, Some(plan.to_string()));
    let silent = Utc::now() - stale[0].last_heartbeat_at;
    assert!(silent > chrono::Duration::minutes(119) && silent < chrono::Duration::minutes(121));

    let nonce_key = wrote["nonce_key"].as_str().unwrap();
    let nonce = nonces::get(&mut conn, nonce_key).await.unwrap();
    assert_eq!(nonce.request_count, 1);
    assert_eq!(
        nonce.context.as_deref(),
        Some(&json!({ "user_agent": "python", "ip_address": "10.1.2.3" }))
    );
    let replay = nonces::consume(&mut conn, nonce_key, None).await.unwrap();
    assert!(!replay.is_new, "a nonce Python accepted is a replay here");
    assert_eq!(replay.nonce.request_count, 2);

    let usage = token_metrics::usage_for_plan(&mut conn, plan)
        .await
        .unwrap();
    assert_eq!(
        usage,
        Some(TokenUsage {
            key: plan.to_string(),
            calls: 2,
            failed_calls: 1,
            input_tokens: 16,
            output_tokens: 22,
            thinking_tokens: 0,
            cost_usd: 0.375,
            duration_seconds: 1.25,
        })
    );
    let calls = token_metrics::list_for_user(&mut conn, &user.to_string(), Keyset::first(10))
        .await
        .unwrap();
    assert_eq!(calls.len(), 2);
    let failed_call = calls.iter().find(|c| !c.success).unwrap();
    assert_eq!(failed_call.error_message.as_deref(), Some("rate limited"));
    assert_eq!(
        failed_call.raw_usage_data, None,
        "JSON null reads as absent"
    );
    assert_eq!(failed_call.cost_usd, None);
    let ok_call = calls.iter().find(|c| c.success).unwrap();
    assert_eq!(
        ok_call.raw_usage_data.as_deref(),
        Some(&json!({ "prompt_tokens": 11 }))
    );
    assert_eq!(ok_call.thinking_tokens, None);

    let feedback = feedback_item::list_for_plan(&mut conn, plan, Keyset::first(10))
        .await
        .unwrap();
    assert_eq!(feedback.len(), 1);
    assert_eq!(feedback[0].id, wrote["feedback_id"].as_str().unwrap());
    assert_eq!(feedback[0].message, "from python \u{e9}\u{6f22}");
    assert_eq!(feedback[0].rating, Some(4));
    assert_eq!(feedback[0].plan_progress_pct, Some(12.5));
    assert_eq!(feedback[0].plan_state.as_deref(), Some("processing"));
    let summary = feedback_item::summary_for_user(&mut conn, &user.to_string())
        .await
        .unwrap();
    assert_eq!((summary.count, summary.rated), (1, 1));
    assert_eq!(summary.average_rating, Some(4.0));

    let secret = ApiKeySecret::new(SECRET);
    let auth = user_api_key::authenticate(&mut conn, &secret, &raw)
        .await
        .unwrap()
        .expect("a key Python stored authenticates");
    let python_key: Uuid = wrote["api_key_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(auth.api_key_id, python_key);
    assert_eq!(auth.user_id, user);
    let keys = user_api_key::list_for_user(&mut conn, user, Keyset::first(10))
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].label.as_deref(), Some("python key"));
    assert_eq!(keys[0].key_prefix, raw.expose()[..10]);
    let renamed = user_api_key::rename(&mut conn, user, python_key, Some("renamed by rust"))
        .await
        .unwrap();
    assert_eq!(renamed.label.as_deref(), Some("renamed by rust"));

    // --- Rust writes, Python reads.
    let rust_nonce = format!("CREATE_{}", Uuid::new_v4());
    nonces::consume(
        &mut conn,
        &rust_nonce,
        Some(&json!({ "ip_address": "::1" })),
    )
    .await
    .unwrap();
    nonces::consume(
        &mut conn,
        &rust_nonce,
        Some(&json!({ "ip_address": "::2" })),
    )
    .await
    .unwrap();
    let usage_block = json!({ "prompt_tokens": 7 });
    token_metrics::record(
        &mut conn,
        &NewTokenMetric {
            llm_model: "rust-model",
            plan_id: Some(plan),
            user_id: Some(&user.to_string()),
            input_tokens: Some(7),
            cost_usd: Some(0.5),
            success: true,
            raw_usage_data: Some(&usage_block),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    token_metrics::record(
        &mut conn,
        &NewTokenMetric {
            llm_model: "rust-model",
            success: false,
            error_message: Some("boom"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    feedback_item::record(
        &mut conn,
        &NewFeedback {
            category: "rust",
            message: "from rust \u{e9}",
            plan_id: Some(plan),
            rating: Some(5),
            plan_progress_pct: Some(50.0),
            plan_state: Some(PlanState::Completed),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    events::append(
        &mut conn,
        EventType::GenericError,
        "rust error",
        Some(&json!({ "task_id": plan.to_string() })),
    )
    .await
    .unwrap();
    events::append(&mut conn, EventType::TaskCompleted, "rust done", None)
        .await
        .unwrap();
    workers::heartbeat(&mut conn, "rust-worker", None)
        .await
        .unwrap();

    let read = run_python(
        &path,
        &["read", &plan.to_string(), &user.to_string(), &rust_nonce],
    );
    assert_eq!(
        read,
        json!({
            "nonce": [2, { "ip_address": "::2" }, true],
            "metrics": [
                [plan.to_string(), user.to_string(), 7, 0.5, true, { "prompt_tokens": 7 }, null, true],
                [null, null, null, null, false, null, "boom", true],
            ],
            "feedback": [plan.to_string(), 5, "completed", "from rust \u{e9}", 50.0, true],
            "events": [
                ["GENERIC_ERROR", { "task_id": plan.to_string() }],
                ["TASK_COMPLETED", null],
            ],
            "worker": [null, true],
        })
    );
}
