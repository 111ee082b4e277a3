//! Harvested records show through the REST API like deposited ones, with
//! what their sparse record JSON lacks derived from the version.

mod common;

use axum::http::{Method, StatusCode};
use chrono::Utc;
use common::*;
use serde_json::json;
use sheaf_domain::model::{Expect, Provenance, RecordWrite, Source};
use sheaf_domain::{RecordId, SchemaId, SourceId};
use sheaf_store::DynStore;

const ID: &str = "src:oai:arXiv.org:cs/0112017";

async fn harvest_one(store: &DynStore) {
    let source = SourceId::parse("src").expect("source id");
    store
        .upsert_source(&Source {
            id: source.clone(),
            base_url: "http://provider.test/oai".into(),
            enabled: true,
            config: json!({}),
            updated_at: Utc::now(),
        })
        .await
        .expect("source");
    store
        .put_record(
            RecordWrite {
                id: RecordId::parse(ID).expect("id"),
                schema_id: SchemaId::parse("s").expect("schema id"),
                schema_version: 1,
                document: fixture("metadata-v1.xml"),
                record: json!({"titles": [{"value": "Harvested"}]}),
                resources: vec!["10.1234/abc".into()],
                acl: Vec::new(),
                source_id: Some(source),
                provenance: Some(Provenance {
                    harvest_time: Utc::now(),
                    base_url: "http://provider.test/oai".into(),
                    oai_identifier: "oai:arXiv.org:cs/0112017".into(),
                    datestamp: "2024-01-01".into(),
                    metadata_namespace: None,
                    set_specs: Vec::new(),
                }),
            },
            Expect::Any,
        )
        .await
        .expect("harvested record");
}

async fn harvested_records_show(store: DynStore) {
    let app = app(store.clone());
    create_xsd_schema(&app, "s").await;
    harvest_one(&store).await;
    let list = get(
        &app,
        "/metastore/api/v2/metadata/?resourceId=10.1234%2Fabc",
        "application/json",
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.header("content-range"), Some("0-0/1"));
    let rec = &list.json()[0];
    assert_eq!(rec["id"], ID);
    assert_eq!(rec["titles"], json!([{"value": "Harvested"}]));
    assert_eq!(rec["creators"], json!([{"givenName": "src"}]));
    assert_eq!(rec["publisher"], "src");
    assert_eq!(rec["identifier"]["value"], "(:tba)");
    assert_eq!(rec["resourceType"]["value"], "XML_Metadata");
    assert_eq!(rec["dates"][0]["type"], "CREATED");
    assert_eq!(
        rec["relatedIdentifiers"],
        json!([
            {"identifierType": "DOI", "value": "10.1234/abc", "relationType": "IS_METADATA_FOR"},
            {"identifierType": "URL", "value": format!("{BASE}/schemas/s?version=1"), "relationType": "HAS_METADATA"},
        ])
    );
    assert_eq!(rec["version"], "1");
    assert_eq!(rec["acls"], json!([]));

    // Its id holds a `/`: Location escapes it, and the path takes it back.
    let escaped = "src:oai:arXiv.org:cs%2F0112017";
    let one = get(
        &app,
        &format!("/metastore/api/v2/metadata/{escaped}"),
        "application/vnd.datacite.org+json",
    )
    .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text());
    assert_eq!(
        one.header("location"),
        Some(format!("{BASE}/metadata/{escaped}?version=1").as_str())
    );
    assert_eq!(&one.json(), rec);
    let doc = get(
        &app,
        &format!("/metastore/api/v2/metadata/{escaped}"),
        "application/xml",
    )
    .await;
    assert_eq!(doc.body, fixture("metadata-v1.xml"));

    // An update through the API keeps it the source's record.
    let updated = req(
        Method::PUT,
        &format!("/metastore/api/v2/metadata/{escaped}"),
    )
    .header("if-match", &one.etag())
    .multipart(&[(
        "document",
        "application/xml",
        &fixture("metadata-v1.xml").repeat(1),
    )])
    .send(&app)
    .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text());
    assert_eq!(updated.json()["version"], "1", "nothing changed");
}

/// In token mode a harvested record (no ACL) is public: callers without a
/// token find it too.
async fn harvested_records_are_public(store: DynStore) {
    let open = app(store.clone());
    create_xsd_schema(&open, "s").await;
    harvest_one(&store).await;
    let app = app_with_tokens(store);
    for auth in [None, Some("Bearer bob-token")] {
        let mut r = req(
            Method::GET,
            "/metastore/api/v2/metadata/?resourceId=10.1234%2Fabc",
        );
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let list = r.send(&app).await;
        assert_eq!(list.header("content-range"), Some("0-0/1"), "{auth:?}");
        let one = get(
            &app,
            "/metastore/api/v2/metadata/src:oai:arXiv.org:cs%2F0112017",
            "application/xml",
        )
        .await;
        assert_eq!(one.status, StatusCode::OK);
    }
    // But nobody may write it without an ACL entry.
    let one = get(
        &app,
        "/metastore/api/v2/metadata/src:oai:arXiv.org:cs%2F0112017",
        "application/vnd.datacite.org+json",
    )
    .await;
    req(
        Method::PUT,
        "/metastore/api/v2/metadata/src:oai:arXiv.org:cs%2F0112017",
    )
    .header("authorization", "Bearer bob-token")
    .header("if-match", &one.etag())
    .multipart(&[("document", "application/xml", &fixture("metadata-v1.xml"))])
    .send(&app)
    .await
    .problem(403);
}

sheaf_store::backend_tests!(harvested_records_show, harvested_records_are_public);
