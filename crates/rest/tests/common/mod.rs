//! Helpers shared by the REST integration tests: an app on a test store,
//! multipart bodies shaped like the reference's, and response reading.
#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::Value;
use sheaf_rest::{ApiToken, RestConfig};
use sheaf_store::DynStore;
use sheaf_validate::{Limits, Registry};
use tower::ServiceExt;

/// The boundary the reference's requests use.
pub const BOUNDARY: &str = "6o2knFse3p53ty9dmcQvWAIx1zInP11uCfbm";
/// The base URL the reference's responses show.
pub const BASE: &str = "http://localhost:8040/metastore/api/v2";

/// A fixture file's bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../fixtures/rest/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The app as a MetaStore client sees it: context path `/metastore` on
/// `localhost:8040`.
pub fn config() -> RestConfig {
    RestConfig {
        context_path: "/metastore".into(),
        public_base_url: Some("http://localhost:8040".into()),
        ..RestConfig::default()
    }
}

pub fn app(store: DynStore) -> Router {
    app_with(store, config())
}

pub fn app_with(store: DynStore, config: RestConfig) -> Router {
    sheaf_rest::router(Registry::new(store, Limits::default()), config)
}

/// An app with tokens for alice and bob.
pub fn app_with_tokens(store: DynStore) -> Router {
    let mut config = config();
    config.tokens = vec![
        ApiToken {
            subject: "alice".into(),
            token: "alice-token".into(),
        },
        ApiToken {
            subject: "bob".into(),
            token: "bob-token".into(),
        },
    ];
    app_with(store, config)
}

/// A multipart body of `(name, content type, bytes)` parts, written as the
/// reference's client writes them (unquoted names and file names).
pub fn multipart(parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, content_type, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name={name}; filename={name}\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// One response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn etag(&self) -> String {
        self.header("etag").expect("ETag header").to_owned()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts an application/problem+json error with `status`; its detail.
    pub fn problem(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let p = self.json();
        assert_eq!(p["status"], status);
        assert_eq!(p["type"], "about:blank");
        assert!(p["title"].is_string());
        assert!(p["instance"].as_str().is_some_and(|i| i.starts_with('/')));
        p["detail"].as_str().expect("detail").to_owned()
    }
}

/// A request under construction.
pub struct Req {
    builder: axum::http::request::Builder,
    body: Vec<u8>,
}

pub fn req(method: Method, uri: &str) -> Req {
    Req {
        builder: Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "localhost:8040"),
        body: Vec::new(),
    }
}

impl Req {
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.builder = self.builder.header(name, value);
        self
    }

    pub fn multipart(mut self, parts: &[(&str, &str, &[u8])]) -> Req {
        self.body = multipart(parts);
        self.builder = self.builder.header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        );
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Req {
        self.body = body;
        self
    }

    pub async fn send(self, app: &Router) -> Reply {
        let request = self.builder.body(Body::from(self.body)).expect("request");
        let res = app.clone().oneshot(request).await.expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// `GET` with an `Accept` header.
pub async fn get(app: &Router, uri: &str, accept: &str) -> Reply {
    req(Method::GET, uri)
        .header("accept", accept)
        .send(app)
        .await
}

/// The reference's first XSD schema, registered (as its record and XSD).
pub async fn create_xsd_schema(app: &Router, id: &str) -> Reply {
    let record = format!(r#"{{"id":"{id}","titles":[{{"value":"Title for {id}"}}]}}"#);
    let reply = req(Method::POST, "/metastore/api/v2/schemas/")
        .multipart(&[
            ("schema", "application/xml", &fixture("schema-v1.xsd")),
            ("record", "application/json", record.as_bytes()),
        ])
        .send(app)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    reply
}

/// A metadata record for `schema_url` describing `resource`.
pub fn metadata_record(schema_url: &str, resource: &str) -> String {
    format!(
        r#"{{"titles":[{{"value":"A title"}}],"resourceType":{{"value":"XML_Metadata","typeGeneral":"MODEL"}},
        "relatedIdentifiers":[{{"identifierType":"URL","value":"{resource}","relationType":"IS_METADATA_FOR"}},
        {{"identifierType":"URL","value":"{schema_url}","relationType":"HAS_METADATA"}}]}}"#
    )
}

/// Deposits the reference's first XML document for `resource`.
pub async fn create_metadata(app: &Router, schema_id: &str, resource: &str) -> Reply {
    let record = metadata_record(&format!("{BASE}/schemas/{schema_id}?version=1"), resource);
    req(Method::POST, "/metastore/api/v2/metadata/")
        .multipart(&[
            ("record", "application/json", record.as_bytes()),
            ("document", "application/xml", &fixture("metadata-v1.xml")),
        ])
        .send(app)
        .await
}
