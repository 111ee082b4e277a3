//! Response parsing on hand-written pages: namespaces, standalone
//! metadata, tokens, errors, repairs and per-record rejection.

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
