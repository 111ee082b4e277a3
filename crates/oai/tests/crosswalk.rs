//! XSLT crosswalks to oai_dc, list/GetRecord consistency for formats a
//! record cannot be disseminated in, and `[oai]` configs refused at
//! startup. Every 200 response is validated against OAI-PMH.xsd with its
//! payload schemas (oai_dc among them).

mod common;

use std::path::PathBuf;

use serde_json::json;
use sheaf_domain::model::{Expect, NewSchema, SchemaKind};
use sheaf_oai::{CrosswalkConfig, OaiConfig};
use sheaf_store::DynStore;
use sheaf_store::testing::TestDb;

use common::*;

const MARK: &str = "Crosswalked by book-to-oai_dc.xsl";

fn book_stylesheet() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/oai/crosswalks/book-to-oai_dc.xsl")
}

fn with_crosswalk(
    page: usize,
    schema: Option<&str>,
    namespace: Option<&str>,
    file: PathBuf,
) -> OaiConfig {
    OaiConfig {
        crosswalks: vec![CrosswalkConfig {
            schema: schema.map(str::to_owned),
            namespace: namespace.map(str::to_owned),
            stylesheet: file,
        }],
        ..config(page)
    }
}

async fn xslt_crosswalk_makes_oai_dc(store: DynStore) {
    put_book_schema(&store).await;
    put_json_schema(&store).await;
    for i in 0..3 {
        put(&store, book(&format!("b{i}"), &format!("Book & {i}"))).await;
    }
    put(
        &store,
        sheaf_domain::model::RecordWrite {
            schema_id: sid("notes"),
            document: br#"{"note": 1}"#.to_vec(),
            ..book("n1", "A note")
        },
    )
    .await;
    let oai = Oai::new(
        store.clone(),
        with_crosswalk(2, Some("book"), None, book_stylesheet()),
    )
    .await;

    let r = oai
        .get(&format!(
            "verb=GetRecord&identifier={}&metadataPrefix=oai_dc",
            oai_id("b1")
        ))
        .await;
    assert_eq!(error_code(&r.body), None, "{}", r.body);
    assert!(r.body.contains(MARK), "{}", r.body);
    assert!(
        r.body
            .contains(r#"<dc:title xml:lang="en">Book &amp; 1</dc:title>"#),
        "{}",
        r.body
    );
    assert!(r.body.contains("<dc:date>2024</dc:date>"), "{}", r.body);
    // The DataCite crosswalk was not used for it.
    assert!(!r.body.contains("Example Press"), "{}", r.body);

    // The native format is untouched.
    let r = oai
        .get(&format!(
            "verb=GetRecord&identifier={}&metadataPrefix=book",
            oai_id("b1")
        ))
        .await;
    assert!(!r.body.contains(MARK), "{}", r.body);

    // Lists: every book through the stylesheet, the JSON record through
    // the DataCite crosswalk, across pages.
    let mut query = "verb=ListRecords&metadataPrefix=oai_dc".to_owned();
    let mut marked = 0;
    let mut pages = 0;
    loop {
        let r = oai.get(&query).await;
        assert_eq!(error_code(&r.body), None, "{}", r.body);
        marked += r.body.matches(MARK).count();
        if r.body.contains("A note") {
            assert!(r.body.contains("Example Press"), "{}", r.body);
        }
        pages += 1;
        match token_of(&r.body) {
            Some((t, ..)) if !t.is_empty() => {
                query = format!("verb=ListRecords&resumptionToken={t}")
            }
            _ => break,
        }
    }
    assert_eq!(marked, 3);
    assert_eq!(pages, 2);

    // Matching by namespace works the same.
    let by_ns = oai.with_app(
        store.clone(),
        with_crosswalk(10, None, Some(BOOK_NS), book_stylesheet()),
    );
    let r = by_ns.get("verb=ListRecords&metadataPrefix=oai_dc").await;
    assert_eq!(r.body.matches(MARK).count(), 3, "{}", r.body);
}

async fn failed_transforms_fall_back_to_the_datacite_crosswalk(store: DynStore) {
    put_book_schema(&store).await;
    put(&store, book("b1", "One")).await;
    let dir = tempfile::tempdir().expect("tmp");
    let wrong = dir.path().join("wrong.xsl");
    std::fs::write(
        &wrong,
        r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
             <xsl:template match="/"><not-dc><xsl:value-of select="'x'"/></not-dc></xsl:template>
           </xsl:stylesheet>"#,
    )
    .expect("write");
    let oai = Oai::new(store.clone(), with_crosswalk(10, Some("book"), None, wrong)).await;
    for q in [
        format!(
            "verb=GetRecord&identifier={}&metadataPrefix=oai_dc",
            oai_id("b1")
        ),
        "verb=ListRecords&metadataPrefix=oai_dc".to_owned(),
    ] {
        let r = oai.get(&q).await;
        assert_eq!(error_code(&r.body), None, "{}", r.body);
        assert!(
            r.body
                .contains("<dc:publisher>Example Press</dc:publisher>"),
            "{}",
            r.body
        );
        assert!(!r.body.contains("not-dc"), "{}", r.body);
    }
}

/// A record whose schema version carries the prefix but is no OAI format
/// (no namespace) is not in the list of that prefix, exactly as GetRecord
/// refuses it; completeListSize and cursor count only what is listed.
async fn lists_hold_only_what_get_record_disseminates(store: DynStore) {
    store
        .put_schema(
            NewSchema {
                schema_id: sid("book"),
                kind: SchemaKind::Xsd,
                namespace: None,
                metadata_prefix: "book".into(),
                document: b"<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\"/>".to_vec(),
                record: json!({}),
            },
            Expect::Absent,
        )
        .await
        .expect("schema v1");
    for i in 0..2 {
        put(
            &store,
            sheaf_domain::model::RecordWrite {
                document: format!("<book><title>Old {i}</title></book>").into_bytes(),
                ..book(&format!("old{i}"), "Old")
            },
        )
        .await;
    }
    put_book_schema(&store).await; // version 2, with a namespace
    for i in 0..3 {
        put(
            &store,
            sheaf_domain::model::RecordWrite {
                schema_version: 2,
                ..book(&format!("new{i}"), "New")
            },
        )
        .await;
    }
    let oai = Oai::new(store.clone(), config(2)).await;
    oai.expect_error(
        &format!(
            "verb=GetRecord&identifier={}&metadataPrefix=book",
            oai_id("old0")
        ),
        "cannotDisseminateFormat",
    )
    .await;
    let (headers, _) = oai.harvest("verb=ListRecords&metadataPrefix=book").await;
    let got: Vec<String> = headers.iter().map(|h| h.identifier.clone()).collect();
    assert_eq!(
        got,
        (0..3)
            .map(|i| oai_id(&format!("new{i}")))
            .collect::<Vec<_>>()
    );
    let first = oai.get("verb=ListIdentifiers&metadataPrefix=book").await;
    assert_eq!(
        token_of(&first.body).and_then(|t| t.2),
        Some(3),
        "{}",
        first.body
    );
    // oai_dc still lists every record.
    let (all, _) = oai.harvest("verb=ListRecords&metadataPrefix=oai_dc").await;
    assert_eq!(all.len(), 5);
}

sheaf_store::backend_tests!(
    xslt_crosswalk_makes_oai_dc,
    failed_transforms_fall_back_to_the_datacite_crosswalk,
    lists_hold_only_what_get_record_disseminates,
);

#[tokio::test]
async fn unusable_configs_are_refused_at_startup() {
    let db = TestDb::sqlite().await;
    let refused = |c: OaiConfig| {
        sheaf_oai::router(db.store.clone(), c)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let bad_id = OaiConfig {
        repository_identifier: "not a domain".into(),
        ..config(10)
    };
    assert!(refused(bad_id).contains("repository_identifier"));

    let dir = tempfile::tempdir().expect("tmp");
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).expect("write");
        p
    };
    let head = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">"#;
    let cases = [
        (
            write(
                "import.xsl",
                &format!(r#"{head}<xsl:import href="http://example.org/a.xsl"/></xsl:stylesheet>"#),
            ),
            "xsl:import",
        ),
        (
            write(
                "doc.xsl",
                &format!(
                    r#"{head}<xsl:template match="/"><xsl:copy-of select="document('http://127.0.0.1:9/x')"/></xsl:template></xsl:stylesheet>"#
                ),
            ),
            "document()",
        ),
        (
            write(
                "broken.xsl",
                &format!(
                    r#"{head}<xsl:template match="/"><xsl:value-of select="(("/></xsl:template></xsl:stylesheet>"#
                ),
            ),
            "does not compile",
        ),
        (write("notxml.xsl", "<xsl:stylesheet"), "well-formed"),
        (dir.path().join("absent.xsl"), "absent.xsl"),
    ];
    for (file, why) in cases {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let e = refused(with_crosswalk(10, Some("book"), None, file));
        assert!(e.contains(&name) && e.contains(why), "{name}: {e}");
    }
    // The shipped example compiles.
    assert!(
        sheaf_oai::check_config(&with_crosswalk(10, Some("book"), None, book_stylesheet())).is_ok()
    );
}
