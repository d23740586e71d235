//! Constraint violations arrive as typed errors carrying the constraint's name.

use shared_db::testing::TestDatabase;
use shared_db::{Error, ResultExt};

use crate::constraints_migrator;

#[tokio::test]
async fn each_constraint_kind_maps_to_its_variant() {
    let test_db = TestDatabase::with_migrator(&constraints_migrator())
        .await
        .unwrap();
    let pool = test_db.pool();
    sqlx::query("INSERT INTO author VALUES (1, 'ada@example.org')")
        .execute(pool)
        .await
        .unwrap();

    let unique: Error = sqlx::query("INSERT INTO author VALUES (2, 'ada@example.org')")
        .execute(pool)
        .await
        .unwrap_err()
        .into();
    assert!(
        matches!(&unique, Error::Conflict { constraint } if constraint == "uq_author_email"),
        "{unique:?}"
    );

    let fk: Error = sqlx::query("INSERT INTO book VALUES (1, 99, 10)")
        .execute(pool)
        .await
        .unwrap_err()
        .into();
    assert!(
        matches!(&fk, Error::ForeignKey { constraint } if constraint == "fk_book_author_id_author"),
        "{fk:?}"
    );

    let check: Error = sqlx::query("INSERT INTO book VALUES (1, 1, 0)")
        .execute(pool)
        .await
        .unwrap_err()
        .into();
    assert!(
        matches!(&check, Error::Check { constraint } if constraint == "ck_book_pages_positive"),
        "{check:?}"
    );

    let not_null: Error = sqlx::query("INSERT INTO author VALUES (3, NULL)")
        .execute(pool)
        .await
        .unwrap_err()
        .into();
    assert!(
        matches!(&not_null, Error::NotNull { column } if column == "email"),
        "{not_null:?}"
    );

    // Deleting a referenced row is a foreign-key violation too.
    sqlx::query("INSERT INTO book VALUES (1, 1, 10)")
        .execute(pool)
        .await
        .unwrap();
    let still_referenced: Error = sqlx::query("DELETE FROM author WHERE id = 1")
        .execute(pool)
        .await
        .unwrap_err()
        .into();
    assert_eq!(
        still_referenced.constraint(),
        Some("fk_book_author_id_author")
    );
    assert!(!still_referenced.is_retryable());

    let missing: Error = sqlx::query("SELECT id FROM author WHERE id = 42")
        .fetch_one(pool)
        .await
        .unwrap_err()
        .into();
    assert!(matches!(missing, Error::NotFound));
}

#[tokio::test]
async fn on_constraint_turns_a_named_violation_into_a_domain_error_and_leaves_others_alone() {
    let test_db = TestDatabase::with_migrator(&constraints_migrator())
        .await
        .unwrap();
    let pool = test_db.pool();
    let register = async |id: i32, email: &str| {
        sqlx::query("INSERT INTO author VALUES ($1, $2)")
            .bind(id)
            .bind(email)
            .execute(pool)
            .await
            .map(|_| ())
            .on_constraint("uq_author_email", |_| {
                Error::invalid_input("e-mail already registered")
            })
    };
    register(1, "ada@example.org").await.unwrap();

    let taken = register(2, "ada@example.org").await.unwrap_err();
    assert!(
        matches!(&taken, Error::InvalidInput(m) if m.contains("already registered")),
        "{taken:?}"
    );

    let duplicate_id = register(1, "bob@example.org").await.unwrap_err();
    assert!(
        matches!(&duplicate_id, Error::Conflict { constraint } if constraint == "author_pkey"),
        "{duplicate_id:?}"
    );
}

#[tokio::test]
async fn a_value_the_server_refuses_is_a_data_exception_not_a_generic_error() {
    let test_db = TestDatabase::with_migrator(&constraints_migrator())
        .await
        .unwrap();
    let pool = test_db.pool();

    let nul: Error = sqlx::query("INSERT INTO author VALUES (1, $1)")
        .bind("ada\0@example.org")
        .execute(pool)
        .await
        .unwrap_err()
        .into();
    assert!(
        matches!(&nul, Error::DataException { sqlstate, .. } if sqlstate.starts_with("22")),
        "{nul:?}"
    );

    let out_of_range: Error = sqlx::query("SELECT 2147483647 + $1::int4")
        .bind(1_i32)
        .execute(pool)
        .await
        .unwrap_err()
        .into();
    assert!(
        matches!(&out_of_range, Error::DataException { sqlstate, .. } if sqlstate == "22003"),
        "{out_of_range:?}"
    );
    assert!(!out_of_range.is_retryable());
}
