//! The router mounted inside another application, under a prefix: its
//! links and problems name the paths the client used.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::NaiveDate;
use microgrid_core::{Prosumer, ProsumerKind};
use microgrid_server::{router, AppState, KeyRing, Role};
use microgrid_store::Grid;
use serde_json::Value;
use tower::ServiceExt;

async fn call(app: &axum::Router, path: &str, key: &str) -> (StatusCode, Value) {
    let request = Request::get(path)
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn nested_under_a_prefix() {
    let grid = Grid::open("memory:").await.unwrap();
    let joined = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
    for id in ["a", "b", "c"] {
        grid.register(Prosumer::new(id, id, ProsumerKind::Household, joined).unwrap())
            .await
            .unwrap();
    }
    let keys = KeyRing::in_memory();
    let (_, secret) = keys.create(Role::Operator).unwrap();
    let prosumer = keys.create(Role::Prosumer("a".parse().unwrap())).unwrap().1;
    let app = axum::Router::new().nest("/books", router(AppState::new(grid, keys)));

    let (status, page) = call(&app, "/books/api/v1/prosumers?limit=2", secret.expose()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 3);
    assert_eq!(page["next"], "/books/api/v1/prosumers?limit=2&offset=2");
    let (_, last) = call(&app, page["next"].as_str().unwrap(), secret.expose()).await;
    assert_eq!(last["items"][0]["id"], "c");
    assert_eq!(last["next"], Value::Null);

    // A prosumer key on an operator endpoint: the 404 of a missing path.
    let (status, problem) = call(&app, "/books/api/v1/keys", prosumer.expose()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["detail"], "resource /books/api/v1/keys not found");
    let (_, missing) = call(&app, "/books/api/v1/nothing", prosumer.expose()).await;
    assert_eq!(missing["kind"], problem["kind"]);
    assert_eq!(
        missing["detail"],
        "resource /books/api/v1/nothing not found"
    );
}
