//! Replays every request/response example of the MetaStore REST API v2
//! reference (XML and JSON walk-throughs) against Sheaf: status codes,
//! `Location`, `ETag` behaviour, `Content-Range` and the server-assigned
//! record fields. Values that depend on time or on random ids (dates,
//! `lastUpdate`, UUIDs, ETag strings) are checked for shape and equality
//! between calls, not for the reference's literal values.
//!
//! Deliberate differences, asserted as such:
//! - a record-only schema update (the ACL example) makes a new version, as
//!   every change in Sheaf's model does; the reference keeps version 3;
//! - `IS_NEW_VERSION_OF` of a schema points at `/schemas/…`, where the
//!   older version is; the reference points at `/metadata/…`;
//! - a document is returned with its own type (`application/xml` for XML),
//!   where the reference sometimes says `application/json` or `text/plain`.

mod common;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use common::*;
use serde_json::{Value, json};
use sheaf_store::DynStore;

/// Checks the fields the server assigns to every record.
fn assert_assigned(rec: &Value, id: &str, version: u32, resource_type: &str) {
    assert_eq!(rec["id"], id, "{rec}");
    assert_eq!(
        rec["identifier"],
        json!({"value": "(:tba)", "identifierType": "DOI"})
    );
    assert_eq!(rec["creators"], json!([{"givenName": "SELF"}]));
    assert_eq!(rec["publisher"], "SELF");
    assert_eq!(
        rec["resourceType"],
        json!({"value": resource_type, "typeGeneral": "MODEL"})
    );
    let dates = rec["dates"].as_array().expect("dates");
    assert_eq!(dates.len(), 1);
    assert_eq!(dates[0]["type"], "CREATED");
    let created = dates[0]["value"].as_str().expect("created");
    assert_eq!(created.len(), "2024-11-25T13:50:12Z".len(), "{created}");
    assert!(DateTime::parse_from_rfc3339(created).is_ok());
    assert_eq!(rec["publicationYear"], created[..4]);
    assert_eq!(
        rec["alternateIdentifiers"],
        json!([{"value": id, "identifierType": "INTERNAL"}])
    );
    assert_eq!(rec["version"], version.to_string());
    let last = rec["lastUpdate"].as_str().expect("lastUpdate");
    assert!(last.ends_with('Z') && DateTime::parse_from_rfc3339(last).is_ok());
    assert_eq!(rec["state"], "VOLATILE");
}

fn relation(value: &str, relation: &str) -> Value {
    json!({"identifierType": "URL", "value": value, "relationType": relation})
}

fn acl(entries: &[(&str, &str)]) -> Value {
    entries
        .iter()
        .map(|(sid, p)| json!({"sid": sid, "permission": p}))
        .collect()
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `from` two hours back, as the reference's date filters, and `until`
/// one hour back.
fn window() -> (String, String) {
    let now = Utc::now();
    (
        encode(&(now - Duration::hours(2)).to_rfc3339_opts(SecondsFormat::Nanos, true)),
        encode(&(now - Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Nanos, true)),
    )
}

/// Registers a schema from the reference's HTTP-level record.
async fn post_schema(app: &axum::Router, schema: &[u8], schema_type: &str, id: &str) -> Reply {
    let record = format!(
        r#"{{"id":"{id}","identifier":null,"creators":[],"titles":[{{"id":null,"value":"Title for {id}","titleType":null,"lang":null}}],"publisher":null,"publicationYear":null,"resourceType":null,"subjects":[],"contributors":[],"dates":[],"relatedIdentifiers":[],"descriptions":[],"geoLocations":[],"language":null,"alternateIdentifiers":[],"sizes":[],"formats":[],"version":null,"rights":[],"fundingReferences":[],"lastUpdate":null,"state":null,"embargoDate":null,"acls":[]}}"#
    );
    req(Method::POST, "/metastore/api/v2/schemas/")
        .multipart(&[
            ("schema", schema_type, schema),
            ("record", "application/json", record.as_bytes()),
        ])
        .send(app)
        .await
}

async fn put_schema(app: &axum::Router, id: &str, etag: &str, schema: &[u8]) -> Reply {
    req(Method::PUT, &format!("/metastore/api/v2/schemas/{id}"))
        .header("if-match", etag)
        .multipart(&[("schema", "application/json", schema)])
        .send(app)
        .await
}

/// The reference's schema ACL update ("introduce a user called admin").
async fn put_schema_acl(app: &axum::Router, id: &str, etag: &str, v3: &Value) -> Reply {
    let mut record = v3.clone();
    record["acls"] = json!([
        {"id": 1, "sid": "SELF", "permission": "ADMINISTRATE"},
        {"id": null, "sid": "admin", "permission": "ADMINISTRATE"},
    ]);
    req(Method::PUT, &format!("/metastore/api/v2/schemas/{id}"))
        .header("if-match", etag)
        .multipart(&[("record", "application/json", record.to_string().as_bytes())])
        .send(app)
        .await
}

/// The schema half of a walk-through, shared by XML and JSON: register,
/// read, two document updates, another schema, the lists, old versions,
/// validation, and the ACL update. Returns nothing; asserts throughout.
#[allow(clippy::too_many_arguments)]
async fn schema_walkthrough(
    app: &axum::Router,
    first: &str,
    another: &str,
    docs: [&[u8]; 4],
    doc_type: &str,
    schema_type: &str,
    metadata_v3: &[u8],
    invalid_hint: &str,
) {
    let [v1, v2, v3, other] = docs;

    // Registering a Metadata Schema Document.
    let created = post_schema(app, v1, doc_type, first).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    assert_eq!(
        created.header("location"),
        Some(format!("{BASE}/schemas/{first}?version=1").as_str())
    );
    assert_eq!(created.header("content-type"), Some("application/json"));
    let etag1 = created.etag();
    let rec1 = created.json();
    assert_assigned(&rec1, first, 1, schema_type);
    assert_eq!(
        rec1["titles"],
        json!([{"value": format!("Title for {first}")}])
    );
    assert_eq!(rec1["acls"], acl(&[("SELF", "ADMINISTRATE")]));
    assert!(rec1.get("relatedIdentifiers").is_none());

    // Getting a Datacite Schema Record.
    let got = get(app, &format!("/metastore/api/v2/schemas/{first}"), DATACITE).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.etag(), etag1);
    assert_eq!(got.header("content-type"), Some(DATACITE));
    assert_eq!(got.json(), rec1);

    // Getting a Schema Document.
    let doc = get(app, &format!("/metastore/api/v2/schemas/{first}"), doc_type).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.header("content-type"), Some(doc_type));
    assert_eq!(doc.body, v1);

    // Updating a Metadata Schema Document (add mandatory 'date' field).
    let updated = put_schema(app, first, &etag1, v2).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text());
    assert_eq!(
        updated.header("location"),
        Some(format!("{BASE}/schemas/{first}?version=2").as_str())
    );
    let etag2 = updated.etag();
    assert_ne!(etag2, etag1);
    let rec2 = updated.json();
    assert_assigned(&rec2, first, 2, schema_type);
    assert_eq!(rec2["dates"], rec1["dates"]);
    assert_eq!(
        rec2["relatedIdentifiers"],
        json!([relation(
            &format!("{BASE}/schemas/{first}?version=1"),
            "IS_NEW_VERSION_OF"
        )])
    );

    // Updating a Metadata Schema Document (add optional 'note' field).
    let updated = put_schema(app, first, &etag2, v3).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text());
    assert_eq!(
        updated.header("location"),
        Some(format!("{BASE}/schemas/{first}?version=3").as_str())
    );
    let etag3 = updated.etag();
    let rec3 = updated.json();
    assert_assigned(&rec3, first, 3, schema_type);
    assert_eq!(
        rec3["relatedIdentifiers"][0]["value"],
        format!("{BASE}/schemas/{first}?version=2")
    );

    // Registering another Metadata Schema Document.
    let other_created = post_schema(app, other, doc_type, another).await;
    assert_eq!(
        other_created.status,
        StatusCode::CREATED,
        "{}",
        other_created.text()
    );
    assert_eq!(
        other_created.header("location"),
        Some(format!("{BASE}/schemas/{another}?version=1").as_str())
    );
    assert_assigned(&other_created.json(), another, 1, schema_type);

    // Getting a List of Datacite Records of a Schema (and with paging).
    for uri in [
        "/metastore/api/v2/schemas/",
        "/metastore/api/v2/schemas/?page=0&size=20",
    ] {
        let list = get(app, uri, "application/json").await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(list.header("content-range"), Some("0-1/2"));
        assert_eq!(list.header("content-type"), Some("application/json"));
        let items = list.json();
        assert_eq!(items[0]["id"], another);
        assert_eq!(items[1], rec3);
    }

    // Getting a List of all Datacite Records of a Schema for a SchemaId.
    let list = get(
        app,
        &format!("/metastore/api/v2/schemas/?schemaId={first}"),
        "application/json",
    )
    .await;
    assert_eq!(list.header("content-range"), Some("0-2/3"));
    assert_eq!(list.json(), json!([rec3, rec2, rec1]));

    // Getting current Version of Metadata Schema Document.
    let doc = get(app, &format!("/metastore/api/v2/schemas/{first}"), doc_type).await;
    assert_eq!(doc.body, v3);

    // Getting a specific Version of Metadata Schema Document.
    let doc = get(
        app,
        &format!("/metastore/api/v2/schemas/{first}?version=1"),
        doc_type,
    )
    .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body, v1);

    // Validating Metadata Document: version 1 refuses it …
    let uri = format!("/metastore/api/v2/schemas/{first}/validate");
    let invalid = req(Method::POST, &format!("{uri}?version=1"))
        .multipart(&[("document", doc_type, metadata_v3)])
        .send(app)
        .await;
    let detail = invalid.problem(422);
    assert!(detail.starts_with("Validation error"), "{detail}");
    assert!(detail.contains(invalid_hint), "{detail}");
    assert_eq!(invalid.json()["title"], "Unprocessable Entity");
    assert_eq!(invalid.json()["instance"], uri);
    // … and the current version accepts it.
    let valid = req(Method::POST, &uri)
        .multipart(&[("document", doc_type, metadata_v3)])
        .send(app)
        .await;
    assert_eq!(valid.status, StatusCode::NO_CONTENT, "{}", valid.text());
    assert!(valid.body.is_empty());

    // Update Metadata Schema Record (a new ACL entry).
    let updated = put_schema_acl(app, first, &etag3, &rec3).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text());
    assert_eq!(
        updated.header("location"),
        Some(format!("{BASE}/schemas/{first}?version=4").as_str())
    );
    assert_ne!(updated.etag(), etag3);
    let rec4 = updated.json();
    assert_assigned(&rec4, first, 4, schema_type);
    assert_eq!(
        rec4["acls"],
        acl(&[("SELF", "ADMINISTRATE"), ("admin", "ADMINISTRATE")])
    );
    assert_eq!(rec4["titles"], rec3["titles"]);
    // The document did not change.
    let doc = get(app, &format!("/metastore/api/v2/schemas/{first}"), doc_type).await;
    assert_eq!(doc.body, v3);
}

const DATACITE: &str = "application/vnd.datacite.org+json";

/// The metadata half of a walk-through: deposit, read both ways, two
/// updates (schema by URL, then INTERNAL), the old versions, and the lists.
#[allow(clippy::too_many_arguments)]
async fn metadata_walkthrough(
    app: &axum::Router,
    schema: &str,
    metadata_type: &str,
    doc_type: &str,
    titles: &str,
    docs: [&[u8]; 3],
) {
    let [d1, d2, d3] = docs;
    let resource = "https://repo/anyResourceId";
    // Register/Ingest a Datacite Record with Metadata Document.
    let record = format!(
        r#"{{"id":null,"identifier":null,"creators":[],"titles":[{{"id":null,"value":"{titles}","titleType":null,"lang":null}}],"publisher":null,"publicationYear":null,"resourceType":{{"id":null,"value":"{metadata_type}","typeGeneral":"MODEL"}},"subjects":[],"contributors":[],"dates":[],"relatedIdentifiers":[{{"id":null,"identifierType":"URL","value":"{resource}","relationType":"IS_METADATA_FOR","scheme":null,"relatedMetadataScheme":null}},{{"id":null,"identifierType":"URL","value":"{BASE}/schemas/{schema}?version=1","relationType":"HAS_METADATA","scheme":null,"relatedMetadataScheme":null}}],"descriptions":[],"geoLocations":[],"language":null,"alternateIdentifiers":[],"sizes":[],"formats":[],"version":null,"rights":[],"fundingReferences":[],"lastUpdate":null,"state":null,"embargoDate":null,"acls":[]}}"#
    );
    let created = req(Method::POST, "/metastore/api/v2/metadata/")
        .multipart(&[
            ("record", "application/json", record.as_bytes()),
            ("document", doc_type, d1),
        ])
        .send(app)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let rec1 = created.json();
    let id = rec1["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let v1_url = format!("{BASE}/metadata/{id}?version=1");
    assert_eq!(created.header("location"), Some(v1_url.as_str()));
    let etag1 = created.etag();
    assert_assigned(&rec1, &id, 1, metadata_type);
    assert_eq!(rec1["titles"], json!([{"value": titles}]));
    assert_eq!(
        rec1["relatedIdentifiers"],
        json!([
            relation(resource, "IS_METADATA_FOR"),
            relation(
                &format!("{BASE}/schemas/{schema}?version=1"),
                "HAS_METADATA"
            ),
        ])
    );
    assert_eq!(rec1["acls"], acl(&[("SELF", "ADMINISTRATE")]));

    // Accessing Metadata Document.
    let doc = get(
        app,
        &format!("/metastore/api/v2/metadata/{id}?version=1"),
        doc_type,
    )
    .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.header("content-type"), Some(doc_type));
    assert_eq!(doc.body, d1);

    // Accessing Datacite Record of Metadata Document.
    let got = get(
        app,
        &format!("/metastore/api/v2/metadata/{id}?version=1"),
        DATACITE,
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.etag(), etag1);
    assert_eq!(got.header("location"), Some(v1_url.as_str()));
    assert_eq!(got.header("content-type"), Some(DATACITE));
    assert_eq!(got.json(), rec1);

    // Updating a Datacite Record (edit ACL entries) & Metadata Document:
    // the record as the reference's client sends it back, schema version 2.
    let mut record2 = rec1.clone();
    record2["relatedIdentifiers"] = json!([
        {"id": 2, "identifierType": "URL", "value": resource, "relationType": "IS_METADATA_FOR", "scheme": null, "relatedMetadataScheme": null},
        {"id": 3, "identifierType": "URL", "value": format!("{BASE}/schemas/{schema}?version=2"), "relationType": "HAS_METADATA", "scheme": null, "relatedMetadataScheme": null},
    ]);
    record2["acls"] = json!([
        {"id": null, "sid": "guest", "permission": "READ"},
        {"id": 4, "sid": "SELF", "permission": "ADMINISTRATE"},
    ]);
    // The JSON walk-through PUTs to `…?version=1` and labels its JSON
    // document application/xml; both are accepted.
    let updated = req(
        Method::PUT,
        &format!("/metastore/api/v2/metadata/{id}?version=1"),
    )
    .header("if-match", &etag1)
    .multipart(&[
        ("record", "application/json", record2.to_string().as_bytes()),
        ("document", "application/xml", d2),
    ])
    .send(app)
    .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text());
    let v2_url = format!("{BASE}/metadata/{id}?version=2");
    assert_eq!(updated.header("location"), Some(v2_url.as_str()));
    let etag2 = updated.etag();
    assert_ne!(etag2, etag1);
    let rec2 = updated.json();
    assert_assigned(&rec2, &id, 2, metadata_type);
    assert_eq!(rec2["dates"], rec1["dates"]);
    assert_eq!(
        rec2["relatedIdentifiers"],
        json!([
            relation(resource, "IS_METADATA_FOR"),
            relation(
                &format!("{BASE}/schemas/{schema}?version=2"),
                "HAS_METADATA"
            ),
            relation(&v1_url, "IS_NEW_VERSION_OF"),
        ])
    );
    // The store keeps an ACL sorted by subject; the reference lists it in
    // its database's order. Order carries no meaning, so compare as sets.
    assert_eq!(
        rec2["acls"],
        acl(&[("SELF", "ADMINISTRATE"), ("guest", "READ")])
    );

    // Getting the new ETag.
    let got = get(
        app,
        &format!("/metastore/api/v2/metadata/{id}?version=2"),
        DATACITE,
    )
    .await;
    assert_eq!(got.etag(), etag2);
    assert_eq!(got.header("location"), Some(v2_url.as_str()));
    assert_eq!(got.json(), rec2);

    // Updating to the current schema version by its INTERNAL id.
    let mut record3 = rec2.clone();
    record3["relatedIdentifiers"] = json!([
        {"id": 2, "identifierType": "URL", "value": resource, "relationType": "IS_METADATA_FOR"},
        {"id": 1, "identifierType": "INTERNAL", "value": schema, "relationType": "HAS_METADATA"},
    ]);
    let updated = req(Method::PUT, &format!("/metastore/api/v2/metadata/{id}"))
        .header("if-match", &etag2)
        .multipart(&[
            ("record", "application/json", record3.to_string().as_bytes()),
            ("document", doc_type, d3),
        ])
        .send(app)
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text());
    let v3_url = format!("{BASE}/metadata/{id}?version=3");
    assert_eq!(updated.header("location"), Some(v3_url.as_str()));
    let rec3 = updated.json();
    assert_assigned(&rec3, &id, 3, metadata_type);
    assert_eq!(
        rec3["relatedIdentifiers"],
        json!([
            relation(resource, "IS_METADATA_FOR"),
            // The reference's version 3; version 4 here, after the ACL update.
            relation(
                &format!("{BASE}/schemas/{schema}?version=4"),
                "HAS_METADATA"
            ),
            relation(&v2_url, "IS_NEW_VERSION_OF"),
        ])
    );

    // Accessing the updated metadata (no Accept: the document).
    let doc = req(
        Method::GET,
        &format!("/metastore/api/v2/metadata/{id}?version=3"),
    )
    .send(app)
    .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body, d3);

    // Getting a List of all Datacite Records for a Specific Metadata Document.
    let list = get(
        app,
        &format!("/metastore/api/v2/metadata/?id={id}"),
        "application/json",
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.header("content-range"), Some("0-2/3"));
    assert_eq!(list.json(), json!([rec3, rec2, rec1]));

    // Find by resourceId (the reference spells the parameter `resoureId`).
    for name in ["resoureId", "resourceId"] {
        let list = get(
            app,
            &format!("/metastore/api/v2/metadata/?{name}={}", encode(resource)),
            "application/json",
        )
        .await;
        assert_eq!(list.header("content-range"), Some("0-0/1"));
        assert_eq!(list.json(), json!([rec3]));
    }

    // Find after a specific date.
    let (from, until) = window();
    let list = get(
        app,
        &format!("/metastore/api/v2/metadata/?from={from}"),
        "application/json",
    )
    .await;
    assert_eq!(list.header("content-range"), Some("0-0/1"));
    assert_eq!(list.json(), json!([rec3]));

    // Find in a specific date range: nothing.
    let list = get(
        app,
        &format!("/metastore/api/v2/metadata/?from={from}&until={until}"),
        "application/json",
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.header("content-range"), Some("*/0"));
    assert_eq!(list.json(), json!([]));
}

async fn xml_walkthrough(store: DynStore) {
    let app = app(store);
    schema_walkthrough(
        &app,
        "my_first_xsd",
        "another_xsd",
        [
            &fixture("schema-v1.xsd"),
            &fixture("schema-v2.xsd"),
            &fixture("schema-v3.xsd"),
            &fixture("another-schema.xsd"),
        ],
        "application/xml",
        "XML_Schema",
        &fixture("metadata-v3.xml"),
        "date",
    )
    .await;
    metadata_walkthrough(
        &app,
        "my_first_xsd",
        "XML_Metadata",
        "application/xml",
        "Title of first XML metadata document",
        [
            &fixture("metadata-v1.xml"),
            &fixture("metadata-v2.xml"),
            &fixture("metadata-v3.xml"),
        ],
    )
    .await;
}

async fn json_walkthrough(store: DynStore) {
    let app = app(store);
    schema_walkthrough(
        &app,
        "my_first_json",
        "another_json",
        [
            &fixture("schema-v1.json"),
            &fixture("schema-v2.json"),
            &fixture("schema-v3.json"),
            &fixture("another-schema.json"),
        ],
        "application/json",
        "JSON_Schema",
        &fixture("metadata-v3.json"),
        "note",
    )
    .await;
    metadata_walkthrough(
        &app,
        "my_first_json",
        "JSON_Metadata",
        "application/json",
        "Title of first JSON metadata document",
        [
            &fixture("metadata-v1.json"),
            &fixture("metadata-v2.json"),
            &fixture("metadata-v3.json"),
        ],
    )
    .await;
}

/// The reference's second "another" schema is a JSON schema uploaded with
/// `type=application/xml`: the document decides, not the part's label.
async fn json_schema_labelled_xml(store: DynStore) {
    let app = app(store);
    let created = post_schema(
        &app,
        &fixture("another-schema.json"),
        "application/xml",
        "another_json",
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    assert_eq!(created.json()["resourceType"]["value"], "JSON_Schema");
}

/// Echoing a record back unchanged writes no new version.
async fn unchanged_put_keeps_the_version(store: DynStore) {
    let app = app(store);
    create_xsd_schema(&app, "s").await;
    let created = create_metadata(&app, "s", "https://repo/r").await;
    let rec = created.json();
    let id = rec["id"].as_str().expect("id");
    let again = req(Method::PUT, &format!("/metastore/api/v2/metadata/{id}"))
        .header("if-match", &created.etag())
        .multipart(&[("record", "application/json", rec.to_string().as_bytes())])
        .send(&app)
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(again.etag(), created.etag());
    assert_eq!(again.json()["version"], "1");
    let schema = get(&app, "/metastore/api/v2/schemas/s", DATACITE).await;
    let schema_rec = schema.json();
    let again = req(Method::PUT, "/metastore/api/v2/schemas/s")
        .header("if-match", &schema.etag())
        .multipart(&[(
            "record",
            "application/json",
            schema_rec.to_string().as_bytes(),
        )])
        .send(&app)
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(again.json()["version"], "1");
}

sheaf_store::backend_tests!(
    xml_walkthrough,
    json_walkthrough,
    json_schema_labelled_xml,
    unchanged_put_keeps_the_version
);
