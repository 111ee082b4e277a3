//! Validation against the schemas bundled in the binary, and the hostile
//! inputs every XML path must refuse. No store involved.

use sheaf_validate::{ValidationError, validate_against_bundled};

const RECORD: &[u8] = include_bytes!("../../../fixtures/validate/oai_dc-record.xml");

fn invalid_text(r: Result<(), ValidationError>) -> String {
    match r {
        Err(ValidationError::Invalid(report)) => report.to_string(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn a_typical_oai_dc_record_is_valid() {
    validate_against_bundled("oai_dc.xsd", RECORD).unwrap();
}

#[test]
fn an_oai_dc_record_with_a_foreign_element_is_invalid_with_its_line() {
    let doc = br#"<?xml version="1.0"?>
<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
           xmlns:dc="http://purl.org/dc/elements/1.1/">
  <dc:title>ok</dc:title>
  <dc:titel>typo</dc:titel>
</oai_dc:dc>"#;
    let text = invalid_text(validate_against_bundled("oai_dc.xsd", doc));
    assert!(text.starts_with("line 5"), "{text}");
    assert!(text.contains("titel"), "{text}");
}

const IDENTIFY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://www.openarchives.org/OAI/2.0/ http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd">
  <responseDate>2026-11-23T10:00:00Z</responseDate>
  <request verb="Identify">https://sheaf.example.org/oai</request>
  <Identify>
    <repositoryName>Sheaf</repositoryName>
    <baseURL>https://sheaf.example.org/oai</baseURL>
    <protocolVersion>2.0</protocolVersion>
    <adminEmail>admin@example.org</adminEmail>
    <earliestDatestamp>2026-01-01T00:00:00Z</earliestDatestamp>
    <deletedRecord>persistent</deletedRecord>
    <granularity>YYYY-MM-DDThh:mm:ssZ</granularity>
  </Identify>
</OAI-PMH>"#;

#[test]
fn an_oai_pmh_response_validates_against_the_envelope() {
    validate_against_bundled("OAI-PMH.xsd", IDENTIFY.as_bytes()).unwrap();
    let broken = IDENTIFY.replace("<protocolVersion>2.0</protocolVersion>", "");
    let text = invalid_text(validate_against_bundled("OAI-PMH.xsd", broken.as_bytes()));
    assert!(text.contains("adminEmail"), "{text}");
}

fn list_records(metadata: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/">
  <responseDate>2026-11-23T10:00:00Z</responseDate>
  <request verb="ListRecords" metadataPrefix="oai_dc">https://sheaf.example.org/oai</request>
  <ListRecords>
    <record>
      <header><identifier>oai:sheaf:1</identifier><datestamp>2026-11-23T10:00:00Z</datestamp></header>
      <metadata>{metadata}</metadata>
    </record>
  </ListRecords>
</OAI-PMH>"#
    )
}

#[test]
fn a_list_records_response_with_oai_dc_validates_against_the_oai_dc_envelope() {
    let dc = r#"<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
        xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title xml:lang="en">T</dc:title></oai_dc:dc>"#;
    validate_against_bundled("oai_dc-envelope.xsd", list_records(dc).as_bytes()).unwrap();
    // The official envelope's metadata wildcard is strict: alone it knows no
    // oai_dc declaration.
    validate_against_bundled("OAI-PMH.xsd", list_records(dc).as_bytes()).unwrap_err();
    let bad = dc.replace("dc:title", "dc:nonsense");
    let text = invalid_text(validate_against_bundled(
        "oai_dc-envelope.xsd",
        list_records(&bad).as_bytes(),
    ));
    assert!(text.contains("nonsense"), "{text}");
}

#[test]
fn an_unknown_bundled_schema_is_named() {
    match validate_against_bundled("nope.xsd", RECORD) {
        Err(ValidationError::UnknownBundled(name)) => assert_eq!(name, "nope.xsd"),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Hostile and bad input

#[test]
fn xxe_to_a_local_file_is_not_expanded_and_the_dtd_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "TOP-SECRET-CANARY").unwrap();
    let doc = format!(
        r#"<?xml version="1.0"?>
<!DOCTYPE oai_dc:dc [ <!ENTITY xxe SYSTEM "file://{}"> ]>
<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
           xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&xxe;</dc:title></oai_dc:dc>"#,
        secret.display()
    );
    let text = invalid_text(validate_against_bundled("oai_dc.xsd", doc.as_bytes()));
    assert!(text.contains("DOCTYPE"), "{text}");
    assert!(!text.contains("TOP-SECRET-CANARY"), "{text}");
}

/// A listener on 127.0.0.1 that counts the connections it accepts.
struct Canary {
    addr: std::net::SocketAddr,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Canary {
    fn start() -> Canary {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(conn);
            }
        });
        Canary { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn xxe_to_a_url_makes_no_request() {
    let canary = Canary::start();
    let doc = format!(
        r#"<?xml version="1.0"?>
<!DOCTYPE oai_dc:dc [
  <!ENTITY % remote SYSTEM "http://{0}/param.dtd"> %remote;
  <!ENTITY xxe SYSTEM "http://{0}/general">
]>
<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
           xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&xxe;</dc:title></oai_dc:dc>"#,
        canary.addr
    );
    let err = validate_against_bundled("oai_dc.xsd", doc.as_bytes()).unwrap_err();
    assert!(matches!(err, ValidationError::Invalid(_)), "{err:?}");
    // An external DTD subset too.
    let doc = format!(
        r#"<?xml version="1.0"?>
<!DOCTYPE x SYSTEM "http://{}/external.dtd"><x/>"#,
        canary.addr
    );
    let text = invalid_text(validate_against_bundled("oai_dc.xsd", doc.as_bytes()));
    assert!(text.contains("DOCTYPE"), "{text}");
    assert_eq!(canary.hits(), 0);
}

#[test]
fn billion_laughs_is_refused() {
    let doc = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
           xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&lol9;</dc:title></oai_dc:dc>"#;
    invalid_text(validate_against_bundled("oai_dc.xsd", doc));
}

#[test]
fn quadratic_blowup_is_refused() {
    let big = "A".repeat(50_000);
    let refs = "&a;".repeat(50_000);
    let doc = format!(
        r#"<?xml version="1.0"?>
<!DOCTYPE oai_dc:dc [ <!ENTITY a "{big}"> ]>
<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
           xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{refs}</dc:title></oai_dc:dc>"#
    );
    invalid_text(validate_against_bundled("oai_dc.xsd", doc.as_bytes()));
}

#[test]
fn not_well_formed_xml_is_reported_with_its_position() {
    let doc = b"<?xml version=\"1.0\"?>\n<oai_dc:dc xmlns:oai_dc=\"http://www.openarchives.org/OAI/2.0/oai_dc/\">\n  <unclosed>\n</oai_dc:dc>";
    let text = invalid_text(validate_against_bundled("oai_dc.xsd", doc));
    assert!(text.contains("line 4"), "{text}");
    assert!(text.contains("mismatch"), "{text}");
}

#[test]
fn invalid_utf8_is_reported_with_its_position() {
    let mut doc = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<oai_dc:dc xmlns:oai_dc=\"http://www.openarchives.org/OAI/2.0/oai_dc/\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\">\n<dc:title>caf".to_vec();
    doc.extend_from_slice(&[0xC3, 0x28]);
    doc.extend_from_slice(b"</dc:title></oai_dc:dc>");
    let text = invalid_text(validate_against_bundled("oai_dc.xsd", &doc));
    assert!(text.contains("line 3"), "{text}");
    assert!(text.to_lowercase().contains("utf-8"), "{text}");
}

#[test]
fn an_empty_document_is_invalid() {
    invalid_text(validate_against_bundled("oai_dc.xsd", b""));
}

#[test]
fn a_document_over_the_size_limit_is_refused_before_parsing() {
    // Not even XML: a parser would complain about the content, not the size.
    let doc = vec![b'x'; 16 * 1024 * 1024 + 1];
    match validate_against_bundled("oai_dc.xsd", &doc) {
        Err(ValidationError::TooLarge { limit, size }) => {
            assert_eq!(limit, 16 * 1024 * 1024);
            assert_eq!(size, doc.len());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn eight_threads_give_the_same_verdicts_as_serial_validation() {
    let bad = String::from_utf8(RECORD.to_vec())
        .unwrap()
        .replace("<dc:rights>", "<dc:wrongs>")
        .replace("</dc:rights>", "</dc:wrongs>");
    let cases: Vec<(&'static str, Vec<u8>)> = vec![
        ("oai_dc.xsd", RECORD.to_vec()),
        ("oai_dc.xsd", bad.into_bytes()),
        ("OAI-PMH.xsd", IDENTIFY.as_bytes().to_vec()),
        ("OAI-PMH.xsd", RECORD.to_vec()),
        ("oai_dc.xsd", b"<not-closed>".to_vec()),
    ];
    let verdict = |(schema, doc): &(&str, Vec<u8>)| {
        validate_against_bundled(schema, doc).map_err(|e| e.to_string())
    };
    let serial: Vec<_> = cases.iter().map(verdict).collect();
    assert!(serial[0].is_ok() && serial[1].is_err() && serial[2].is_ok());
    assert!(serial[3].is_err() && serial[4].is_err());
    let cases = std::sync::Arc::new(cases);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let cases = cases.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for round in 0..50 {
                    let i = (t + round) % cases.len();
                    out.push((i, verdict(&cases[i])));
                }
                out
            })
        })
        .collect();
    for t in threads {
        for (i, v) in t.join().unwrap() {
            assert_eq!(v, serial[i], "case {i}");
        }
    }
}
