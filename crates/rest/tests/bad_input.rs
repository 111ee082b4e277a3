//! Bad input gets a clear 4xx as application/problem+json, and nothing is
//! stored: each case is its own test, on both databases.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use sheaf_rest::RestConfig;
use sheaf_store::DynStore;

/// Asserts that no metadata record exists.
async fn nothing_stored(app: &axum::Router) {
    let list = get(app, "/metastore/api/v2/metadata/", "application/json").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.header("content-range"), Some("*/0"));
    assert_eq!(list.body, b"[]");
}

async fn no_schemas_stored(app: &axum::Router) {
    let list = get(app, "/metastore/api/v2/schemas/", "application/json").await;
    assert_eq!(list.header("content-range"), Some("*/0"));
}

async fn malformed_multipart(store: DynStore) {
    let app = app(store);
    let body =
        b"--not-the-boundary\r\nContent-Disposition: form-data; name=record\r\n\r\n{}\r\n".to_vec();
    let reply = req(Method::POST, "/metastore/api/v2/schemas/")
        .header(
            "content-type",
            &format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send(&app)
        .await;
    let detail = reply.problem(400);
    assert!(detail.contains("multipart"), "{detail}");
    // A truncated body (no closing boundary) is malformed too.
    let mut body = multipart(&[("record", "application/json", b"{}")]);
    body.truncate(body.len() - 10);
    let reply = req(Method::POST, "/metastore/api/v2/metadata/")
        .header(
            "content-type",
            &format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send(&app)
        .await;
    reply.problem(400);
    // A multipart content type without a boundary.
    let reply = req(Method::POST, "/metastore/api/v2/metadata/")
        .header("content-type", "multipart/form-data")
        .body(b"x".to_vec())
        .send(&app)
        .await;
    reply.problem(400);
    no_schemas_stored(&app).await;
    nothing_stored(&app).await;
}

async fn missing_part(store: DynStore) {
    let app = app(store);
    let reply = req(Method::POST, "/metastore/api/v2/schemas/")
        .multipart(&[("schema", "application/xml", &fixture("schema-v1.xsd"))])
        .send(&app)
        .await;
    assert!(reply.problem(400).contains("\"record\""));
    no_schemas_stored(&app).await;
    create_xsd_schema(&app, "s").await;
    let record = metadata_record(&format!("{BASE}/schemas/s?version=1"), "https://r");
    let reply = req(Method::POST, "/metastore/api/v2/metadata/")
        .multipart(&[("record", "application/json", record.as_bytes())])
        .send(&app)
        .await;
    assert!(reply.problem(400).contains("\"document\""));
    let reply = req(Method::POST, "/metastore/api/v2/schemas/s/validate")
        .multipart(&[])
        .send(&app)
        .await;
    assert!(reply.problem(400).contains("\"document\""));
    // A part this request does not take, or one given twice.
    let reply = req(Method::POST, "/metastore/api/v2/metadata/")
        .multipart(&[
            ("record", "application/json", record.as_bytes()),
            ("documnet", "application/xml", &fixture("metadata-v1.xml")),
        ])
        .send(&app)
        .await;
    assert!(reply.problem(400).contains("documnet"));
    let reply = req(Method::POST, "/metastore/api/v2/metadata/")
        .multipart(&[
            ("record", "application/json", record.as_bytes()),
            ("record", "application/json", record.as_bytes()),
        ])
        .send(&app)
        .await;
    assert!(reply.problem(400).contains("twice"));
    nothing_stored(&app).await;
}

async fn record_not_json(store: DynStore) {
    let app = app(store);
    create_xsd_schema(&app, "s").await;
    let reply = req(Method::POST, "/metastore/api/v2/metadata/")
        .multipart(&[
            (
                "record",
                "application/json",
                b"{\n  \"titles\": [\n    {\"value\": \"x\",}\n  ]\n}",
            ),
            ("document", "application/xml", &fixture("metadata-v1.xml")),
        ])
        .send(&app)
        .await;
    let detail = reply.problem(400);
    assert!(detail.contains("not valid JSON"), "{detail}");
    assert!(detail.contains("line 3 column"), "{detail}");
    // Valid JSON of the wrong shape.
    let reply = req(Method::POST, "/metastore/api/v2/metadata/")
        .multipart(&[
            (
                "record",
                "application/json",
                br#"{"acls": [{"sid": "x", "permission": "ALL"}]}"#,
            ),
            ("document", "application/xml", &fixture("metadata-v1.xml")),
        ])
        .send(&app)
        .await;
    assert!(reply.problem(400).contains("acls[0].permission"));
    let reply = req(Method::POST, "/metastore/api/v2/schemas/")
        .multipart(&[
            ("schema", "application/xml", &fixture("schema-v1.xsd")),
            ("record", "application/json", b"[1, 2]"),
        ])
        .send(&app)
        .await;
    reply.problem(400);
    nothing_stored(&app).await;
}

async fn unknown_schema(store: DynStore) {
    let app = app(store);
    for link in [format!("{BASE}/schemas/nope?version=1"), "nope".to_owned()] {
        let record = metadata_record(&link, "https://r");
        let reply = req(Method::POST, "/metastore/api/v2/metadata/")
            .multipart(&[
                ("record", "application/json", record.as_bytes()),
                ("document", "application/xml", &fixture("metadata-v1.xml")),
            ])
            .send(&app)
            .await;
        assert!(reply.problem(422).contains("nope"));
    }
    // No schema link at all.
    let reply = req(Method::POST, "/metastore/api/v2/metadata/")
        .multipart(&[
            (
                "record",
                "application/json",
                br#"{"titles": [{"value": "t"}]}"#,
            ),
            ("document", "application/xml", &fixture("metadata-v1.xml")),
        ])
        .send(&app)
        .await;
    assert!(reply.problem(422).contains("HAS_METADATA"));
    let reply = get(&app, "/metastore/api/v2/schemas/nope", "application/xml").await;
    reply.problem(404);
    let reply = req(Method::POST, "/metastore/api/v2/schemas/nope/validate")
        .multipart(&[("document", "application/xml", &fixture("metadata-v1.xml"))])
        .send(&app)
        .await;
    reply.problem(404);
    nothing_stored(&app).await;
}

async fn invalid_document(store: DynStore) {
    let app = app(store.clone());
    create_xsd_schema(&app, "s").await;
    let record = metadata_record(&format!("{BASE}/schemas/s?version=1"), "https://r");
    let docs = [
        fixture("metadata-v3.xml"),
        b"<example:metadata xmlns:example=\"http://www.example.org/schema/xsd/\">".to_vec(),
    ];
    let mut details = Vec::new();
    for doc in &docs {
        let reply = req(Method::POST, "/metastore/api/v2/metadata/")
            .multipart(&[
                ("record", "application/json", record.as_bytes()),
                ("document", "application/xml", doc),
            ])
            .send(&app)
            .await;
        let detail = reply.problem(422);
        assert!(detail.starts_with("Validation error"), "{detail}");
        details.push(detail);
    }
    // The refused deposits are kept as rejections: bytes, schema, reason.
    let mut kept = store.list_rejections(None, 10).await.expect("rejections");
    kept.sort_by_key(|r| r.id);
    assert_eq!(kept.len(), 2, "{kept:?}");
    for ((r, doc), detail) in kept.iter().zip(&docs).zip(&details) {
        let r = &r.rejection;
        assert_eq!(r.origin, "rest");
        assert_eq!(&r.document, doc);
        assert_eq!(r.schema_id.as_ref().map(|s| s.as_str()), Some("s"));
        assert_eq!(r.schema_version, Some(1));
        assert!(r.identifier.is_some());
        // The stored reason carries the validator's own words, as the 422.
        let reason = detail.strip_prefix("Validation error: ").unwrap_or(detail);
        assert!(
            r.message.contains(reason.lines().next().unwrap_or(reason)),
            "{} vs {detail}",
            r.message
        );
    }
    // A schema that does not compile is refused the same way.
    let reply = req(Method::POST, "/metastore/api/v2/schemas/")
        .multipart(&[
            ("schema", "application/xml", b"<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\"><xs:element/></xs:schema>"),
            ("record", "application/json", br#"{"id": "broken"}"#),
        ])
        .send(&app)
        .await;
    assert!(reply.problem(422).contains("compile"));
    let list = get(&app, "/metastore/api/v2/schemas/", "application/json").await;
    assert_eq!(list.header("content-range"), Some("0-0/1"));
    nothing_stored(&app).await;
}

async fn wrong_content_type(store: DynStore) {
    let app = app(store);
    create_xsd_schema(&app, "s").await;
    let reply = req(Method::POST, "/metastore/api/v2/metadata/")
        .header("content-type", "application/json")
        .body(metadata_record(&format!("{BASE}/schemas/s?version=1"), "https://r").into_bytes())
        .send(&app)
        .await;
    assert!(reply.problem(415).contains("multipart/form-data"));
    let reply = req(Method::POST, "/metastore/api/v2/schemas/")
        .send(&app)
        .await;
    reply.problem(415);
    nothing_stored(&app).await;
}

async fn body_over_limit(store: DynStore) {
    let app = app_with(
        store,
        RestConfig {
            max_body_bytes: 2048,
            ..config()
        },
    );
    let big = vec![b' '; 4096];
    let body = multipart(&[
        ("schema", "application/xml", &big),
        ("record", "application/json", br#"{"id": "big"}"#),
    ]);
    // Declared too long: refused before reading.
    let reply = req(Method::POST, "/metastore/api/v2/schemas/")
        .header(
            "content-type",
            &format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header("content-length", &body.len().to_string())
        .body(body.clone())
        .send(&app)
        .await;
    reply.problem(413);
    // Streamed without a length: refused while reading.
    let reply = req(Method::POST, "/metastore/api/v2/schemas/")
        .header(
            "content-type",
            &format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send(&app)
        .await;
    reply.problem(413);
    no_schemas_stored(&app).await;
}

async fn unknown_version(store: DynStore) {
    let app = app(store);
    create_xsd_schema(&app, "s").await;
    let created = create_metadata(&app, "s", "https://r").await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json()["id"].as_str().expect("id").to_owned();
    let reply = get(
        &app,
        "/metastore/api/v2/schemas/s?version=9",
        "application/xml",
    )
    .await;
    assert!(reply.problem(404).contains("version 9"));
    let reply = get(
        &app,
        &format!("/metastore/api/v2/metadata/{id}?version=9"),
        "application/xml",
    )
    .await;
    assert!(reply.problem(404).contains("version 9"));
    let reply = req(
        Method::POST,
        "/metastore/api/v2/schemas/s/validate?version=9",
    )
    .multipart(&[("document", "application/xml", &fixture("metadata-v1.xml"))])
    .send(&app)
    .await;
    reply.problem(404);
    // A record linking a version that does not exist is unprocessable.
    let record = metadata_record(&format!("{BASE}/schemas/s?version=9"), "https://other");
    let reply = req(Method::POST, "/metastore/api/v2/metadata/")
        .multipart(&[
            ("record", "application/json", record.as_bytes()),
            ("document", "application/xml", &fixture("metadata-v1.xml")),
        ])
        .send(&app)
        .await;
    reply.problem(422);
    let reply = get(
        &app,
        "/metastore/api/v2/schemas/s?version=x",
        "application/xml",
    )
    .await;
    reply.problem(400);
    let reply = get(
        &app,
        "/metastore/api/v2/metadata/no-such-record",
        "application/xml",
    )
    .await;
    reply.problem(404);
    let list = get(&app, "/metastore/api/v2/metadata/", "application/json").await;
    assert_eq!(list.header("content-range"), Some("0-0/1"));
}

async fn page_size_out_of_range(store: DynStore) {
    let app = app(store);
    for query in [
        "page=-1",
        "size=0",
        "size=1001",
        "page=x",
        "size=1.5",
        "page=99999999999",
        "from=yesterday",
        "until=2024-13-01",
    ] {
        for list in ["metadata", "schemas"] {
            let reply = get(
                &app,
                &format!("/metastore/api/v2/{list}/?{query}"),
                "application/json",
            )
            .await;
            reply.problem(400);
        }
    }
    let ok = get(
        &app,
        "/metastore/api/v2/metadata/?page=3&size=1000",
        "application/json",
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("content-range"), Some("*/0"));
}

async fn preconditions(store: DynStore) {
    let app = app(store);
    create_xsd_schema(&app, "s").await;
    let created = create_metadata(&app, "s", "https://r").await;
    let etag1 = created.etag();
    let rec = created.json();
    let id = rec["id"].as_str().expect("id").to_owned();
    let uri = format!("/metastore/api/v2/metadata/{id}");
    let record = rec.to_string();
    let put = |etag: Option<String>, doc: Vec<u8>| {
        let mut r = req(Method::PUT, &uri);
        if let Some(e) = etag {
            r = r.header("if-match", &e);
        }
        r.multipart(&[
            ("record", "application/json", record.as_bytes()),
            ("document", "application/xml", &doc),
        ])
    };
    put(None, fixture("metadata-v1.xml"))
        .send(&app)
        .await
        .problem(428);
    put(Some("\"stale\"".into()), fixture("metadata-v1.xml"))
        .send(&app)
        .await
        .problem(412);
    let doc2 = String::from_utf8(fixture("metadata-v1.xml"))
        .expect("utf-8")
        .replace("My first", "My changed");
    let updated = put(Some(etag1.clone()), doc2.into_bytes()).send(&app).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text());
    // The ETag of version 1, read back from version 1, no longer works.
    let old = get(
        &app,
        &format!("{uri}?version=1"),
        "application/vnd.datacite.org+json",
    )
    .await;
    assert_eq!(old.etag(), etag1);
    put(Some(old.etag()), fixture("metadata-v1.xml"))
        .send(&app)
        .await
        .problem(412);
    // Nor does naming an old version in the URL with the current ETag.
    let etag2 = updated.etag();
    let reply = req(Method::PUT, &format!("{uri}?version=1"))
        .header("if-match", &etag2)
        .multipart(&[("document", "application/xml", &fixture("metadata-v1.xml"))])
        .send(&app)
        .await;
    reply.problem(412);
    // The same rules for schemas.
    let reply = req(Method::PUT, "/metastore/api/v2/schemas/s")
        .multipart(&[("schema", "application/xml", &fixture("schema-v2.xsd"))])
        .send(&app)
        .await;
    reply.problem(428);
    let reply = req(Method::PUT, "/metastore/api/v2/schemas/s")
        .header("if-match", &etag2)
        .multipart(&[("schema", "application/xml", &fixture("schema-v2.xsd"))])
        .send(&app)
        .await;
    reply.problem(412);
    // DELETE: 428 without If-Match, 412 stale, then 204 and gone.
    req(Method::DELETE, &uri).send(&app).await.problem(428);
    req(Method::DELETE, &uri)
        .header("if-match", &etag1)
        .send(&app)
        .await
        .problem(412);
    let deleted = req(Method::DELETE, &uri)
        .header("if-match", &etag2)
        .send(&app)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    get(&app, &uri, "application/xml").await.problem(404);
    req(Method::DELETE, &uri)
        .header("if-match", &etag2)
        .send(&app)
        .await
        .problem(404);
    nothing_stored(&app).await;
    // Earlier versions stay readable.
    let old = get(&app, &format!("{uri}?version=2"), "application/xml").await;
    assert_eq!(old.status, StatusCode::OK);
}

async fn refused_requests(store: DynStore) {
    let app = app(store);
    create_xsd_schema(&app, "s").await;
    let reply = get(&app, "/metastore/api/v2/schemas/s", "text/html").await;
    assert!(reply.problem(406).contains("vnd.datacite"));
    let reply = get(&app, "/metastore/api/v2/nothing/here", "application/json").await;
    reply.problem(404);
    let reply = req(Method::PATCH, "/metastore/api/v2/metadata/x")
        .send(&app)
        .await;
    reply.problem(405);
    let reply = req(Method::GET, "/metastore/api/v2/schemas/s/validate")
        .send(&app)
        .await;
    reply.problem(405);
    let again = req(Method::POST, "/metastore/api/v2/schemas/")
        .multipart(&[
            ("schema", "application/xml", &fixture("schema-v1.xsd")),
            ("record", "application/json", br#"{"id": "s"}"#),
        ])
        .send(&app)
        .await;
    assert!(again.problem(409).contains("already exists"));
    let reply = req(Method::POST, "/metastore/api/v2/schemas/")
        .multipart(&[
            ("schema", "application/xml", &fixture("schema-v1.xsd")),
            ("record", "application/json", br#"{"id": "bad id"}"#),
        ])
        .send(&app)
        .await;
    reply.problem(400);
    let reply = req(Method::POST, "/metastore/api/v2/schemas/")
        .multipart(&[
            ("schema", "text/plain", b"hello"),
            ("record", "application/json", br#"{"id": "t"}"#),
        ])
        .send(&app)
        .await;
    reply.problem(422);
}

sheaf_store::backend_tests!(
    malformed_multipart,
    missing_part,
    record_not_json,
    unknown_schema,
    invalid_document,
    wrong_content_type,
    body_over_limit,
    unknown_version,
    page_size_out_of_range,
    preconditions,
    refused_requests
);
