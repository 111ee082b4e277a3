//! Optimistic concurrency: of N concurrent updates carrying one ETag,
//! exactly one wins (200) and the rest get 412.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use sheaf_store::DynStore;

const WRITERS: usize = 8;

async fn race(app: &axum::Router, uri: &str, etag: &str, parts: Vec<Vec<(String, Vec<u8>)>>) {
    let mut tasks = Vec::new();
    for p in parts {
        let app = app.clone();
        let uri = uri.to_owned();
        let etag = etag.to_owned();
        tasks.push(tokio::spawn(async move {
            let parts: Vec<(&str, &str, &[u8])> = p
                .iter()
                .map(|(name, bytes)| (name.as_str(), "application/octet-stream", bytes.as_slice()))
                .collect();
            req(Method::PUT, &uri)
                .header("if-match", &etag)
                .multipart(&parts)
                .send(&app)
                .await
                .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((won, lost), (1, WRITERS - 1), "{statuses:?}");
}

async fn concurrent_metadata_puts(store: DynStore) {
    let app = app(store);
    create_xsd_schema(&app, "s").await;
    let created = create_metadata(&app, "s", "https://r").await;
    let id = created.json()["id"].as_str().expect("id").to_owned();
    let base = String::from_utf8(fixture("metadata-v1.xml")).expect("utf-8");
    let parts = (0..WRITERS)
        .map(|i| {
            vec![(
                "document".to_owned(),
                base.replace("My first", &format!("Writer {i}'s"))
                    .into_bytes(),
            )]
        })
        .collect();
    let uri = format!("/metastore/api/v2/metadata/{id}");
    race(&app, &uri, &created.etag(), parts).await;
    let versions = get(
        &app,
        &format!("/metastore/api/v2/metadata/?id={id}"),
        "application/json",
    )
    .await;
    assert_eq!(versions.header("content-range"), Some("0-1/2"));
}

async fn concurrent_schema_puts(store: DynStore) {
    let app = app(store);
    let created = create_xsd_schema(&app, "s").await;
    let parts = (0..WRITERS)
        .map(|i| {
            vec![(
                "record".to_owned(),
                format!(r#"{{"id":"s","titles":[{{"value":"Title {i}"}}]}}"#).into_bytes(),
            )]
        })
        .collect();
    race(&app, "/metastore/api/v2/schemas/s", &created.etag(), parts).await;
    let versions = get(
        &app,
        "/metastore/api/v2/schemas/?schemaId=s",
        "application/json",
    )
    .await;
    assert_eq!(versions.header("content-range"), Some("0-1/2"));
}

sheaf_store::backend_tests!(concurrent_metadata_puts, concurrent_schema_puts);
