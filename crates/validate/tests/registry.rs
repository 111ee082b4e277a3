//! The registry on both databases: registration, versions, validation,
//! import resolution without the network, built-ins, the CLI helpers.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use sheaf_domain::SchemaId;
use sheaf_domain::model::{Expect, SchemaKind};
use sheaf_store::{DynStore, SchemaOutcome};
use sheaf_validate::{Limits, Registry, RegistryError, SchemaRequest, cli, rejection};

const XSD_V1: &[u8] = include_bytes!("../../../fixtures/metastore/schema-v1.xsd");
const XSD_V2: &[u8] = include_bytes!("../../../fixtures/metastore/schema-v2.xsd");
const XSD_V3: &[u8] = include_bytes!("../../../fixtures/metastore/schema-v3.xsd");
const XML_V3: &[u8] = include_bytes!("../../../fixtures/metastore/metadata-v3.xml");
const JSON_V1: &[u8] = include_bytes!("../../../fixtures/metastore/schema-v1.json");
const JSON_V2: &[u8] = include_bytes!("../../../fixtures/metastore/schema-v2.json");
const JSON_V3: &[u8] = include_bytes!("../../../fixtures/metastore/schema-v3.json");
const JSON_DOC_V3: &[u8] = include_bytes!("../../../fixtures/metastore/metadata-v3.json");
const DC_RECORD: &[u8] = include_bytes!("../../../fixtures/validate/oai_dc-record.xml");

fn id(s: &str) -> SchemaId {
    SchemaId::parse(s).unwrap()
}

fn request(schema_id: &str, kind: SchemaKind, document: &[u8]) -> SchemaRequest {
    SchemaRequest {
        schema_id: id(schema_id),
        kind,
        document: document.to_vec(),
        metadata_prefix: None,
        record: json!({ "titles": [{ "value": format!("Title for {schema_id}") }] }),
    }
}

fn registry(store: DynStore) -> Registry {
    Registry::new(store, Limits::default())
}

fn invalid(r: Result<impl std::fmt::Debug, RegistryError>) -> String {
    match r {
        Err(RegistryError::Invalid(report)) => report.to_string(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn does_not_compile(r: Result<impl std::fmt::Debug, RegistryError>) -> String {
    match r {
        Err(RegistryError::DoesNotCompile(report)) => report.to_string(),
        other => panic!("expected DoesNotCompile, got {other:?}"),
    }
}

/// Registers v1, v2, v3 of one schema, checking each outcome.
async fn register_three(r: &Registry, schema_id: &str, kind: SchemaKind, docs: [&[u8]; 3]) {
    let v1 = r
        .register(request(schema_id, kind, docs[0]), Expect::Absent)
        .await
        .unwrap();
    assert!(
        matches!(v1, SchemaOutcome::Created(ref v) if v.version == 1),
        "{v1:?}"
    );
    for (i, doc) in docs[1..].iter().enumerate() {
        let current = i as i64 + 1;
        let out = r
            .register(request(schema_id, kind, doc), Expect::Version(current))
            .await
            .unwrap();
        assert!(
            matches!(out, SchemaOutcome::Updated(ref v) if v.version == current + 1),
            "{out:?}"
        );
    }
}

async fn the_reference_xsd_example_validates_per_version(store: DynStore) {
    let r = registry(store);
    register_three(
        &r,
        "my_first_xsd",
        SchemaKind::Xsd,
        [XSD_V1, XSD_V2, XSD_V3],
    )
    .await;
    let s = r
        .store()
        .get_schema(&id("my_first_xsd"), Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.namespace.as_deref(),
        Some("http://www.example.org/schema/xsd/")
    );
    assert_eq!(s.metadata_prefix, "my_first_xsd");

    let text = invalid(r.validate(&id("my_first_xsd"), Some(1), XML_V3).await);
    assert!(text.starts_with("line 4: "), "{text}");
    assert!(text.contains("date"), "{text}");
    let text = invalid(r.validate(&id("my_first_xsd"), Some(2), XML_V3).await);
    assert!(text.contains("note"), "{text}");
    let v3 = r
        .validate(&id("my_first_xsd"), Some(3), XML_V3)
        .await
        .unwrap();
    assert_eq!(v3.version, 3);
    let current = r.validate(&id("my_first_xsd"), None, XML_V3).await.unwrap();
    assert_eq!(current.version, 3);
    // Cached validators keep their verdicts.
    invalid(r.validate(&id("my_first_xsd"), Some(1), XML_V3).await);
    r.validate_with(&v3, XML_V3).await.unwrap();
}

async fn the_reference_json_example_validates_per_version(store: DynStore) {
    let r = registry(store);
    register_three(
        &r,
        "my_first_json",
        SchemaKind::Json,
        [JSON_V1, JSON_V2, JSON_V3],
    )
    .await;
    let text = invalid(r.validate(&id("my_first_json"), Some(1), JSON_DOC_V3).await);
    assert!(text.contains("date") && text.contains("note"), "{text}");
    let text = invalid(r.validate(&id("my_first_json"), Some(2), JSON_DOC_V3).await);
    assert!(text.contains("note"), "{text}");
    assert_eq!(
        r.validate(&id("my_first_json"), None, JSON_DOC_V3)
            .await
            .unwrap()
            .version,
        3
    );
    let bad_date = br#"{"title": "t", "date": "02.07.2018"}"#;
    let text = invalid(r.validate(&id("my_first_json"), Some(3), bad_date).await);
    assert!(text.contains("/date"), "{text}");
}

async fn every_json_draft_is_accepted(store: DynStore) {
    let r = registry(store);
    for (n, uri) in [
        "http://json-schema.org/draft-04/schema#",
        "http://json-schema.org/draft-06/schema#",
        "http://json-schema.org/draft-07/schema#",
        "https://json-schema.org/draft/2019-09/schema",
        "https://json-schema.org/draft/2020-12/schema",
    ]
    .iter()
    .enumerate()
    {
        let schema = json!({"$schema": uri, "type": "object", "required": ["a"]});
        let sid = format!("draft_{n}");
        r.register(
            request(&sid, SchemaKind::Json, schema.to_string().as_bytes()),
            Expect::Absent,
        )
        .await
        .unwrap();
        r.validate(&id(&sid), None, br#"{"a": 1}"#).await.unwrap();
        invalid(r.validate(&id(&sid), None, br#"{"b": 1}"#).await);
    }
    let text = does_not_compile(
        r.register(
            request(
                "draft_x",
                SchemaKind::Json,
                br#"{"$schema": "http://example.org/my-meta"}"#,
            ),
            Expect::Absent,
        )
        .await,
    );
    assert!(text.contains("unsupported $schema"), "{text}");
}

async fn schemas_that_do_not_compile_are_refused_with_the_message(store: DynStore) {
    let r = registry(store.clone());
    let bad_xsd = br#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="a" type="xs:nosuchtype"/>
</xs:schema>"#;
    let text = does_not_compile(
        r.register(request("bad_xsd", SchemaKind::Xsd, bad_xsd), Expect::Absent)
            .await,
    );
    assert!(
        text.contains("line 2") && text.contains("nosuchtype"),
        "{text}"
    );
    let text = does_not_compile(
        r.register(request("not_xsd", SchemaKind::Xsd, XML_V3), Expect::Absent)
            .await,
    );
    assert!(text.contains("not an XML Schema"), "{text}");
    let text = does_not_compile(
        r.register(
            request("broken", SchemaKind::Xsd, b"<xs:schema"),
            Expect::Absent,
        )
        .await,
    );
    assert!(text.starts_with("line 1"), "{text}");
    let text = does_not_compile(
        r.register(
            request("bad_json", SchemaKind::Json, br#"{"type": 12}"#),
            Expect::Absent,
        )
        .await,
    );
    assert!(text.contains("/type"), "{text}");
    let text = does_not_compile(
        r.register(
            request(
                "json_syntax",
                SchemaKind::Json,
                b"{\n  \"type\": \"object\",\n}",
            ),
            Expect::Absent,
        )
        .await,
    );
    assert!(
        text.starts_with("line 3, column 1: not valid JSON"),
        "{text}"
    );
    assert!(store.list_schemas().await.unwrap().is_empty());
}

async fn unknown_schemas_and_versions_are_named(store: DynStore) {
    let r = registry(store);
    match r.validate(&id("nope"), None, XML_V3).await {
        Err(RegistryError::UnknownSchema(s)) => assert_eq!(s, "nope"),
        other => panic!("{other:?}"),
    }
    r.register(request("one", SchemaKind::Xsd, XSD_V1), Expect::Absent)
        .await
        .unwrap();
    match r.validate(&id("one"), Some(7), XML_V3).await {
        Err(RegistryError::UnknownVersion { schema_id, version }) => {
            assert_eq!((schema_id.as_str(), version), ("one", 7));
        }
        other => panic!("{other:?}"),
    }
}

async fn bad_documents_are_reported_with_position(store: DynStore) {
    let r = registry(store);
    r.register(request("x", SchemaKind::Xsd, XSD_V1), Expect::Absent)
        .await
        .unwrap();
    r.register(request("j", SchemaKind::Json, JSON_V1), Expect::Absent)
        .await
        .unwrap();
    let text = invalid(r.validate(&id("x"), None, b"<a>\n<b></a>").await);
    assert!(text.starts_with("line 2"), "{text}");
    let text = invalid(
        r.validate(&id("j"), None, b"{\"title\": \"a\",\n \"x\": }")
            .await,
    );
    assert!(
        text.starts_with("line 2, column 7: not valid JSON"),
        "{text}"
    );
    let text = invalid(
        r.validate(&id("j"), None, b"{\"title\": \"caf\xC3\x28\"}")
            .await,
    );
    assert!(text.starts_with("line 1, column"), "{text}");
    let text = invalid(
        r.validate(&id("x"), None, b"<?xml version=\"1.0\"?>\n<m>\xC3\x28</m>")
            .await,
    );
    assert!(
        text.starts_with("line 2") && text.to_lowercase().contains("utf-8"),
        "{text}"
    );
}

async fn over_size_documents_are_refused_before_parsing(store: DynStore) {
    let r = Registry::new(
        store,
        Limits {
            max_document_bytes: 64,
        },
    );
    r.register(
        request("j", SchemaKind::Json, br#"{"type": "object"}"#),
        Expect::Absent,
    )
    .await
    .unwrap();
    let doc = vec![b'{'; 65];
    match r.validate(&id("j"), None, &doc).await {
        Err(RegistryError::TooLarge {
            limit: 64,
            size: 65,
        }) => {}
        other => panic!("{other:?}"),
    }
    // Refused before any lookup: even for an unknown schema.
    assert!(matches!(
        r.validate(&id("unknown"), None, &doc).await,
        Err(RegistryError::TooLarge { .. })
    ));
    assert!(matches!(
        r.register(
            request("big", SchemaKind::Xsd, &[b' '; 100]),
            Expect::Absent
        )
        .await,
        Err(RegistryError::TooLarge { .. })
    ));
}

async fn builtins_register_oai_dc_once(store: DynStore) {
    let r = registry(store.clone());
    r.ensure_builtins().await.unwrap();
    r.ensure_builtins().await.unwrap();
    let s = store
        .get_schema(&id("oai_dc"), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.version, 1);
    assert_eq!(s.metadata_prefix, "oai_dc");
    assert_eq!(
        s.namespace.as_deref(),
        Some("http://www.openarchives.org/OAI/2.0/oai_dc/")
    );
    r.validate(&id("oai_dc"), None, DC_RECORD).await.unwrap();
    let bad = String::from_utf8(DC_RECORD.to_vec())
        .unwrap()
        .replace("dc:coverage", "dc:cover");
    let text = invalid(r.validate(&id("oai_dc"), None, bad.as_bytes()).await);
    assert!(text.contains("cover"), "{text}");
    // A fresh registry (a restart) compiles from the stored document.
    let again = registry(store);
    again
        .validate(&id("oai_dc"), None, DC_RECORD)
        .await
        .unwrap();
}

const TYPES_XSD: &str = r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
    targetNamespace="urn:example:types" xmlns="urn:example:types">
  <xs:simpleType name="code">
    <xs:restriction base="xs:string"><xs:pattern value="[A-Z]{3}"/></xs:restriction>
  </xs:simpleType>
</xs:schema>"#;

fn importing_xsd(import: &str) -> String {
    format!(
        r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
    targetNamespace="urn:example:rec" xmlns:t="urn:example:types" elementFormDefault="qualified">
  {import}
  <xs:element name="rec"><xs:complexType><xs:sequence>
    <xs:element name="code" type="t:code"/>
    <xs:element name="lang" minOccurs="0"><xs:complexType>
      <xs:attribute ref="xml:lang"/>
    </xs:complexType></xs:element>
  </xs:sequence></xs:complexType></xs:element>
</xs:schema>"#
    )
}

const XML_IMPORT: &str = r#"<xs:import namespace="http://www.w3.org/XML/1998/namespace" schemaLocation="http://www.w3.org/2001/xml.xsd"/>"#;

async fn imports_resolve_against_registered_and_bundled_schemas(store: DynStore) {
    let r = registry(store);
    r.register(
        request("types", SchemaKind::Xsd, TYPES_XSD.as_bytes()),
        Expect::Absent,
    )
    .await
    .unwrap();
    let good = br#"<rec xmlns="urn:example:rec"><code>ABC</code><lang xml:lang="en"/></rec>"#;
    let bad = br#"<rec xmlns="urn:example:rec"><code>abc</code></rec>"#;
    for (n, import) in [
        // by schema id as file name
        r#"<xs:import namespace="urn:example:types" schemaLocation="types.xsd"/>"#,
        // by namespace, whatever the location says
        r#"<xs:import namespace="urn:example:types" schemaLocation="https://elsewhere.example/t.xsd"/>"#,
        // by namespace without a location
        r#"<xs:import namespace="urn:example:types"/>"#,
    ]
    .iter()
    .enumerate()
    {
        let sid = format!("rec_{n}");
        let doc = importing_xsd(&format!("{import}{XML_IMPORT}"));
        r.register(request(&sid, SchemaKind::Xsd, doc.as_bytes()), Expect::Absent)
            .await
            .unwrap();
        r.validate(&id(&sid), None, good).await.unwrap();
        let text = invalid(r.validate(&id(&sid), None, bad).await);
        assert!(text.contains("[A-Z]{3}"), "{text}");
    }
}

async fn schemas_may_import_each_other(store: DynStore) {
    let r = registry(store);
    let a_v1 = r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:a">
  <xs:simpleType name="code"><xs:restriction base="xs:string"><xs:length value="2"/></xs:restriction></xs:simpleType>
</xs:schema>"#;
    let b = r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:b"
    xmlns:a="urn:a" elementFormDefault="qualified">
  <xs:import namespace="urn:a" schemaLocation="a.xsd"/>
  <xs:element name="b" type="a:code"/>
</xs:schema>"#;
    let a_v2 = r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:a"
    xmlns:b="urn:b" elementFormDefault="qualified">
  <xs:import namespace="urn:b" schemaLocation="b.xsd"/>
  <xs:simpleType name="code"><xs:restriction base="xs:string"><xs:length value="2"/></xs:restriction></xs:simpleType>
  <xs:element name="a"><xs:complexType><xs:sequence><xs:element ref="b:b"/></xs:sequence></xs:complexType></xs:element>
</xs:schema>"#;
    r.register(
        request("a", SchemaKind::Xsd, a_v1.as_bytes()),
        Expect::Absent,
    )
    .await
    .unwrap();
    r.register(request("b", SchemaKind::Xsd, b.as_bytes()), Expect::Absent)
        .await
        .unwrap();
    r.register(
        request("a", SchemaKind::Xsd, a_v2.as_bytes()),
        Expect::Version(1),
    )
    .await
    .unwrap();
    r.validate(
        &id("a"),
        Some(2),
        br#"<a xmlns="urn:a"><b xmlns="urn:b">XY</b></a>"#,
    )
    .await
    .unwrap();
    invalid(
        r.validate(
            &id("a"),
            Some(2),
            br#"<a xmlns="urn:a"><b xmlns="urn:b">XYZ</b></a>"#,
        )
        .await,
    );
}

/// A listener on 127.0.0.1 that counts the connections it accepts.
fn canary() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (addr, hits)
}

async fn schemas_importing_over_the_network_are_refused_without_a_connection(store: DynStore) {
    let r = registry(store.clone());
    let (addr, hits) = canary();
    for (n, element) in [
        format!(r#"<xs:import namespace="urn:evil" schemaLocation="http://{addr}/evil.xsd"/>"#),
        format!(r#"<xs:include schemaLocation="https://{addr}/evil.xsd"/>"#),
        format!(r#"<xs:redefine schemaLocation="http://{addr}/evil.xsd"/>"#),
        r#"<xs:include schemaLocation="/etc/passwd"/>"#.to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let doc = format!(
            r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">{element}
  <xs:element name="a" type="xs:string"/></xs:schema>"#
        );
        let text = does_not_compile(
            r.register(
                request(&format!("evil_{n}"), SchemaKind::Xsd, doc.as_bytes()),
                Expect::Absent,
            )
            .await,
        );
        assert!(text.contains("refused"), "{text}");
    }
    // XXE inside a schema document: refused for its DTD, nothing loaded.
    let doc = format!(
        r#"<?xml version="1.0"?>
<!DOCTYPE xs:schema [ <!ENTITY % p SYSTEM "http://{addr}/p.dtd"> %p; <!ENTITY e SYSTEM "http://{addr}/e"> ]>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:annotation><xs:documentation>&e;</xs:documentation></xs:annotation>
  <xs:element name="a"/>
</xs:schema>"#
    );
    let text = does_not_compile(
        r.register(
            request("evil_dtd", SchemaKind::Xsd, doc.as_bytes()),
            Expect::Absent,
        )
        .await,
    );
    assert!(text.contains("DOCTYPE"), "{text}");
    // JSON: a $ref to the network does not compile (no retriever built in).
    let doc = format!(r#"{{"$ref": "http://{addr}/evil.json"}}"#);
    does_not_compile(
        r.register(
            request("evil_json", SchemaKind::Json, doc.as_bytes()),
            Expect::Absent,
        )
        .await,
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    assert!(store.list_schemas().await.unwrap().is_empty());
}

async fn json_refs_resolve_against_registered_schemas(store: DynStore) {
    let r = registry(store);
    let common = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://schemas.example.org/common",
        "$defs": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}}
    });
    r.register(
        request("common", SchemaKind::Json, common.to_string().as_bytes()),
        Expect::Absent,
    )
    .await
    .unwrap();
    for (n, reference) in [
        "https://schemas.example.org/common#/$defs/code",
        "sheaf:///registered/common#/$defs/code",
    ]
    .iter()
    .enumerate()
    {
        let schema = json!({"type": "object", "properties": {"code": {"$ref": reference}}});
        let sid = format!("uses_{n}");
        r.register(
            request(&sid, SchemaKind::Json, schema.to_string().as_bytes()),
            Expect::Absent,
        )
        .await
        .unwrap();
        r.validate(&id(&sid), None, br#"{"code": "ABC"}"#)
            .await
            .unwrap();
        invalid(r.validate(&id(&sid), None, br#"{"code": "abc"}"#).await);
    }
}

async fn concurrent_validation_matches_serial(store: DynStore) {
    let r = registry(store);
    r.ensure_builtins().await.unwrap();
    register_three(
        &r,
        "my_first_xsd",
        SchemaKind::Xsd,
        [XSD_V1, XSD_V2, XSD_V3],
    )
    .await;
    register_three(
        &r,
        "my_first_json",
        SchemaKind::Json,
        [JSON_V1, JSON_V2, JSON_V3],
    )
    .await;
    let cases: Vec<(&str, Option<i64>, &[u8])> = vec![
        ("my_first_xsd", Some(1), XML_V3),
        ("my_first_xsd", Some(3), XML_V3),
        ("my_first_xsd", Some(2), XML_V3),
        ("oai_dc", None, DC_RECORD),
        ("oai_dc", None, XML_V3),
        ("my_first_json", Some(1), JSON_DOC_V3),
        ("my_first_json", Some(3), JSON_DOC_V3),
    ];
    let verdict = |r: Registry, (s, v, d): (&'static str, Option<i64>, &'static [u8])| async move {
        r.validate(&id(s), v, d)
            .await
            .map(|v| v.version)
            .map_err(|e| e.to_string())
    };
    let mut serial = Vec::new();
    for c in &cases {
        serial.push(verdict(r.clone(), *c).await);
    }
    let oks: Vec<bool> = serial.iter().map(Result::is_ok).collect();
    assert_eq!(oks, [false, true, false, true, false, false, true]);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let r = r.clone();
            let cases = cases.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for round in 0..30 {
                    let i = (t + round) % cases.len();
                    out.push((i, verdict(r.clone(), cases[i]).await));
                }
                out
            })
        })
        .collect();
    for t in tasks {
        for (i, v) in t.await.unwrap() {
            assert_eq!(v, serial[i], "case {i}");
        }
    }
    // The batch path agrees too.
    let v3 = r.schema(&id("my_first_xsd"), Some(1)).await.unwrap();
    let batch = r
        .validate_many(&v3, vec![XML_V3.to_vec(), b"<x/>".to_vec()])
        .await
        .unwrap();
    assert!(batch.iter().all(Result::is_err));
}

async fn rejections_keep_the_document_and_the_reason(store: DynStore) {
    let r = registry(store.clone());
    r.register(
        request("my_first_xsd", SchemaKind::Xsd, XSD_V1),
        Expect::Absent,
    )
    .await
    .unwrap();
    let schema = r.schema(&id("my_first_xsd"), None).await.unwrap();
    let err = r.validate_with(&schema, XML_V3).await.unwrap_err();
    let rej = rejection("cli", Some(&schema), XML_V3.to_vec(), &err);
    assert_eq!(rej.schema_version, Some(1));
    assert!(rej.message.contains("line 4"), "{}", rej.message);
    store.add_rejection(rej).await.unwrap();
    let stored = store.list_rejections(None, 10).await.unwrap();
    assert_eq!(stored[0].rejection.document, XML_V3);
}

async fn cli_exit_codes(store: DynStore) {
    let r = registry(store);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let v1 = write("v1.xsd", XSD_V1);
    let v3 = write("v3.xsd", XSD_V3);
    let json = write("s.json", JSON_V3);
    let doc = write("metadata-v3.xml", XML_V3);
    let jdoc = write("metadata-v3.json", JSON_DOC_V3);
    let broken = write("broken.xsd", b"<xs:schema");
    assert_eq!(cli::schemas_add(&r, "my_first_xsd", &v1, None).await, 0);
    assert_eq!(cli::schemas_add(&r, "my_first_xsd", &v3, None).await, 0);
    assert_eq!(
        cli::schemas_add(&r, "my_first_json", &json, Some("mfj".into())).await,
        0
    );
    assert_eq!(cli::schemas_add(&r, "bad", &broken, None).await, 1);
    assert_eq!(cli::schemas_add(&r, "bad id!", &v1, None).await, 2);
    assert_eq!(
        cli::schemas_add(&r, "x", &dir.path().join("missing"), None).await,
        2
    );
    assert_eq!(cli::schemas_list(&r).await, 0);
    let json_schema = r.schema(&id("my_first_json"), None).await.unwrap();
    assert_eq!(
        (json_schema.kind, json_schema.metadata_prefix.as_str()),
        (SchemaKind::Json, "mfj")
    );

    assert_eq!(
        cli::validate_files(&r, "my_first_xsd", std::slice::from_ref(&doc)).await,
        0
    );
    assert_eq!(
        cli::validate_files(&r, "my_first_xsd@2", std::slice::from_ref(&doc)).await,
        0
    );
    assert_eq!(
        cli::validate_files(&r, "my_first_xsd@1", std::slice::from_ref(&doc)).await,
        1
    );
    assert_eq!(
        cli::validate_files(&r, "my_first_json", std::slice::from_ref(&jdoc)).await,
        0
    );
    assert_eq!(
        cli::validate_files(&r, "my_first_xsd@1", &[doc.clone(), v1.clone()]).await,
        1
    );
    assert_eq!(
        cli::validate_files(&r, "nope", std::slice::from_ref(&doc)).await,
        2
    );
    assert_eq!(
        cli::validate_files(&r, "my_first_xsd@9", std::slice::from_ref(&doc)).await,
        2
    );
    assert_eq!(
        cli::validate_files(&r, "my_first_xsd@x", std::slice::from_ref(&doc)).await,
        2
    );
    assert_eq!(cli::validate_files(&r, "my_first_xsd", &[]).await, 2);
}

sheaf_store::backend_tests!(
    the_reference_xsd_example_validates_per_version,
    the_reference_json_example_validates_per_version,
    every_json_draft_is_accepted,
    schemas_that_do_not_compile_are_refused_with_the_message,
    unknown_schemas_and_versions_are_named,
    bad_documents_are_reported_with_position,
    over_size_documents_are_refused_before_parsing,
    builtins_register_oai_dc_once,
    imports_resolve_against_registered_and_bundled_schemas,
    schemas_may_import_each_other,
    schemas_importing_over_the_network_are_refused_without_a_connection,
    json_refs_resolve_against_registered_schemas,
    concurrent_validation_matches_serial,
    rejections_keep_the_document_and_the_reason,
    cli_exit_codes,
);

#[test]
fn specs_parse() {
    assert_eq!(cli::parse_spec("a@3").unwrap(), (id("a"), Some(3)));
    assert_eq!(cli::parse_spec("a").unwrap(), (id("a"), None));
    assert!(cli::parse_spec("a@0").is_err());
    assert!(cli::parse_spec("@1").is_err());
}
