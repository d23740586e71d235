//! The example service's routes: what a web service built on shared-db looks like.
//!
//! Every handler that touches the database takes a [`Tx`]: the request's transaction, committed
//! by the middleware when the handler answers 2xx/3xx and rolled back otherwise. Errors are
//! [`HttpError`]s: `NotFound` → 404, conflicts → 409, bad input → 422, the rest 500 without SQL.
//!
//! | route | does |
//! |---|---|
//! | `GET /ready` | readiness probe (200 / 503 with the schema health) |
//! | `POST /plans` | queue a plan (`{"prompt", "user_id"?}`) → 201 `{"id"}` |
//! | `GET /plans/{id}` | a plan's status, 404 if unknown |
//! | `POST /plans/{id}/retry` | re-queue a failed or stopped plan, 409 otherwise |
//! | `POST /shops` | create a shop (`{"name"}`), 409 if the name is taken |
//! | `POST /shops/{shop}/products/import` | create several products, all or nothing |
//! | `GET /shops/{shop}/products` | list (`?filter=&sort=&skip=&limit=`, `limit` at most [`shared_db::shop::MAX_LIMIT`], else 422) with `Content-Range` |

use axum::extract::{FromRef, Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared_db::Database;
use shared_db::planexe::plans::{self, NewPlan, PlanStatus};
use shared_db::shop::{ListParams, ProductId, ShopId, products, shops};
use shared_db::web::{self, ContentRangeHeader, HttpError, Tx, TxState};
use uuid::Uuid;

/// What the handlers can extract: the database (readiness) and the transaction state ([`Tx`]).
#[derive(Clone)]
pub struct AppState {
    db: Database,
    tx: TxState,
}

impl FromRef<AppState> for Database {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}

impl FromRef<AppState> for TxState {
    fn from_ref(state: &AppState) -> Self {
        state.tx.clone()
    }
}

/// The service's router, with the transaction middleware installed.
pub fn router(db: Database) -> Router {
    let (tx, tx_layer) = web::transaction_layer(&db);
    Router::new()
        .route("/ready", get(web::readiness))
        .route("/plans", post(create_plan))
        .route("/plans/{id}", get(plan_status))
        .route("/plans/{id}/retry", post(retry_plan))
        .route("/shops", post(create_shop))
        .route("/shops/{shop}/products/import", post(import_products))
        .route("/shops/{shop}/products", get(list_products))
        .layer(tx_layer)
        .with_state(AppState { db, tx })
}

/// Body of `POST /plans`.
#[derive(Deserialize)]
pub struct PlanRequest {
    prompt: String,
    user_id: Option<String>,
}

/// Answer of `POST /plans` and `POST /shops`.
#[derive(Serialize, Deserialize)]
pub struct Created {
    /// The new row's id.
    pub id: Uuid,
}

async fn create_plan(
    mut tx: Tx,
    Json(req): Json<PlanRequest>,
) -> Result<(StatusCode, Json<Created>), HttpError> {
    if req.prompt.trim().is_empty() {
        return Err(shared_db::Error::invalid_input("prompt is required").into());
    }
    let queued = plans::enqueue(
        web::conn(&mut tx),
        &NewPlan {
            prompt: &req.prompt,
            user_id: req.user_id.as_deref(),
            ..Default::default()
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(Created { id: queued.id })))
}

async fn plan_status(mut tx: Tx, Path(id): Path<Uuid>) -> Result<Json<PlanStatus>, HttpError> {
    Ok(Json(plans::status(web::conn(&mut tx), id).await?))
}

async fn retry_plan(mut tx: Tx, Path(id): Path<Uuid>) -> Result<Json<Value>, HttpError> {
    let requeued = plans::retry(web::conn(&mut tx), id).await?;
    Ok(Json(json!({ "id": id, "from": requeued.from })))
}

/// Body of `POST /shops`.
#[derive(Deserialize)]
pub struct ShopRequest {
    name: String,
}

async fn create_shop(
    mut tx: Tx,
    Json(req): Json<ShopRequest>,
) -> Result<(StatusCode, Json<Created>), HttpError> {
    let shop = shops::create(web::conn(&mut tx), &shops::ShopFields::named(req.name)).await?;
    Ok((StatusCode::CREATED, Json(Created { id: shop.id.get() })))
}

/// Creates every product of the body in the request's transaction. If one is refused (say, a
/// missing name → 422), the handler returns the error and the middleware rolls back the ones
/// created before it: the import is all or nothing.
async fn import_products(
    mut tx: Tx,
    Path(shop): Path<ShopId>,
    Json(items): Json<Vec<ImportItem>>,
) -> Result<(StatusCode, Json<Vec<ProductId>>), HttpError> {
    let mut ids = Vec::with_capacity(items.len());
    for item in &items {
        ids.push(
            products::create(web::conn(&mut tx), shop, &item.fields, item.stock)
                .await?
                .item
                .id,
        );
    }
    Ok((StatusCode::CREATED, Json(ids)))
}

/// One product of an import body: its fields and opening stock (default 1).
#[derive(Deserialize)]
pub struct ImportItem {
    #[serde(flatten)]
    fields: products::ProductFields,
    #[serde(default = "one")]
    stock: i32,
}

fn one() -> i32 {
    1
}

/// Query of `GET /shops/{shop}/products`: one filter and one sort key (see
/// [`products::LIST`] for the columns).
#[derive(Deserialize)]
pub struct ListQuery {
    filter: Option<String>,
    sort: Option<String>,
    #[serde(default)]
    skip: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    20
}

/// One product in a list answer.
#[derive(Serialize, Deserialize)]
pub struct ProductItem {
    /// The product.
    pub id: ProductId,
    /// Main-language name; `None` without a translation.
    pub name: Option<String>,
    /// Unit price as a decimal string (`"9.50"`); `None`: no price set.
    pub price: Option<Decimal>,
    /// Units in stock.
    pub stock: i32,
}

async fn list_products(
    mut tx: Tx,
    Path(shop): Path<ShopId>,
    Query(q): Query<ListQuery>,
) -> Result<(ContentRangeHeader, Json<Vec<ProductItem>>), HttpError> {
    let mut params = ListParams::default().page(q.skip, q.limit);
    params.filter.extend(q.filter);
    params.sort.extend(q.sort);
    let page = products::list(web::conn(&mut tx), shop, &params).await?;
    let items = page
        .items
        .iter()
        .map(|p| ProductItem {
            id: p.item.id,
            name: p.translation.as_ref().map(|t| t.main_name.clone()),
            price: p.item.price,
            stock: p.item.stock,
        })
        .collect();
    Ok((
        ContentRangeHeader(page.content_range.to_string()),
        Json(items),
    ))
}
