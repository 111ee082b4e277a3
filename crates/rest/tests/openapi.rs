//! The OpenAPI description is served and names the routes that answer.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use sheaf_store::DynStore;

async fn openapi_is_served(store: DynStore) {
    let app = app(store);
    let reply = get(&app, "/metastore/api/v2/openapi.json", "application/json").await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], "/metastore");
    assert_eq!(doc, {
        let mut d = sheaf_rest::openapi();
        d["servers"][0]["url"] = "/metastore".into();
        d
    });
    // Every described operation is routed: none answers 404 or 405.
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for method in item.as_object().expect("operations").keys() {
            let uri = format!(
                "/metastore{}",
                path.replace("{schemaId}", "nope").replace("{id}", "nope")
            );
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let reply = req(method.clone(), &uri).send(&app).await;
            assert_ne!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {uri}"
            );
            // A 404 may say the schema or record is unknown, never that
            // no route is there.
            if reply.status == StatusCode::NOT_FOUND {
                let detail = reply.problem(404);
                assert!(
                    !detail.starts_with("no resource at"),
                    "{method} {uri}: {detail}"
                );
            }
        }
    }
}

sheaf_store::backend_tests!(openapi_is_served);
