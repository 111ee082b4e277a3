//! The `/oai` face against a real store, on SQLite and PostgreSQL. Every
//! 200 response is validated against OAI-PMH.xsd with its payload schemas.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, SecondsFormat, Utc};
use sheaf_domain::model::{Expect, NewSchema, SchemaKind};
use sheaf_store::DynStore;
use sheaf_store::testing::TestDb;

use common::*;

fn seconds(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn ids(headers: &[Header]) -> Vec<String> {
    headers.iter().map(|h| h.identifier.clone()).collect()
}

async fn identify_describes_the_repository(store: DynStore) {
    put_book_schema(&store).await;
    put(&store, book("b1", "One")).await;
    let oai = Oai::new(store.clone(), config(10)).await;
    let r = oai.get("verb=Identify").await;
    assert_eq!(error_code(&r.body), None, "{}", r.body);
    assert_eq!(texts(&r.body, "baseURL"), ["https://meta.example.org/oai"]);
    assert_eq!(texts(&r.body, "request"), ["https://meta.example.org/oai"]);
    assert_eq!(
        attr_of(&r.body, "request", "verb").as_deref(),
        Some("Identify")
    );
    assert_eq!(texts(&r.body, "repositoryName"), ["Test repository"]);
    assert_eq!(texts(&r.body, "protocolVersion"), ["2.0"]);
    assert_eq!(texts(&r.body, "adminEmail"), ["oai@example.org"]);
    assert_eq!(texts(&r.body, "deletedRecord"), ["persistent"]);
    assert_eq!(texts(&r.body, "granularity"), ["YYYY-MM-DDThh:mm:ssZ"]);
    assert_eq!(texts(&r.body, "compression"), ["gzip", "deflate"]);
    assert_eq!(texts(&r.body, "repositoryIdentifier"), [REPO]);
    assert_eq!(texts(&r.body, "delimiter"), [":"]);
    let rec = store
        .get_record(&rid("b1"), None)
        .await
        .expect("get")
        .expect("b1");
    assert_eq!(
        texts(&r.body, "earliestDatestamp"),
        [seconds(rec.changed_at)]
    );
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/xml; charset=utf-8")
    );

    // Without a configured public URL, the base URL is the one requested.
    let mut cfg = config(10);
    cfg.public_base_url = None;
    let direct = oai.with_app(store.clone(), cfg);
    let r = direct
        .send(
            Request::get("/oai?verb=Identify")
                .header("host", "mirror.example.net:8080")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(
        texts(&r.body, "baseURL"),
        ["http://mirror.example.net:8080/oai"]
    );

    // Behind a path prefix in the public URL.
    let mut cfg = config(10);
    cfg.public_base_url = Some("https://example.org/sheaf/".into());
    let prefixed = oai.with_app(store, cfg);
    let r = prefixed.get("verb=Identify").await;
    assert_eq!(texts(&r.body, "baseURL"), ["https://example.org/sheaf/oai"]);
}

async fn post_answers_like_get(store: DynStore) {
    put_book_schema(&store).await;
    for i in 0..3 {
        put(&store, book(&format!("b{i}"), "T")).await;
    }
    let oai = Oai::new(store, config(2)).await;
    let g = oai.get("verb=ListRecords&metadataPrefix=book").await;
    let p = oai.post("verb=ListRecords&metadataPrefix=book").await;
    assert_eq!(error_code(&p.body), None, "{}", p.body);
    assert_eq!(headers_of(&g.body), headers_of(&p.body));
    let (token, ..) = token_of(&p.body).expect("token");
    let next = oai
        .post(&format!("verb=ListRecords&resumptionToken={token}"))
        .await;
    assert_eq!(ids(&headers_of(&next.body)), [oai_id("b2")]);
    let id = oai
        .post(&format!(
            "verb=GetRecord&metadataPrefix=oai_dc&identifier={}",
            oai_id("b1")
        ))
        .await;
    assert_eq!(ids(&headers_of(&id.body)), [oai_id("b1")]);
    // A POST repeating in its body what its query string says is repeated.
    let both = oai
        .send(
            Request::post("/oai?verb=Identify")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from("verb=Identify"))
                .expect("request"),
        )
        .await;
    assert_eq!(error_code(&both.body).as_deref(), Some("badVerb"));
}

async fn responses_are_compressed_on_request(store: DynStore) {
    let oai = Oai::new(store, config(10)).await;
    for enc in ["gzip", "deflate"] {
        let r = oai
            .send(
                Request::get("/oai?verb=Identify")
                    .header("accept-encoding", enc)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.headers
                .get("content-encoding")
                .and_then(|v| v.to_str().ok()),
            Some(enc)
        );
    }
}

async fn bad_verb(store: DynStore) {
    let oai = Oai::new(store, config(10)).await;
    for q in [
        "",
        "verb=Frobnicate",
        "verb=Identify&verb=Identify",
        "verb=identify",
    ] {
        let r = oai.expect_error(q, "badVerb").await;
        assert_eq!(
            attr_of(&r.body, "request", "verb"),
            None,
            "no attributes after badVerb"
        );
        assert_eq!(texts(&r.body, "request"), ["https://meta.example.org/oai"]);
    }
}

async fn bad_argument(store: DynStore) {
    put_book_schema(&store).await;
    let oai = Oai::new(store, config(10)).await;
    for q in [
        "verb=Identify&extra=1",
        "verb=GetRecord&metadataPrefix=oai_dc",
        "verb=GetRecord&identifier=oai:x:y",
        "verb=ListRecords",
        "verb=ListIdentifiers&from=2020-01-01",
        "verb=ListRecords&metadataPrefix=oai_dc&metadataPrefix=book",
        "verb=ListRecords&metadataPrefix=oai_dc&from=2020-01-01&until=2020-02-01T00:00:00Z",
        "verb=ListRecords&metadataPrefix=oai_dc&from=2020-02-01&until=2020-01-01",
        "verb=ListRecords&metadataPrefix=oai_dc&from=2020-02-01T10:00:00Z&until=2020-02-01T09:59:59Z",
        "verb=ListRecords&metadataPrefix=oai_dc&from=01.02.2020",
        "verb=ListRecords&metadataPrefix=oai_dc&until=2020-02-01T10:00:00.5Z",
        "verb=ListRecords&metadataPrefix=oai_dc&from=2020-02-01T10:00:00%2B01:00",
        "verb=ListRecords&resumptionToken=abc&metadataPrefix=oai_dc",
        "verb=ListSets&resumptionToken=abc&set=a",
        "verb=ListRecords&metadataPrefix=oai%20dc",
        "verb=ListRecords&metadataPrefix=oai_dc&set=a::b",
        "verb=ListRecords&metadataPrefix=",
        "verb=ListMetadataFormats&metadataPrefix=oai_dc",
    ] {
        let r = oai.expect_error(q, "badArgument").await;
        assert_eq!(
            attr_of(&r.body, "request", "verb"),
            None,
            "no attributes after badArgument"
        );
    }
}

async fn bad_resumption_token(store: DynStore) {
    put_book_schema(&store).await;
    for i in 0..4 {
        put(&store, book(&format!("b{i}"), "T")).await;
    }
    let oai = Oai::new(store.clone(), config(2)).await;
    let first = oai.get("verb=ListIdentifiers&metadataPrefix=book").await;
    let (token, ..) = token_of(&first.body).expect("token");
    let r = oai
        .expect_error(
            "verb=ListIdentifiers&resumptionToken=not-a-token",
            "badResumptionToken",
        )
        .await;
    assert_eq!(
        attr_of(&r.body, "request", "resumptionToken").as_deref(),
        Some("not-a-token"),
        "arguments are echoed for errors other than badVerb/badArgument"
    );
    // Tampered: one character changed.
    let mut tampered: Vec<char> = token.chars().collect();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    oai.expect_error(
        &format!("verb=ListIdentifiers&resumptionToken={tampered}"),
        "badResumptionToken",
    )
    .await;
    // A token continues its own verb only.
    oai.expect_error(
        &format!("verb=ListRecords&resumptionToken={token}"),
        "badResumptionToken",
    )
    .await;
    oai.expect_error(
        &format!("verb=ListSets&resumptionToken={token}"),
        "badResumptionToken",
    )
    .await;
    // Signed with another key.
    let mut other = config(2);
    other.token_secret = Some("another key".into());
    oai.with_app(store.clone(), other)
        .expect_error(
            &format!("verb=ListIdentifiers&resumptionToken={token}"),
            "badResumptionToken",
        )
        .await;
    // Expired.
    let mut short = config(2);
    short.token_ttl_hours = 0;
    let short = oai.with_app(store, short);
    let first = short.get("verb=ListIdentifiers&metadataPrefix=book").await;
    let (token, ..) = token_of(&first.body).expect("token");
    let r = short
        .expect_error(
            &format!("verb=ListIdentifiers&resumptionToken={token}"),
            "badResumptionToken",
        )
        .await;
    assert!(r.body.contains("expired"), "{}", r.body);
}

async fn cannot_disseminate_format(store: DynStore) {
    put_book_schema(&store).await;
    put_json_schema(&store).await;
    put(&store, book("b1", "T")).await;
    let oai = Oai::new(store, config(10)).await;
    oai.expect_error(
        "verb=ListRecords&metadataPrefix=marc21",
        "cannotDisseminateFormat",
    )
    .await;
    oai.expect_error(
        "verb=ListIdentifiers&metadataPrefix=marc21",
        "cannotDisseminateFormat",
    )
    .await;
    // JSON schemas are not OAI formats of their own.
    oai.expect_error(
        "verb=ListRecords&metadataPrefix=notes",
        "cannotDisseminateFormat",
    )
    .await;
    let r = oai
        .expect_error(
            &format!(
                "verb=GetRecord&metadataPrefix=notes&identifier={}",
                oai_id("b1")
            ),
            "cannotDisseminateFormat",
        )
        .await;
    assert_eq!(
        attr_of(&r.body, "request", "metadataPrefix").as_deref(),
        Some("notes")
    );
}

async fn id_does_not_exist(store: DynStore) {
    put_book_schema(&store).await;
    put(&store, book("b1", "T")).await;
    let oai = Oai::new(store, config(10)).await;
    for id in [
        oai_id("missing"),
        "oai:other.example.org:b1".to_owned(),
        "b1".to_owned(),
        format!("oai:{REPO}:bad%20id"),
    ] {
        oai.expect_error(
            &format!("verb=GetRecord&metadataPrefix=oai_dc&identifier={id}"),
            "idDoesNotExist",
        )
        .await;
        oai.expect_error(
            &format!("verb=ListMetadataFormats&identifier={id}"),
            "idDoesNotExist",
        )
        .await;
    }
}

async fn no_records_match(store: DynStore) {
    put_book_schema(&store).await;
    put(&store, book("b1", "T")).await;
    let oai = Oai::new(store, config(10)).await;
    for q in [
        "verb=ListRecords&metadataPrefix=oai_dc&from=2999-01-01",
        "verb=ListIdentifiers&metadataPrefix=book&until=2000-01-01T00:00:00Z",
        "verb=ListRecords&metadataPrefix=oai_dc&set=schema:other",
        "verb=ListRecords&metadataPrefix=oai_dc&set=source:nowhere",
        "verb=ListRecords&metadataPrefix=oai_dc&set=elsewhere",
    ] {
        oai.expect_error(q, "noRecordsMatch").await;
    }
}

/// `noMetadataFormats` cannot arise: every item — live, deleted, of an XML
/// or a JSON schema — is disseminated as oai_dc at least.
async fn no_metadata_formats_never_arises(store: DynStore) {
    put_book_schema(&store).await;
    put_json_schema(&store).await;
    put(&store, book("b1", "T")).await;
    put(
        &store,
        sheaf_domain::model::RecordWrite {
            schema_id: sid("notes"),
            document: br#"{"title": "n"}"#.to_vec(),
            ..book("n1", "Note")
        },
    )
    .await;
    store
        .delete_record(&rid("b1"), Expect::Any, None)
        .await
        .expect("delete");
    let oai = Oai::new(store, config(10)).await;
    for id in ["b1", "n1"] {
        let r = oai
            .get(&format!(
                "verb=ListMetadataFormats&identifier={}",
                oai_id(id)
            ))
            .await;
        assert_eq!(error_code(&r.body), None, "{}", r.body);
        assert!(texts(&r.body, "metadataPrefix").contains(&"oai_dc".to_owned()));
    }
}

async fn no_set_hierarchy(store: DynStore) {
    let oai = Oai::new(store, config(10)).await;
    oai.expect_error("verb=ListSets", "noSetHierarchy").await;
    oai.expect_error(
        "verb=ListRecords&metadataPrefix=oai_dc&set=schema:x",
        "noSetHierarchy",
    )
    .await;
    // And an empty repository has no records either.
    oai.expect_error("verb=ListRecords&metadataPrefix=oai_dc", "noRecordsMatch")
        .await;
}

async fn metadata_formats_are_the_schemas_with_prefixes(store: DynStore) {
    put_book_schema(&store).await;
    put_json_schema(&store).await;
    put(&store, book("b1", "T")).await;
    put(
        &store,
        sheaf_domain::model::RecordWrite {
            schema_id: sid("notes"),
            document: br#"{"title": "n"}"#.to_vec(),
            ..book("n1", "Note")
        },
    )
    .await;
    let oai = Oai::new(store, config(10)).await;
    let all = oai.get("verb=ListMetadataFormats").await;
    assert_eq!(texts(&all.body, "metadataPrefix"), ["oai_dc", "book"]);
    assert_eq!(
        texts(&all.body, "schema"),
        [
            "http://www.openarchives.org/OAI/2.0/oai_dc.xsd",
            "https://meta.example.org/api/v2/schemas/book?version=1"
        ]
    );
    assert_eq!(
        texts(&all.body, "metadataNamespace"),
        ["http://www.openarchives.org/OAI/2.0/oai_dc/", BOOK_NS]
    );
    let b = oai
        .get(&format!(
            "verb=ListMetadataFormats&identifier={}",
            oai_id("b1")
        ))
        .await;
    assert_eq!(texts(&b.body, "metadataPrefix"), ["oai_dc", "book"]);
    let n = oai
        .get(&format!(
            "verb=ListMetadataFormats&identifier={}",
            oai_id("n1")
        ))
        .await;
    assert_eq!(texts(&n.body, "metadataPrefix"), ["oai_dc"]);
}

async fn sets_are_schemas_sources_and_upstream_sets(store: DynStore) {
    put_book_schema(&store).await;
    put_json_schema(&store).await;
    put_source(&store, "up").await;
    put(&store, harvested("h1", "One", "up", &["a"])).await;
    put(&store, harvested("h2", "Two", "up", &["a:b", "c"])).await;
    put(&store, book("b1", "Local")).await;
    let oai = Oai::new(store, config(2)).await;
    let mut specs = Vec::new();
    let mut names = Vec::new();
    let mut page = oai.get("verb=ListSets").await;
    let mut cursor = 0;
    loop {
        assert_eq!(error_code(&page.body), None, "{}", page.body);
        specs.extend(texts(&page.body, "setSpec"));
        names.extend(texts(&page.body, "setName"));
        let (token, c, size, _) = token_of(&page.body).expect("split list");
        assert_eq!(c, Some(cursor));
        assert_eq!(size, Some(6));
        cursor = specs.len() as u64;
        if token.is_empty() {
            break;
        }
        page = oai
            .get(&format!("verb=ListSets&resumptionToken={token}"))
            .await;
    }
    assert_eq!(
        specs,
        [
            "schema:book",
            "schema:notes",
            "source:up",
            "source:up:a",
            "source:up:a:b",
            "source:up:c"
        ]
    );
    assert!(names.iter().all(|n| !n.is_empty()));
    assert!(names[2].contains("Upstream example"), "{names:?}");

    // Headers name the sets their records are in, and sets select.
    let h = oai
        .get(&format!(
            "verb=GetRecord&metadataPrefix=book&identifier={}",
            oai_id("h2")
        ))
        .await;
    assert_eq!(
        headers_of(&h.body)[0].sets,
        ["schema:book", "source:up", "source:up:a:b", "source:up:c"]
    );
    let (up, _) = oai
        .harvest("verb=ListIdentifiers&metadataPrefix=book&set=source:up")
        .await;
    assert_eq!(ids(&up), [oai_id("h1"), oai_id("h2")]);
    let (c, _) = oai
        .harvest("verb=ListIdentifiers&metadataPrefix=book&set=source:up:c")
        .await;
    assert_eq!(ids(&c), [oai_id("h2")]);
    let (all, _) = oai
        .harvest("verb=ListIdentifiers&metadataPrefix=oai_dc&set=schema:book")
        .await;
    assert_eq!(all.len(), 3);
}

async fn get_record_in_every_format(store: DynStore) {
    put_book_schema(&store).await;
    put_source(&store, "up").await;
    // A schema whose documents already are oai_dc.
    store
        .put_schema(
            NewSchema {
                schema_id: sid("dc"),
                kind: SchemaKind::Xsd,
                namespace: Some("http://www.openarchives.org/OAI/2.0/oai_dc/".into()),
                metadata_prefix: "oai_dc".into(),
                document: b"<schema/>".to_vec(),
                record: serde_json::json!({}),
            },
            Expect::Any,
        )
        .await
        .expect("schema");
    put(&store, book("b1", "Tom & Jerry <3")).await;
    put(&store, harvested("h1", "Harvested", "up", &["a"])).await;
    put(
        &store,
        sheaf_domain::model::RecordWrite {
            schema_id: sid("dc"),
            document: include_bytes!("../../../fixtures/validate/oai_dc-record.xml").to_vec(),
            record: serde_json::json!({"titles": [{"value": "ignored: the document is oai_dc"}]}),
            ..book("d1", "x")
        },
    )
    .await;
    put(&store, book("gone", "Gone")).await;
    store
        .delete_record(&rid("gone"), Expect::Any, None)
        .await
        .expect("delete");
    let oai = Oai::new(store.clone(), config(10)).await;
    let get = |id: &str, prefix: &str| {
        format!(
            "verb=GetRecord&metadataPrefix={prefix}&identifier={}",
            oai_id(id)
        )
    };

    let native = oai.get(&get("b1", "book")).await;
    assert_eq!(texts(&native.body, "title"), ["Tom & Jerry <3"]);
    let rec = store
        .get_record(&rid("b1"), None)
        .await
        .expect("get")
        .expect("b1");
    let h = &headers_of(&native.body)[0];
    assert_eq!(
        h.datestamp,
        seconds(rec.changed_at),
        "datestamps are change times"
    );
    assert!(!h.deleted);
    assert_eq!(
        texts(&native.body, "provenance").len(),
        0,
        "deposited records have no provenance"
    );

    let dc = oai.get(&get("b1", "oai_dc")).await;
    assert_eq!(texts(&dc.body, "title"), ["Tom & Jerry <3"]);
    assert_eq!(texts(&dc.body, "creator"), ["Doe, Jane"]);
    assert_eq!(texts(&dc.body, "publisher"), ["Example Press"]);
    assert_eq!(texts(&dc.body, "date"), ["2024"]);
    assert_eq!(texts(&dc.body, "subject"), ["testing"]);
    assert!(texts(&dc.body, "identifier").contains(&"https://data.example.org/b1".to_owned()));
    let start = dc.body.find("<oai_dc:dc").expect("oai_dc payload");
    let end = dc.body.find("</oai_dc:dc>").expect("end") + "</oai_dc:dc>".len();
    sheaf_validate::validate_against_bundled("oai_dc.xsd", &dc.body.as_bytes()[start..end])
        .expect("the oai_dc payload is valid against oai_dc.xsd");

    // Harvested records carry their provenance.
    for (prefix, altered) in [("book", "false"), ("oai_dc", "true")] {
        let r = oai.get(&get("h1", prefix)).await;
        assert_eq!(
            texts(&r.body, "baseURL"),
            ["https://upstream.example.org/oai"]
        );
        assert_eq!(
            texts(&r.body, "identifier"),
            std::iter::once(oai_id("h1"))
                .chain((prefix == "oai_dc").then(|| "https://data.example.org/h1".to_owned()))
                .chain(["oai:upstream.example.org:h1".to_owned()])
                .collect::<Vec<_>>()
        );
        assert_eq!(
            attr_of(&r.body, "originDescription", "altered").as_deref(),
            Some(altered)
        );
        assert_eq!(texts(&r.body, "metadataNamespace"), [BOOK_NS]);
        assert_eq!(texts(&r.body, "datestamp")[1], "2024-05-06T07:08:09Z");
    }

    // Stored Dublin Core is served as stored.
    let d = oai.get(&get("d1", "oai_dc")).await;
    assert_eq!(
        texts(&d.body, "creator"),
        ["Andersson, Maria", "Okafor, Chinedu", "Lindqvist, Per"]
    );

    // Tombstones: a deleted header, no metadata, in every format it had.
    for prefix in ["book", "oai_dc"] {
        let g = oai.get(&get("gone", prefix)).await;
        let h = &headers_of(&g.body)[0];
        assert!(h.deleted, "{}", g.body);
        assert!(!g.body.contains("<metadata>"));
    }
}

async fn lists_page_with_exact_cursor_and_size(store: DynStore) {
    put_book_schema(&store).await;
    for i in 0..25 {
        put(&store, book(&format!("b{i:02}"), "T")).await;
    }
    store
        .delete_record(&rid("b03"), Expect::Any, None)
        .await
        .expect("delete");
    let oai = Oai::new(store.clone(), config(10)).await;
    for q in [
        "verb=ListRecords&metadataPrefix=oai_dc",
        "verb=ListRecords&metadataPrefix=book",
        "verb=ListIdentifiers&metadataPrefix=book",
    ] {
        let (headers, _) = oai.harvest(q).await;
        let mut want: Vec<String> = (0..25).map(|i| oai_id(&format!("b{i:02}"))).collect();
        // The deleted record moved to the end of the change order.
        want.retain(|i| *i != oai_id("b03"));
        want.push(oai_id("b03"));
        assert_eq!(ids(&headers), want, "{q}");
        assert_eq!(headers.iter().filter(|h| h.deleted).count(), 1);
    }
    // Exactly one page: no resumptionToken at all.
    let one = oai.with_app(store, config(25));
    let r = one.get("verb=ListIdentifiers&metadataPrefix=book").await;
    assert_eq!(headers_of(&r.body).len(), 25);
    assert_eq!(token_of(&r.body), None);
    // Re-issuing a token returns the same page (idempotent).
    let first = oai.get("verb=ListIdentifiers&metadataPrefix=book").await;
    let (token, ..) = token_of(&first.body).expect("token");
    let a = oai
        .get(&format!("verb=ListIdentifiers&resumptionToken={token}"))
        .await;
    let b = oai
        .get(&format!("verb=ListIdentifiers&resumptionToken={token}"))
        .await;
    assert_eq!(headers_of(&a.body), headers_of(&b.body));
}

async fn selective_harvesting_by_date(store: DynStore) {
    put_book_schema(&store).await;
    put(&store, book("early", "T")).await;
    let early = store
        .get_record(&rid("early"), None)
        .await
        .expect("get")
        .expect("early");
    let oai = Oai::new(store.clone(), config(10)).await;
    let day = early.changed_at.format("%Y-%m-%d").to_string();
    let (h, _) = oai
        .harvest(&format!(
            "verb=ListIdentifiers&metadataPrefix=book&from={day}&until={day}"
        ))
        .await;
    assert_eq!(ids(&h), [oai_id("early")]);
    let at = seconds(early.changed_at);
    let (h, _) = oai
        .harvest(&format!(
            "verb=ListIdentifiers&metadataPrefix=book&from={at}&until={at}"
        ))
        .await;
    assert_eq!(ids(&h), [oai_id("early")], "from and until are inclusive");
    let before = seconds(early.changed_at - chrono::TimeDelta::seconds(1));
    oai.expect_error(
        &format!("verb=ListIdentifiers&metadataPrefix=book&until={before}"),
        "noRecordsMatch",
    )
    .await;
    let r = oai
        .get(&format!("verb=ListRecords&metadataPrefix=book&from={day}"))
        .await;
    assert_eq!(
        attr_of(&r.body, "request", "from").as_deref(),
        Some(day.as_str())
    );
}

/// Records added, changed and deleted while a harvest pages: the harvest
/// returns its snapshot, each record exactly once; the next incremental
/// harvest (from = the first responseDate) picks up every change.
async fn snapshot_holds_while_records_change(store: DynStore) {
    put_book_schema(&store).await;
    for i in 0..30 {
        put(&store, book(&format!("r{i:02}"), "v1")).await;
    }
    let oai = Oai::new(store.clone(), config(7)).await;
    let first = oai.get("verb=ListRecords&metadataPrefix=book").await;
    let response_date = texts(&first.body, "responseDate").remove(0);
    let mut seen = headers_of(&first.body);
    assert_eq!(seen.len(), 7);
    let (mut token, ..) = token_of(&first.body).expect("token");

    let changed: Vec<String> = ["r01", "r03", "r10", "r20", "r29"]
        .map(String::from)
        .to_vec();
    let deleted: Vec<String> = ["r02", "r15", "r28"].map(String::from).to_vec();
    let added: Vec<String> = (0..5).map(|i| format!("new{i}")).collect();
    for id in &changed {
        put(&store, book(id, "v2")).await;
    }
    for id in &deleted {
        store
            .delete_record(&rid(id), Expect::Any, None)
            .await
            .expect("delete");
    }
    for id in &added {
        put(&store, book(id, "v1")).await;
    }
    let mut pages = 1;
    while !token.is_empty() {
        let page = oai
            .get(&format!("verb=ListRecords&resumptionToken={token}"))
            .await;
        assert_eq!(error_code(&page.body), None, "{}", page.body);
        assert_eq!(
            texts(&page.body, "responseDate"),
            std::slice::from_ref(&response_date),
            "one snapshot time"
        );
        // Snapshot content: every record as it was when the list started.
        assert!(texts(&page.body, "title").iter().all(|t| t == "v1"));
        seen.extend(headers_of(&page.body));
        token = token_of(&page.body).expect("token element").0;
        pages += 1;
    }
    assert_eq!(pages, 5);
    let got: Vec<String> = ids(&seen);
    let want: Vec<String> = (0..30).map(|i| oai_id(&format!("r{i:02}"))).collect();
    assert_eq!(
        got, want,
        "each snapshot record exactly once, in change order"
    );
    assert!(seen.iter().all(|h| !h.deleted));

    let (next, _) = oai
        .harvest(&format!(
            "verb=ListRecords&metadataPrefix=book&from={response_date}"
        ))
        .await;
    let next_ids: BTreeSet<String> = ids(&next).into_iter().collect();
    for id in changed.iter().chain(&deleted).chain(&added) {
        assert!(
            next_ids.contains(&oai_id(id)),
            "the incremental harvest misses {id}"
        );
    }
    for h in &next {
        let local = h.identifier.rsplit(':').next().expect("id");
        assert_eq!(h.deleted, deleted.iter().any(|d| d == local), "{h:?}");
    }
}

/// Writers commit while a harvester harvests incrementally, each time from
/// the previous responseDate: once the writers stop, the harvester has
/// every record at its final version — nothing committed late was missed.
async fn late_commits_are_not_missed(store: DynStore) {
    put_book_schema(&store).await;
    let oai = Oai::new(store.clone(), config(50)).await;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    let id = format!("w{w}-{}", i % 15);
                    put(&store, book(&id, &format!("v{i}"))).await;
                }
            })
        })
        .collect();
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    let mut from: Option<String> = None;
    let mut rounds = 0;
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        let q = match &from {
            Some(f) => format!("verb=ListIdentifiers&metadataPrefix=book&from={f}"),
            None => "verb=ListIdentifiers&metadataPrefix=book".to_owned(),
        };
        let (headers, response_date) = oai.harvest(&q).await;
        for h in headers {
            latest.insert(h.identifier, h.datestamp);
        }
        from = Some(response_date);
        rounds += 1;
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.expect("writer");
    }
    assert!(rounds > 1);
    let (all, _) = oai
        .harvest("verb=ListIdentifiers&metadataPrefix=book")
        .await;
    assert_eq!(all.len(), 60);
    for h in all {
        assert_eq!(
            latest.get(&h.identifier),
            Some(&h.datestamp),
            "{} missed",
            h.identifier
        );
    }
}

async fn json_records_are_disseminated_as_oai_dc(store: DynStore) {
    put_book_schema(&store).await;
    put_json_schema(&store).await;
    put(
        &store,
        sheaf_domain::model::RecordWrite {
            schema_id: sid("notes"),
            document: br#"{"title": "n"}"#.to_vec(),
            ..book("n1", "A note")
        },
    )
    .await;
    put(&store, book("b1", "A book")).await;
    let oai = Oai::new(store, config(10)).await;
    let (all, _) = oai.harvest("verb=ListRecords&metadataPrefix=oai_dc").await;
    assert_eq!(ids(&all), [oai_id("n1"), oai_id("b1")]);
    let r = oai.get("verb=ListRecords&metadataPrefix=oai_dc").await;
    assert_eq!(texts(&r.body, "title"), ["A note", "A book"]);
    let (books, _) = oai.harvest("verb=ListRecords&metadataPrefix=book").await;
    assert_eq!(ids(&books), [oai_id("b1")]);
}

/// A token issued by one server works on a restarted one and on a second
/// server process on the same database (its key is in the database).
async fn tokens_work_across_restarts_and_servers(db: TestDb) {
    put_book_schema(&db.store).await;
    for i in 0..9 {
        put(&db.store, book(&format!("b{i}"), "T")).await;
    }
    let a = Oai::new(db.store.clone(), config(3)).await;
    let first = a.get("verb=ListIdentifiers&metadataPrefix=book").await;
    let (t1, ..) = token_of(&first.body).expect("token");

    // A second process: its own connection pool, its own router.
    let other = sheaf_store::connect(&db.url)
        .await
        .expect("second connection");
    let b = a.with_app(other.clone(), config(3));
    let second = b
        .get(&format!("verb=ListIdentifiers&resumptionToken={t1}"))
        .await;
    assert_eq!(error_code(&second.body), None, "{}", second.body);
    let (t2, ..) = token_of(&second.body).expect("token");

    // A restart of the first: a new router instance.
    let restarted = a.with_app(db.store.clone(), config(3));
    let third = restarted
        .get(&format!("verb=ListIdentifiers&resumptionToken={t2}"))
        .await;
    assert_eq!(error_code(&third.body), None, "{}", third.body);
    let all: Vec<String> = [&first, &second, &third]
        .iter()
        .flat_map(|r| ids(&headers_of(&r.body)))
        .collect();
    assert_eq!(
        all,
        (0..9).map(|i| oai_id(&format!("b{i}"))).collect::<Vec<_>>()
    );
    assert_eq!(token_of(&third.body).map(|t| t.0), Some(String::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_work_across_restarts_and_servers_on_sqlite() {
    tokens_work_across_restarts_and_servers(TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_work_across_restarts_and_servers_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    tokens_work_across_restarts_and_servers(db).await;
}

sheaf_store::backend_tests!(
    identify_describes_the_repository,
    post_answers_like_get,
    responses_are_compressed_on_request,
    bad_verb,
    bad_argument,
    bad_resumption_token,
    cannot_disseminate_format,
    id_does_not_exist,
    no_records_match,
    no_metadata_formats_never_arises,
    no_set_hierarchy,
    metadata_formats_are_the_schemas_with_prefixes,
    sets_are_schemas_sources_and_upstream_sets,
    get_record_in_every_format,
    lists_page_with_exact_cursor_and_size,
    selective_harvesting_by_date,
    snapshot_holds_while_records_change,
    late_commits_are_not_missed,
    json_records_are_disseminated_as_oai_dc,
);
