//! With API tokens configured: writes need a bearer token, its subject is
//! the `sid`, and record ACLs govern reads, lists and writes.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{Value, json};
use sheaf_store::DynStore;

const ALICE: &str = "Bearer alice-token";
const BOB: &str = "Bearer bob-token";
const DATACITE: &str = "application/vnd.datacite.org+json";

async fn schema_as(app: &axum::Router, auth: &str) -> Reply {
    req(Method::POST, "/metastore/api/v2/schemas/")
        .header("authorization", auth)
        .multipart(&[
            ("schema", "application/xml", &fixture("schema-v1.xsd")),
            (
                "record",
                "application/json",
                br#"{"id": "s", "titles": [{"value": "S"}]}"#,
            ),
        ])
        .send(app)
        .await
}

async fn lookup(app: &axum::Router, auth: Option<&str>) -> Reply {
    let mut r = req(
        Method::GET,
        "/metastore/api/v2/metadata/?resourceId=https%3A%2F%2Fr",
    );
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    r.send(app).await
}

async fn read(app: &axum::Router, id: &str, auth: Option<&str>) -> Reply {
    let mut r =
        req(Method::GET, &format!("/metastore/api/v2/metadata/{id}")).header("accept", DATACITE);
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    r.send(app).await
}

async fn put_record(app: &axum::Router, id: &str, auth: &str, etag: &str, record: &Value) -> Reply {
    req(Method::PUT, &format!("/metastore/api/v2/metadata/{id}"))
        .header("authorization", auth)
        .header("if-match", etag)
        .multipart(&[("record", "application/json", record.to_string().as_bytes())])
        .send(app)
        .await
}

async fn tokens_and_acls(store: DynStore) {
    let app = app_with_tokens(store);
    // Writes need a valid token.
    let anonymous = req(Method::POST, "/metastore/api/v2/schemas/")
        .multipart(&[
            ("schema", "application/xml", &fixture("schema-v1.xsd")),
            ("record", "application/json", br#"{"id": "s"}"#),
        ])
        .send(&app)
        .await;
    anonymous.problem(401);
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    schema_as(&app, "Bearer wrong").await.problem(401);
    let schema = schema_as(&app, ALICE).await;
    assert_eq!(schema.status, StatusCode::CREATED, "{}", schema.text());
    assert_eq!(schema.json()["creators"], json!([{"givenName": "alice"}]));
    assert_eq!(
        schema.json()["acls"],
        json!([{"sid": "alice", "permission": "ADMINISTRATE"}])
    );

    // Alice deposits; she is creator, publisher and administrator.
    let record = metadata_record(&format!("{BASE}/schemas/s?version=1"), "https://r");
    let created = req(Method::POST, "/metastore/api/v2/metadata/")
        .header("authorization", ALICE)
        .multipart(&[
            ("record", "application/json", record.as_bytes()),
            ("document", "application/xml", &fixture("metadata-v1.xml")),
        ])
        .send(&app)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let rec = created.json();
    let id = rec["id"].as_str().expect("id").to_owned();
    assert_eq!(rec["creators"], json!([{"givenName": "alice"}]));
    assert_eq!(rec["publisher"], "alice");
    assert_eq!(
        rec["acls"],
        json!([{"sid": "alice", "permission": "ADMINISTRATE"}])
    );

    // Only alice sees it: in reads and in lists.
    assert_eq!(read(&app, &id, Some(ALICE)).await.status, StatusCode::OK);
    read(&app, &id, Some(BOB)).await.problem(403);
    read(&app, &id, None).await.problem(401);
    assert_eq!(
        lookup(&app, Some(ALICE)).await.header("content-range"),
        Some("0-0/1")
    );
    assert_eq!(
        lookup(&app, Some(BOB)).await.header("content-range"),
        Some("*/0")
    );
    assert_eq!(
        lookup(&app, None).await.header("content-range"),
        Some("*/0")
    );
    let versions = req(Method::GET, &format!("/metastore/api/v2/metadata/?id={id}"))
        .header("authorization", BOB)
        .send(&app)
        .await;
    assert_eq!(versions.header("content-range"), Some("*/0"));

    // Bob cannot write it, nor delete it.
    let mut with_bob = rec.clone();
    with_bob["acls"] = json!([
        {"sid": "alice", "permission": "ADMINISTRATE"},
        {"sid": "bob", "permission": "WRITE"},
    ]);
    put_record(&app, &id, BOB, &created.etag(), &with_bob)
        .await
        .problem(403);
    // Alice lets bob write.
    let shared = put_record(&app, &id, ALICE, &created.etag(), &with_bob).await;
    assert_eq!(shared.status, StatusCode::OK, "{}", shared.text());
    assert_eq!(read(&app, &id, Some(BOB)).await.status, StatusCode::OK);
    assert_eq!(
        lookup(&app, Some(BOB)).await.header("content-range"),
        Some("0-0/1")
    );

    // Bob may change the content but not the ACL.
    let mut titled = shared.json();
    titled["titles"] = json!([{"value": "Bob's title"}]);
    let by_bob = put_record(&app, &id, BOB, &shared.etag(), &titled).await;
    assert_eq!(by_bob.status, StatusCode::OK, "{}", by_bob.text());
    let mut grab = by_bob.json();
    grab["acls"] = json!([{"sid": "bob", "permission": "ADMINISTRATE"}]);
    put_record(&app, &id, BOB, &by_bob.etag(), &grab)
        .await
        .problem(403);
    req(Method::DELETE, &format!("/metastore/api/v2/metadata/{id}"))
        .header("authorization", BOB)
        .header("if-match", &by_bob.etag())
        .send(&app)
        .await
        .problem(403);

    // Granting the public subject READ opens it to callers without a token.
    let mut public = by_bob.json();
    public["acls"] = json!([
        {"sid": "alice", "permission": "ADMINISTRATE"},
        {"sid": "bob", "permission": "WRITE"},
        {"sid": "anonymousUser", "permission": "READ"},
    ]);
    let opened = put_record(&app, &id, ALICE, &by_bob.etag(), &public).await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.text());
    assert_eq!(read(&app, &id, None).await.status, StatusCode::OK);
    assert_eq!(
        lookup(&app, None).await.header("content-range"),
        Some("0-0/1")
    );
    req(Method::DELETE, &format!("/metastore/api/v2/metadata/{id}"))
        .header("if-match", &opened.etag())
        .send(&app)
        .await
        .problem(401);

    // Bob cannot touch alice's schema.
    req(Method::PUT, "/metastore/api/v2/schemas/s")
        .header("authorization", BOB)
        .header("if-match", &schema.etag())
        .multipart(&[("schema", "application/xml", &fixture("schema-v2.xsd"))])
        .send(&app)
        .await
        .problem(403);

    let deleted = req(Method::DELETE, &format!("/metastore/api/v2/metadata/{id}"))
        .header("authorization", ALICE)
        .header("if-match", &opened.etag())
        .send(&app)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
}

sheaf_store::backend_tests!(tokens_and_acls);
