//! Metadata lists: filtered by `schemaId`, paged with an exact
//! `Content-Range`, and a schema linked by its `INTERNAL` id on create.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use sheaf_store::DynStore;

const LIST: &str = "/metastore/api/v2/metadata/";

/// `GET` of the metadata list with `query`, as JSON.
async fn list(app: &axum::Router, query: &str) -> Reply {
    get(app, &format!("{LIST}?{query}"), "application/json").await
}

async fn filtered_and_paged(store: DynStore) {
    let app = app(store);
    create_xsd_schema(&app, "first").await;
    create_xsd_schema(&app, "second").await;
    for i in 0..25 {
        let r = create_metadata(&app, "first", &format!("https://r/{i}")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    for i in 0..3 {
        let r = create_metadata(&app, "second", &format!("https://s/{i}")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }

    let second = list(&app, "schemaId=second").await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.header("content-range"), Some("0-2/3"));
    let items = second.json();
    let items = items.as_array().expect("a list");
    assert_eq!(items.len(), 3);
    for item in items {
        assert!(
            item.to_string().contains("/schemas/second?version=1"),
            "linked to the second schema: {item}"
        );
    }

    // Pages count from 0: the third page of ten holds the last five.
    let page = list(&app, "schemaId=first&size=10&page=2").await;
    assert_eq!(page.header("content-range"), Some("20-24/25"));
    assert_eq!(page.json().as_array().map(Vec::len), Some(5));
    let middle = list(&app, "schemaId=first&size=10&page=1").await;
    assert_eq!(middle.header("content-range"), Some("10-19/25"));
    let past = list(&app, "schemaId=first&size=10&page=3").await;
    assert_eq!(past.header("content-range"), Some("*/25"));
    assert_eq!(past.json().as_array().map(Vec::len), Some(0));

    // Both schemas at once, and an unknown one.
    let both = list(&app, "schemaId=first&schemaId=second&size=100").await;
    assert_eq!(both.header("content-range"), Some("0-27/28"));
    let none = list(&app, "schemaId=nothing").await;
    assert_eq!(none.header("content-range"), Some("*/0"));
}

async fn schema_linked_by_internal_id(store: DynStore) {
    let app = app(store);
    create_xsd_schema(&app, "first").await;
    let record = r#"{"titles":[{"value":"A title"}],
        "relatedIdentifiers":[{"identifierType":"URL","value":"https://r/internal","relationType":"IS_METADATA_FOR"},
        {"identifierType":"INTERNAL","value":"first","relationType":"HAS_METADATA"}]}"#;
    let reply = req(Method::POST, LIST)
        .multipart(&[
            ("record", "application/json", record.as_bytes()),
            ("document", "application/xml", &fixture("metadata-v1.xml")),
        ])
        .send(&app)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    // Pinned to the schema's current version at creation.
    assert!(
        reply.text().contains("/schemas/first?version=1"),
        "{}",
        reply.text()
    );
    let found = list(&app, "resourceId=https%3A%2F%2Fr%2Finternal").await;
    assert_eq!(found.header("content-range"), Some("0-0/1"));
}

sheaf_store::backend_tests!(filtered_and_paged, schema_linked_by_internal_id);
