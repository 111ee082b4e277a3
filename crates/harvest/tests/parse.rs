//! Response parsing on hand-written pages: namespaces, standalone
//! metadata, tokens, errors, repairs and per-record rejection.

use proptest::prelude::*;
use sheaf_harvest::parse::{OaiErrorCode, PageError, parse_identify, parse_page};

const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xmlns:dc="http://purl.org/dc/elements/1.1/">
  <responseDate>2024-05-01T10:00:00Z</responseDate>
  <request verb="ListRecords" metadataPrefix="oai_dc">http://example.org/oai</request>
  <ListRecords>
    <record>
      <header><identifier>oai:ex:1</identifier><datestamp>2024-04-30</datestamp><setSpec>a</setSpec><setSpec>b</setSpec></header>
      <metadata>
        <oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/" xsi:schemaLocation="http://www.openarchives.org/OAI/2.0/oai_dc/ http://www.openarchives.org/OAI/2.0/oai_dc.xsd">
          <dc:title>T &amp; U</dc:title>
          <dc:identifier>https://example.org/1</dc:identifier>
        </oai_dc:dc>
      </metadata>
    </record>
    <record>
      <header status="deleted"><identifier>oai:ex:2</identifier><datestamp>2024-04-30</datestamp></header>
    </record>
    <resumptionToken completeListSize="10" cursor="0" expirationDate="2024-05-02T00:00:00Z">  tok+1/2
</resumptionToken>
  </ListRecords>
</OAI-PMH>"#;

#[test]
fn list_records_page() {
    let page = parse_page(PAGE.as_bytes()).expect("page");
    assert_eq!(page.response_date.as_deref(), Some("2024-05-01T10:00:00Z"));
    assert_eq!(page.records.len(), 2);
    let r = &page.records[0];
    assert_eq!(r.header.identifier, "oai:ex:1");
    assert_eq!(r.header.datestamp, "2024-04-30");
    assert_eq!(r.header.set_specs, ["a", "b"]);
    assert_eq!(
        r.metadata_namespace.as_deref(),
        Some("http://www.openarchives.org/OAI/2.0/oai_dc/")
    );
    let doc = String::from_utf8(r.metadata.clone().expect("ok").expect("some")).expect("utf8");
    assert!(doc.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<oai_dc:dc "));
    assert!(doc.contains("xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\""));
    assert!(doc.contains("xmlns:dc=\"http://purl.org/dc/elements/1.1/\""));
    assert!(doc.contains("xmlns=\"http://www.openarchives.org/OAI/2.0/\""));
    assert!(doc.trim_end().ends_with("</oai_dc:dc>"));
    let d = &page.records[1];
    assert!(d.header.deleted);
    assert_eq!(d.metadata, Ok(None));
    let t = page.token.expect("token");
    assert_eq!(t.value, "tok+1/2");
    assert_eq!(t.complete_list_size, Some(10));
    assert_eq!(t.cursor, Some(0));
    assert_eq!(t.expiration_date.as_deref(), Some("2024-05-02T00:00:00Z"));
}

#[test]
fn errors_and_not_oai() {
    assert_eq!(parse_page(b""), Err(PageError::NotOai("empty body".into())));
    assert!(matches!(
        parse_page(b"broken xml"),
        Err(PageError::NotOai(_))
    ));
    assert!(matches!(
        parse_page(b"<!DOCTYPE html><html><body>x</body></html>"),
        Err(PageError::NotOai(_))
    ));
    let e = parse_page(
        br#"<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><error code="badResumptionToken">expired</error></OAI-PMH>"#,
    );
    assert_eq!(
        e,
        Err(PageError::Oai {
            code: OaiErrorCode::BadResumptionToken,
            message: "expired".into()
        })
    );
    let p = parse_page(br#"<OAI-PMH><error code="noRecordsMatch">none</error></OAI-PMH>"#)
        .expect("empty page");
    assert!(p.no_records_match && p.records.is_empty());
    assert!(parse_identify(b"<OAI-PMH><Identify><granularity>YYYY-MM-DDThh:mm:ssZ</granularity></Identify></OAI-PMH>").is_ok());
}

fn envelope(records: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<responseDate>2024-05-01T10:00:00Z</responseDate><ListRecords>{records}</ListRecords></OAI-PMH>"#
    )
    .into_bytes()
}

fn record(id: &str, body: &str) -> String {
    format!(
        "<record><header><identifier>{id}</identifier><datestamp>2024-01-01</datestamp></header><metadata>{body}</metadata></record>"
    )
}

const GOOD: &str = "<dc:title>fine</dc:title>";

#[test]
fn one_malformed_record_is_rejected_and_the_rest_kept() {
    for (bad, reason) in [
        (
            "<dc:title>unclosed <b>bold</dc:title>",
            "mismatched end tag",
        ),
        ("<dc:title>a</dc:creator>", "mismatched end tag"),
        ("<dc:title>AT&T</dc:title>", "unescaped &"),
        ("<dc:title>&nbsp;</dc:title>", "undefined entity &nbsp;"),
        (
            "<x:title>no prefix</x:title>",
            "undeclared namespace prefix \"x\"",
        ),
        (
            "<dc:title xsi:type=\"t\">a</dc:title>",
            "undeclared namespace prefix \"xsi\"",
        ),
        ("<dc:title a=\"1\" a=\"2\">dup</dc:title>", "attribute"),
        (
            "<dc:title>one</dc:title><dc:title>two</dc:title>",
            "more than one element",
        ),
        ("   ", "no child element"),
    ] {
        let body = envelope(&[record("a", GOOD), record("b", bad), record("c", GOOD)].concat());
        let page = parse_page(&body).unwrap_or_else(|e| panic!("{bad}: {e}"));
        let ids: Vec<_> = page
            .records
            .iter()
            .map(|r| r.header.identifier.as_str())
            .collect();
        assert_eq!(ids, ["a", "b", "c"], "{bad}");
        assert!(
            page.records[0].metadata.as_ref().is_ok_and(Option::is_some),
            "{bad}"
        );
        assert!(
            page.records[2].metadata.as_ref().is_ok_and(Option::is_some),
            "{bad}"
        );
        let why = page.records[1].metadata.clone().expect_err(bad);
        assert!(why.contains(reason), "{bad}: {why}");
        let raw = String::from_utf8(page.records[1].raw.clone()).expect("utf8");
        assert!(
            raw.starts_with("<record>") && raw.contains(bad.trim()),
            "{raw}"
        );
    }
}

#[test]
fn a_record_left_open_is_rejected_when_the_list_closes() {
    let body = envelope(
        &[
            record("a", GOOD),
            "<record><header><identifier>b</identifier></header><metadata><dc:title>x</dc:title>"
                .into(),
        ]
        .concat(),
    );
    let page = parse_page(&body).expect("page");
    assert_eq!(page.records.len(), 2);
    assert!(page.records[1].metadata.as_ref().is_err());
}

#[test]
fn truncated_page_is_a_page_error() {
    let mut body = envelope(&record("a", GOOD));
    body.truncate(body.len() - 20);
    assert!(matches!(
        parse_page(&body),
        Err(PageError::Malformed { .. })
    ));
}

#[test]
fn illegal_characters_are_stripped_and_reported_on_their_record() {
    let body = envelope(
        &[
            record("a", "<dc:title>x\u{1}y&#x1A;z&#8;</dc:title>"),
            record("b", GOOD),
        ]
        .concat(),
    );
    let page = parse_page(&body).expect("page");
    let doc = String::from_utf8(page.records[0].metadata.clone().expect("ok").expect("doc"))
        .expect("utf8");
    assert!(doc.ends_with(">xyz</dc:title>"), "{doc}");
    assert_eq!(
        page.records[0].warnings.len(),
        3,
        "{:?}",
        page.records[0].warnings
    );
    assert!(page.records[1].warnings.is_empty());
}

#[test]
fn wrong_encoding_declarations() {
    // Latin-1 bytes under a UTF-8 declaration: each bad byte read as
    // Windows-1252, reported on the record.
    let mut body = envelope(&record("a", "<dc:title>caf\u{0}</dc:title>"));
    let at = body.iter().position(|&b| b == 0).expect("marker");
    body[at] = 0xE9;
    let page = parse_page(&body).expect("page");
    let doc = String::from_utf8(page.records[0].metadata.clone().expect("ok").expect("doc"))
        .expect("utf8");
    assert!(doc.contains("café"), "{doc}");
    assert!(page.records[0].warnings[0].contains("0xE9"));

    // Declared ISO-8859-1 and sent as such: transcoded, declared UTF-8 in
    // the stored document.
    let text =
        String::from_utf8(envelope(&record("a", "<dc:title>caf\u{0}</dc:title>"))).expect("utf8");
    let mut body = text
        .replace("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"")
        .into_bytes();
    let at = body.iter().position(|&b| b == 0).expect("marker");
    body[at] = 0xE9;
    let page = parse_page(&body).expect("page");
    let doc = String::from_utf8(page.records[0].metadata.clone().expect("ok").expect("doc"))
        .expect("utf8");
    assert!(doc.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    assert!(doc.contains("café"));
    assert!(
        page.warnings.iter().any(|w| w.contains("transcoded")),
        "{:?}",
        page.warnings
    );

    // Declared ISO-8859-1 but really UTF-8.
    let body = text
        .replace("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"")
        .replace('\u{0}', "é");
    let page = parse_page(body.as_bytes()).expect("page");
    let doc = String::from_utf8(page.records[0].metadata.clone().expect("ok").expect("doc"))
        .expect("utf8");
    assert!(doc.contains("café"), "{doc}");
}

#[test]
fn gzip_body_without_content_encoding() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&envelope(&record("a", GOOD))).expect("gzip");
    let page = parse_page(&gz.finish().expect("gzip")).expect("page");
    assert_eq!(page.records.len(), 1);
}

#[test]
fn prefixed_and_unnamespaced_envelopes() {
    let prefixed = r#"<oai:OAI-PMH xmlns:oai="http://www.openarchives.org/OAI/2.0/">
<oai:responseDate>2024-01-01T00:00:00Z</oai:responseDate>
<oai:ListIdentifiers>
<oai:header status="deleted"><oai:identifier> id:1 </oai:identifier><oai:datestamp>2024-01-01</oai:datestamp><oai:setSpec>s</oai:setSpec></oai:header>
<oai:header><oai:identifier>id:2</oai:identifier><oai:datestamp>2024-01-02</oai:datestamp></oai:header>
<oai:resumptionToken cursor="0">next</oai:resumptionToken>
</oai:ListIdentifiers></oai:OAI-PMH>"#;
    let page = parse_page(prefixed.as_bytes()).expect("page");
    assert_eq!(page.identifiers.len(), 2);
    assert!(page.identifiers[0].deleted);
    assert_eq!(page.identifiers[0].identifier, "id:1");
    assert_eq!(page.identifiers[0].set_specs, ["s"]);
    assert_eq!(page.next_token(), Some("next"));

    let bare = "<OAI-PMH><ListRecords><record><header><identifier>x</identifier><datestamp>2024-01-01</datestamp></header><metadata><dc><title>t</title></dc></metadata></record><resumptionToken/></ListRecords></OAI-PMH>";
    let page = parse_page(bare.as_bytes()).expect("page");
    let doc = page.records[0].metadata.clone().expect("ok").expect("doc");
    assert_eq!(
        String::from_utf8(doc).expect("utf8"),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<dc><title>t</title></dc>"
    );
    assert_eq!(page.records[0].metadata_namespace, None);
    assert_eq!(page.next_token(), None);
    assert!(page.token.is_some());
}

#[test]
fn standalone_metadata_keeps_scope_exactly() {
    // Declarations on the root and on <record>; one shadowed by the
    // payload; a default namespace undeclared on the way; an empty root.
    let body = r#"<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:p="urn:outer">
<ListRecords>
<record xmlns:dc="http://purl.org/dc/elements/1.1/"><header><identifier>a</identifier><datestamp>2024-01-01</datestamp></header>
<metadata xmlns=""><p:doc xmlns:p="urn:inner" xsi:schemaLocation="urn:inner x.xsd"><dc:title xml:lang="en">t</dc:title><plain/></p:doc></metadata></record>
<record><header><identifier>b</identifier><datestamp>2024-01-01</datestamp></header><metadata><empty xmlns="urn:e" a='1'/></metadata></record>
</ListRecords></OAI-PMH>"#;
    let page = parse_page(body.as_bytes()).expect("page");
    let doc = String::from_utf8(page.records[0].metadata.clone().expect("ok").expect("doc"))
        .expect("utf8");
    assert_eq!(
        doc,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<p:doc xmlns:p=\"urn:inner\" xsi:schemaLocation=\"urn:inner x.xsd\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><dc:title xml:lang=\"en\">t</dc:title><plain/></p:doc>"
    );
    assert_eq!(
        page.records[0].metadata_namespace.as_deref(),
        Some("urn:inner")
    );
    let doc = String::from_utf8(page.records[1].metadata.clone().expect("ok").expect("doc"))
        .expect("utf8");
    assert_eq!(
        doc,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<empty xmlns=\"urn:e\" a='1' xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:p=\"urn:outer\"/>"
    );
}

#[test]
fn error_edge_cases() {
    // Several errors: badResumptionToken wins, so the run loop can act.
    let body = br#"<OAI-PMH><error code="badArgument">a</error><error code="badResumptionToken">b</error></OAI-PMH>"#;
    assert!(matches!(
        parse_page(body),
        Err(PageError::Oai {
            code: OaiErrorCode::BadResumptionToken,
            ..
        })
    ));
    // An empty code (a provider-side timeout reported as an error).
    let body = br#"<OAI-PMH><error code="">Read timed out</error></OAI-PMH>"#;
    assert_eq!(
        parse_page(body),
        Err(PageError::Oai {
            code: OaiErrorCode::Other(String::new()),
            message: "Read timed out".into()
        })
    );
    // A raw `&` in the request echo or a token is taken literally.
    let body = br#"<OAI-PMH><request verb="ListIdentifiers">http://x/oai?verb=ListIdentifiers&metadataPrefix=oai_dc</request><ListIdentifiers><header><identifier>a</identifier><datestamp>2024-01-01</datestamp></header><resumptionToken>p=1&q=2</resumptionToken></ListIdentifiers></OAI-PMH>"#;
    let page = parse_page(body).expect("tolerated");
    assert_eq!(page.next_token(), Some("p=1&q=2"));
    assert_eq!(page.warnings.len(), 2, "{:?}", page.warnings);
    // A response with neither verb nor error is not silently empty.
    assert!(matches!(
        parse_page(b"<OAI-PMH><responseDate>x</responseDate></OAI-PMH>"),
        Err(PageError::NotOai(_))
    ));
    assert!(matches!(
        parse_page(b"<?xml version=\"1.0\"?>\n  \n"),
        Err(PageError::NotOai(_))
    ));
    assert!(matches!(
        parse_page(b"<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><OAI-PMH/>"),
        Err(PageError::NotOai(_))
    ));
    assert!(matches!(
        parse_page(b"{\"json\": true}"),
        Err(PageError::NotOai(_))
    ));
}

fn sample_page() -> Vec<u8> {
    let mut recs = String::new();
    for i in 0..4 {
        recs.push_str(&record(
            &format!("id{i}"),
            "<dc:title a=\"1\">T &amp; <![CDATA[x]]></dc:title>",
        ));
    }
    recs.push_str("<resumptionToken cursor=\"0\">tok</resumptionToken>");
    envelope(&recs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_page(&body);
        let _ = parse_identify(&body);
    }

    #[test]
    fn mutated_pages_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)
    ) {
        let mut body = sample_page();
        for (at, byte, op) in edits {
            let i = at.index(body.len().max(1));
            match op {
                0 if i < body.len() => body[i] = byte,
                1 => body.insert(i.min(body.len()), byte),
                _ if i < body.len() => { body.remove(i); }
                _ => {}
            }
        }
        if let Ok(page) = parse_page(&body) {
            for r in &page.records {
                if let Ok(Some(doc)) = &r.metadata {
                    prop_assert!(std::str::from_utf8(doc).is_ok());
                    prop_assert!(doc.starts_with(b"<?xml"));
                }
            }
        }
    }
}
