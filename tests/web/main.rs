//! The example service (`examples/service`), driven over real HTTP: the router listens on
//! 127.0.0.1:0 and a plain HTTP/1 client talks to it, against a freshly migrated database.

#[path = "../../examples/service/app.rs"]
mod app;
mod errors;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use shared_db::planexe::plans;
use shared_db::testing::TestDatabase;
use uuid::Uuid;

/// The service under test and its database.
struct Service {
    addr: std::net::SocketAddr,
    db: TestDatabase,
}

/// A response as the client saw it.
struct Reply {
    status: StatusCode,
    content_range: Option<String>,
    body: Value,
}

impl Service {
    async fn start() -> Service {
        let db = TestDatabase::new().await.expect("test database");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = app::router(db.db().clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Service { addr, db }
    }

    /// One request on a fresh connection.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.to_string())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .expect("request");
        let response = sender.send_request(request).await.expect("send");
        let status = response.status();
        let content_range = response
            .headers()
            .get(header::CONTENT_RANGE)
            .map(|v| v.to_str().expect("ascii header").to_owned());
        let raw = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if raw.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&raw)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()))
        };
        Reply {
            status,
            content_range,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }
}

fn product(name: &str, price: f64) -> Value {
    json!({
        "category_id": null,
        "price": price,
        "stock": 3,
        "translation": {
            "main_name": name,
            "main_description": format!("{name}, described"),
            "main_description_short": name,
        }
    })
}

#[tokio::test]
async fn readiness_answers_200_with_the_schema_health() {
    let svc = Service::start().await;
    let reply = svc.get("/ready").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.is_object(), "health as JSON: {}", reply.body);
}

#[tokio::test]
async fn a_queued_plan_is_committed_and_readable_and_an_unknown_one_is_404() {
    let svc = Service::start().await;
    let created = svc
        .post(
            "/plans",
            json!({ "prompt": "a plan for a bakery", "user_id": "u1" }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id: Uuid = created.body["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");

    // committed by the middleware: visible outside the request's transaction
    let stored = plans::status(svc.db.pool(), id).await.expect("stored plan");
    assert_eq!(stored.id, id);

    let status = svc.get(&format!("/plans/{id}")).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert_eq!(status.body["state"], "pending");

    let missing = svc.get(&format!("/plans/{}", Uuid::new_v4())).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["error"], "not_found");
}

#[tokio::test]
async fn refused_transitions_are_409_and_bad_input_is_422() {
    let svc = Service::start().await;
    let created = svc
        .post("/plans", json!({ "prompt": "pending plan" }))
        .await;
    let id = created.body["id"].as_str().expect("id").to_owned();
    // a pending plan cannot be retried
    let retry = svc.post(&format!("/plans/{id}/retry"), json!({})).await;
    assert_eq!(retry.status, StatusCode::CONFLICT, "{}", retry.body);
    assert_eq!(retry.body["error"], "conflict");

    let empty = svc.post("/plans", json!({ "prompt": "  " })).await;
    assert_eq!(
        empty.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        empty.body
    );

    let first = svc.post("/shops", json!({ "name": "Corner shop" })).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let again = svc.post("/shops", json!({ "name": "Corner shop" })).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert!(
        again.body["constraint"].as_str().is_some(),
        "the conflict names its constraint: {}",
        again.body
    );
    assert!(
        !again.body.to_string().contains("INSERT"),
        "no SQL leaks: {}",
        again.body
    );
}

#[tokio::test]
async fn a_failing_handler_leaves_none_of_its_writes_behind() {
    let svc = Service::start().await;
    let shop = svc.post("/shops", json!({ "name": "Import shop" })).await;
    let shop_id = shop.body["id"].as_str().expect("shop id").to_owned();
    let import = format!("/shops/{shop_id}/products/import");

    // two good products, then one without a name: 422, and the first two are rolled back
    let failed = svc
        .post(
            &import,
            json!([
                product("Mug", 9.5),
                product("Shirt", 19.0),
                product("", 1.0)
            ]),
        )
        .await;
    assert_eq!(
        failed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        failed.body
    );
    let after_failure = svc.get(&format!("/shops/{shop_id}/products")).await;
    assert_eq!(after_failure.status, StatusCode::OK);
    assert_eq!(
        after_failure.body,
        json!([]),
        "nothing of the failed import remains"
    );
    assert_eq!(after_failure.content_range.as_deref(), Some("products */0"));

    // the same import without the bad item commits
    let ok = svc
        .post(
            &import,
            json!([product("Mug", 9.5), product("Shirt", 19.0)]),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    assert_eq!(ok.body.as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn the_product_list_pages_with_a_content_range_header() {
    let svc = Service::start().await;
    let shop = svc.post("/shops", json!({ "name": "List shop" })).await;
    let shop_id = shop.body["id"].as_str().expect("shop id").to_owned();
    let items: Vec<Value> = (1..=7)
        .map(|i| product(&format!("Poster {i}"), f64::from(i)))
        .collect();
    let import = svc
        .post(
            &format!("/shops/{shop_id}/products/import"),
            Value::Array(items),
        )
        .await;
    assert_eq!(import.status, StatusCode::CREATED, "{}", import.body);

    let page = svc
        .get(&format!(
            "/shops/{shop_id}/products?filter=main_name:poster&sort=price:DESC&skip=2&limit=3"
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.content_range.as_deref(), Some("products 2-4/7"));
    // money travels as exact decimal strings with two places
    let prices: Vec<&str> = page
        .body
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["price"].as_str().expect("price"))
        .collect();
    assert_eq!(prices, ["5.00", "4.00", "3.00"]);

    let bad_sort = svc
        .get(&format!("/shops/{shop_id}/products?sort=password"))
        .await;
    assert_eq!(
        bad_sort.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        bad_sort.body
    );
}

#[tokio::test]
async fn a_limit_above_the_maximum_is_422_never_an_unbounded_page() {
    let svc = Service::start().await;
    let shop = svc.post("/shops", json!({ "name": "Big shop" })).await;
    let shop_id = shop.body["id"].as_str().expect("shop id").to_owned();
    for limit in ["100000", "0", "-1", "9223372036854775807"] {
        let reply = svc
            .get(&format!("/shops/{shop_id}/products?limit={limit}"))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit={limit}: {}",
            reply.body
        );
    }
    let max = svc
        .get(&format!(
            "/shops/{shop_id}/products?limit={}",
            shared_db::shop::MAX_LIMIT
        ))
        .await;
    assert_eq!(max.status, StatusCode::OK, "{}", max.body);
}
