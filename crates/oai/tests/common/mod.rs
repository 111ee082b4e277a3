//! Shared support of the OAI-PMH tests: a router over a test store, request
//! helpers, strict schema validation of every response, and a small reader
//! of the parts of responses the tests look at.

#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use chrono::Utc;
use quick_xml::events::Event;
use quick_xml::{Reader, XmlVersion};
use serde_json::json;
use sheaf_domain::model::{
    AclEntry, Expect, NewSchema, Permission, Provenance, RecordWrite, SchemaKind, Source,
};
use sheaf_domain::{RecordId, SchemaId, SourceId};
use sheaf_oai::OaiConfig;
use sheaf_store::DynStore;
use sheaf_store::testing::TestDb;
use sheaf_validate::{Limits, Registry, SchemaRequest};
use tower::ServiceExt;

pub const REPO: &str = "repo.example.org";
pub const BOOK_NS: &str = "urn:sheaf:test:book";
const BOOK_XSD: &[u8] = include_bytes!("../../../../fixtures/oai/book.xsd");
const PROVENANCE_XSD: &[u8] = include_bytes!("../../../../fixtures/oai/provenance.xsd");
const ENVELOPE_XSD: &[u8] = include_bytes!("../../../../fixtures/oai/envelope.xsd");

/// The configuration the tests use: small pages so lists split.
pub fn config(page_size: usize) -> OaiConfig {
    OaiConfig {
        repository_name: "Test repository".into(),
        admin_email: "oai@example.org".into(),
        repository_identifier: REPO.into(),
        public_base_url: Some("https://meta.example.org".into()),
        page_size,
        token_secret: None,
        token_ttl_hours: 24,
        crosswalks: Vec::new(),
    }
}

/// One response, validated.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// Strict validation of responses: the OAI-PMH schema with its payload
/// schemas (oai_dc, provenance, the test format) through the validation
/// crate's registry, on a store of its own.
struct Validator {
    registry: Registry,
    envelope: SchemaId,
    _db: TestDb,
}

impl Validator {
    async fn new() -> Self {
        let db = TestDb::sqlite().await;
        let registry = Registry::new(db.store.clone(), Limits::default());
        for (id, doc) in [
            ("provenance", PROVENANCE_XSD),
            ("book", BOOK_XSD),
            ("envelope", ENVELOPE_XSD),
        ] {
            registry
                .register(
                    SchemaRequest {
                        schema_id: SchemaId::parse(id).expect("id"),
                        kind: SchemaKind::Xsd,
                        document: doc.to_vec(),
                        metadata_prefix: None,
                        record: json!({}),
                    },
                    Expect::Any,
                )
                .await
                .unwrap_or_else(|e| panic!("register {id}: {e}"));
        }
        Validator {
            registry,
            envelope: SchemaId::parse("envelope").expect("id"),
            _db: db,
        }
    }

    /// Panics unless `body` is a valid OAI-PMH response.
    async fn check(&self, body: &str) {
        if let Err(e) = self
            .registry
            .validate(&self.envelope, None, body.as_bytes())
            .await
        {
            panic!("response is not valid OAI-PMH: {e}\n{body}");
        }
    }
}

/// An `/oai` router under test, whose every 200 response is validated.
pub struct Oai {
    pub app: Router,
    pub store: DynStore,
    validator: Arc<Validator>,
}

impl Oai {
    /// A router over `store`.
    pub async fn new(store: DynStore, config: OaiConfig) -> Self {
        Oai {
            app: sheaf_oai::router(store.clone(), config).expect("valid [oai] config"),
            store,
            validator: Arc::new(Validator::new().await),
        }
    }

    /// Another router (a restarted or second server), same validation.
    pub fn with_app(&self, store: DynStore, config: OaiConfig) -> Self {
        Oai {
            app: sheaf_oai::router(store.clone(), config).expect("valid [oai] config"),
            store,
            validator: self.validator.clone(),
        }
    }

    /// A GET with a raw query string.
    pub async fn get(&self, query: &str) -> Reply {
        self.send(
            Request::get(format!("/oai?{query}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    /// A form POST.
    pub async fn post(&self, form: &str) -> Reply {
        self.send(
            Request::post("/oai")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form.to_owned()))
                .expect("request"),
        )
        .await
    }

    /// Sends a request; a 200 with an uncompressed body is validated.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024)
            .await
            .expect("body");
        let body = String::from_utf8_lossy(&bytes).into_owned();
        if status == StatusCode::OK && headers.get("content-encoding").is_none() {
            self.validator.check(&body).await;
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Asserts an OAI-PMH error response with `code`.
    pub async fn expect_error(&self, query: &str, code: &str) -> Reply {
        let r = self.get(query).await;
        assert_eq!(r.status, StatusCode::OK, "{query}");
        assert_eq!(
            error_code(&r.body).as_deref(),
            Some(code),
            "{query}: {}",
            r.body
        );
        r
    }

    /// Follows a list to its end; returns every header and the
    /// responseDate of the first page. Checks cursor, completeListSize and
    /// expirationDate on every page.
    pub async fn harvest(&self, first_query: &str) -> (Vec<Header>, String) {
        let first = self.get(first_query).await;
        assert_eq!(first.status, StatusCode::OK);
        let response_date = texts(&first.body, "responseDate").remove(0);
        if error_code(&first.body).as_deref() == Some("noRecordsMatch") {
            return (Vec::new(), response_date);
        }
        assert_eq!(error_code(&first.body), None, "{}", first.body);
        let verb = first_query
            .split('&')
            .find_map(|p| p.strip_prefix("verb="))
            .expect("verb")
            .to_owned();
        let mut all = headers_of(&first.body);
        let mut page = first;
        let mut size = None;
        loop {
            let Some((token, cursor, complete, expires)) = token_of(&page.body) else {
                assert!(size.is_none(), "a split list must end with an empty token");
                return (all, response_date);
            };
            let got = headers_of(&page.body).len() as u64;
            let before = all.len() as u64 - got;
            assert_eq!(
                cursor,
                Some(before),
                "cursor counts what came before this page"
            );
            let complete = complete.expect("completeListSize");
            assert_eq!(
                *size.get_or_insert(complete),
                complete,
                "completeListSize is stable"
            );
            if token.is_empty() {
                assert!(!expires, "the final empty token has no expirationDate");
                assert_eq!(all.len() as u64, complete, "completeListSize is exact");
                return (all, response_date);
            }
            assert!(expires, "a token states when it expires");
            page = self
                .get(&format!("verb={verb}&resumptionToken={token}"))
                .await;
            assert_eq!(error_code(&page.body), None, "{}", page.body);
            all.extend(headers_of(&page.body));
        }
    }
}

/// The error code of an error response, if it is one.
pub fn error_code(body: &str) -> Option<String> {
    attr_of(body, "error", "code")
}

/// The attribute of the first element named `name`.
pub fn attr_of(body: &str, name: &str, attr: &str) -> Option<String> {
    let mut r = Reader::from_str(body);
    loop {
        match r.read_event().expect("well-formed") {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == name => {
                return e.try_get_attribute(attr).expect("attribute").map(|a| {
                    a.normalized_value(XmlVersion::Implicit1_0)
                        .expect("text")
                        .into_owned()
                });
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// The text of every element named `name` (local name).
pub fn texts(body: &str, name: &str) -> Vec<String> {
    let mut r = Reader::from_str(body);
    let mut out = Vec::new();
    let mut inside = false;
    let mut cur = String::new();
    loop {
        match r.read_event().expect("well-formed") {
            Event::Start(e) if e.local_name().as_ref() == name => {
                inside = true;
                cur.clear();
            }
            Event::Empty(e) if e.local_name().as_ref() == name => {
                out.push(String::new());
            }
            Event::Text(t) if inside => cur.push_str(&t.xml10_content()),
            Event::GeneralRef(g) if inside => {
                let s = format!("&{};", &*g);
                cur.push_str(&quick_xml::escape::unescape(&s).expect("entity"));
            }
            Event::End(e) if inside && e.local_name().as_ref() == name => {
                inside = false;
                out.push(cur.clone());
            }
            Event::Eof => return out,
            _ => {}
        }
    }
}

/// One header of a list or GetRecord response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub identifier: String,
    pub datestamp: String,
    pub deleted: bool,
    pub sets: Vec<String>,
}

/// The headers of a response, in order.
pub fn headers_of(body: &str) -> Vec<Header> {
    let mut r = Reader::from_str(body);
    let mut out = Vec::new();
    let mut cur: Option<Header> = None;
    let mut field = String::new();
    let mut text = String::new();
    loop {
        match r.read_event().expect("well-formed") {
            Event::Start(e) if e.local_name().as_ref() == "header" => {
                let deleted = e
                    .try_get_attribute("status")
                    .expect("attr")
                    .is_some_and(|a| a.value.as_ref() == "deleted");
                cur = Some(Header {
                    identifier: String::new(),
                    datestamp: String::new(),
                    deleted,
                    sets: Vec::new(),
                });
            }
            Event::Start(e) if cur.is_some() => {
                field = e.local_name().as_ref().to_owned();
                text.clear();
            }
            Event::Text(t) if cur.is_some() => text.push_str(&t.xml10_content()),
            Event::End(e) if e.local_name().as_ref() == "header" => {
                out.extend(cur.take());
            }
            Event::End(_) => {
                if let Some(h) = cur.as_mut() {
                    match field.as_str() {
                        "identifier" => h.identifier = text.clone(),
                        "datestamp" => h.datestamp = text.clone(),
                        "setSpec" => h.sets.push(text.clone()),
                        _ => {}
                    }
                }
            }
            Event::Eof => return out,
            _ => {}
        }
    }
}

/// The resumption token of a list page: (token text, cursor, size, has
/// expirationDate); `None` when the element is absent.
pub fn token_of(body: &str) -> Option<(String, Option<u64>, Option<u64>, bool)> {
    attr_of(body, "resumptionToken", "cursor")?;
    let text = texts(body, "resumptionToken").pop().unwrap_or_default();
    let num = |a: &str| attr_of(body, "resumptionToken", a).map(|v| v.parse().expect("number"));
    Some((
        text,
        num("cursor"),
        num("completeListSize"),
        attr_of(body, "resumptionToken", "expirationDate").is_some(),
    ))
}

pub fn sid(s: &str) -> SchemaId {
    SchemaId::parse(s).expect("schema id")
}

pub fn rid(s: &str) -> RecordId {
    RecordId::parse(s).expect("record id")
}

/// Registers the "book" format (XSD, namespace, prefix `book`).
pub async fn put_book_schema(store: &DynStore) {
    store
        .put_schema(
            NewSchema {
                schema_id: sid("book"),
                kind: SchemaKind::Xsd,
                namespace: Some(BOOK_NS.into()),
                metadata_prefix: "book".into(),
                document: BOOK_XSD.to_vec(),
                record: json!({"titles": [{"value": "Books"}]}),
            },
            Expect::Any,
        )
        .await
        .expect("schema");
}

/// Registers a JSON schema (not an OAI format of its own).
pub async fn put_json_schema(store: &DynStore) {
    store
        .put_schema(
            NewSchema {
                schema_id: sid("notes"),
                kind: SchemaKind::Json,
                namespace: None,
                metadata_prefix: "notes".into(),
                document: br#"{"type": "object"}"#.to_vec(),
                record: json!({}),
            },
            Expect::Any,
        )
        .await
        .expect("schema");
}

/// A book record write.
pub fn book(id: &str, title: &str) -> RecordWrite {
    RecordWrite {
        id: rid(id),
        schema_id: sid("book"),
        schema_version: 1,
        document: format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<book xmlns=\"{BOOK_NS}\"><title>{}</title><year>2024</year></book>\n",
            quick_xml::escape::escape(title)
        )
        .into_bytes(),
        record: json!({
            "titles": [{"value": title}],
            "creators": [{"familyName": "Doe", "givenName": "Jane"}],
            "publisher": "Example Press",
            "publicationYear": "2024",
            "subjects": [{"value": "testing"}],
        }),
        resources: vec![format!("https://data.example.org/{id}")],
        acl: vec![AclEntry {
            sid: "owner".into(),
            permission: Permission::Administrate,
        }],
        source_id: None,
        provenance: None,
    }
}

/// A book harvested from source `src`, in upstream sets `sets`.
pub fn harvested(id: &str, title: &str, src: &str, sets: &[&str]) -> RecordWrite {
    RecordWrite {
        source_id: Some(SourceId::parse(src).expect("source id")),
        provenance: Some(Provenance {
            harvest_time: Utc::now(),
            base_url: "https://upstream.example.org/oai".into(),
            oai_identifier: format!("oai:upstream.example.org:{id}"),
            datestamp: "2024-05-06T07:08:09Z".into(),
            metadata_namespace: Some(BOOK_NS.into()),
            set_specs: sets.iter().map(|s| s.to_string()).collect(),
        }),
        ..book(id, title)
    }
}

pub async fn put_source(store: &DynStore, id: &str) {
    store
        .upsert_source(&Source {
            id: SourceId::parse(id).expect("source id"),
            base_url: "https://upstream.example.org/oai".into(),
            enabled: true,
            config: json!({"name": "Upstream example"}),
            updated_at: Utc::now(),
        })
        .await
        .expect("source");
}

pub async fn put(store: &DynStore, w: RecordWrite) {
    store.put_record(w, Expect::Any).await.expect("put");
}

pub fn oai_id(id: &str) -> String {
    format!("oai:{REPO}:{id}")
}
