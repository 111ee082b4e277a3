//! Every captured real-world response in `fixtures/oai-real-world/` goes
//! through the parser: well-formed responses yield the records, headers,
//! tokens and error codes MANIFEST.tsv describes; broken ones yield the
//! designed outcome (repair, per-record rejection, a clear page error);
//! nothing panics. Every metadata document produced is checked to be a
//! namespace-well-formed standalone document.

use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use sheaf_domain::Granularity;
use sheaf_harvest::parse::{
    OaiErrorCode, Page, PageError, parse_datestamp_lenient, parse_identify, parse_page,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/oai-real-world")
}

fn read(file: &str) -> Vec<u8> {
    std::fs::read(root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn page(file: &str) -> Page {
    parse_page(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

struct Row {
    file: String,
    kind: String,
    well_formed: String,
    notes: String,
}

fn manifest() -> Vec<Row> {
    let text = std::fs::read_to_string(root().join("MANIFEST.tsv")).expect("MANIFEST.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            assert_eq!(c.len(), 9, "manifest row {l}");
            Row {
                file: c[0].into(),
                kind: c[5].into(),
                well_formed: c[7].into(),
                // Only the machine-written part: the human notes quote
                // attribute values too.
                notes: c[8]
                    .split("|| auto:")
                    .nth(1)
                    .and_then(|a| a.split("||").next())
                    .unwrap_or("")
                    .into(),
            }
        })
        .collect()
}

/// The number after which `marker` follows, e.g. `"250 header(s)"`.
fn count_before(notes: &str, marker: &str) -> Option<usize> {
    let at = notes.find(marker)?;
    let digits: String = notes[..at]
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

/// `key=value` from the auto notes (value up to `;`, space or `(`).
fn note_value<'a>(notes: &'a str, key: &str) -> Option<&'a str> {
    let start = notes.find(key)? + key.len();
    let rest = &notes[start..];
    let end = rest.find([';', ' ', '(', '|']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Parses a standalone metadata document strictly: tags match, every
/// prefix is declared, and returns the root element's namespace.
fn check_standalone(doc: &[u8]) -> Result<Option<String>, String> {
    let text = std::str::from_utf8(doc).map_err(|e| e.to_string())?;
    if !text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>") {
        return Err("no XML declaration".into());
    }
    let mut r = NsReader::from_str(text);
    let mut root_ns = None;
    let mut depth = 0usize;
    let mut roots = 0;
    loop {
        let (ns, ev) = r.read_resolved_event().map_err(|e| e.to_string())?;
        let ns = match ns {
            ResolveResult::Unknown(p) => return Err(format!("undeclared prefix {p}")),
            ResolveResult::Bound(n) => Some(n.as_ref().to_owned()),
            ResolveResult::Unbound => None,
        };
        let (opens, e) = match ev {
            Event::Start(e) => (true, e),
            Event::Empty(e) => (false, e),
            Event::End(_) => {
                depth -= 1;
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        if depth == 0 {
            roots += 1;
            root_ns = ns;
        }
        for a in e.attributes() {
            let a = a.map_err(|e| e.to_string())?;
            if let (ResolveResult::Unknown(p), _) = r.resolver().resolve_attribute(a.key) {
                return Err(format!("undeclared attribute prefix {p}"));
            }
        }
        if opens {
            depth += 1;
        }
    }
    if roots != 1 || depth != 0 {
        return Err(format!("{roots} root elements, depth {depth} at end"));
    }
    Ok(root_ns)
}

fn expect_oai_error(file: &str, code: OaiErrorCode) {
    match parse_page(&read(file)) {
        Err(PageError::Oai { code: got, .. }) => assert_eq!(got, code, "{file}"),
        other => panic!("{file}: expected OAI error {code}, got {other:?}"),
    }
}

#[test]
fn every_fixture_has_its_designed_outcome() {
    let rows = manifest();
    assert_eq!(rows.len(), 157, "MANIFEST.tsv rows");
    let mut checked_docs = 0;
    for row in &rows {
        let body = read(&row.file);
        // Whatever the file is, both entry points return, never panic.
        let as_page = parse_page(&body);
        let as_identify = parse_identify(&body);
        let kind = row.kind.as_str();
        let ctx = format!("{} ({kind})", row.file);

        if kind == "Identify" {
            let id = as_identify.unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert!(!id.repository_name.is_empty(), "{ctx}: repositoryName");
            assert!(!id.base_url.is_empty(), "{ctx}: baseURL");
            assert!(
                ["no", "transient", "persistent"].contains(&id.deleted_record.as_str()),
                "{ctx}: deletedRecord {:?}",
                id.deleted_record
            );
            continue;
        }
        if kind == "malformed Identify" {
            assert!(
                matches!(as_identify, Err(PageError::Malformed { .. })),
                "{ctx}: {as_identify:?}"
            );
            continue;
        }
        if let Some(code) = kind.strip_prefix("error:") {
            match OaiErrorCode::parse(code) {
                OaiErrorCode::NoRecordsMatch => {
                    let p = as_page.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    assert!(
                        p.no_records_match && p.is_empty() && p.token.is_none(),
                        "{ctx}"
                    );
                }
                expected => match as_page {
                    Err(PageError::Oai { code, .. }) => assert_eq!(code, expected, "{ctx}"),
                    other => panic!("{ctx}: {other:?}"),
                },
            }
            continue;
        }
        let is_response = [
            "ListRecords",
            "ListIdentifiers",
            "GetRecord",
            "ListSets",
            "ListMetadataFormats",
        ]
        .iter()
        .any(|v| kind.starts_with(v));
        if !is_response {
            // Fragments, static repositories, HTML, plain text, JSON, empty
            // bodies: not OAI-PMH responses, said clearly.
            assert!(
                matches!(as_page, Err(PageError::NotOai(_))),
                "{ctx}: {as_page:?}"
            );
            continue;
        }

        let p = as_page.unwrap_or_else(|e| panic!("{ctx}: {e}"));
        if row.well_formed != "yes" {
            // The one broken list response is repaired (bad bytes, control
            // character), and the repair is reported on its record.
            assert_eq!(row.file, "LibreCat_perl-oai-lib/badbytes.xml", "{ctx}");
            assert!(p.records.iter().all(|r| !r.warnings.is_empty()), "{ctx}");
        }
        let headers: Vec<_> = p
            .records
            .iter()
            .map(|r| &r.header)
            .chain(p.identifiers.iter())
            .collect();
        if let Some(n) = count_before(&row.notes, " header(s)") {
            assert_eq!(headers.len(), n, "{ctx}: headers");
            let deleted = row
                .notes
                .split_once(" header(s), ")
                .and_then(|(_, rest)| rest.split_once(" deleted"))
                .and_then(|(n, _)| n.parse::<usize>().ok())
                .unwrap_or(0);
            assert_eq!(
                headers.iter().filter(|h| h.deleted).count(),
                deleted,
                "{ctx}: deleted"
            );
        } else {
            assert!(headers.is_empty(), "{ctx}: unexpected headers");
        }
        // (The auto notes also count <set> elements inside metadata.)
        if let Some(n) =
            count_before(&row.notes, " set(s)").filter(|_| kind.starts_with("ListSets"))
        {
            assert_eq!(p.sets.len(), n, "{ctx}: sets");
        }
        match note_value(&row.notes, "resumptionToken=") {
            None => assert!(p.token.is_none(), "{ctx}: unexpected token {:?}", p.token),
            Some(state) => {
                let t = p
                    .token
                    .as_ref()
                    .unwrap_or_else(|| panic!("{ctx}: no token"));
                assert_eq!(t.has_more(), state == "non-empty", "{ctx}: token {t:?}");
                assert!(
                    !t.value.contains(['\n', '\r', '\t']),
                    "{ctx}: token untrimmed"
                );
                assert_eq!(t.value.trim(), t.value, "{ctx}: token untrimmed");
                let num = |k| note_value(&row.notes, k).and_then(|v| v.parse::<u64>().ok());
                assert_eq!(t.cursor, num("cursor="), "{ctx}: cursor");
                assert_eq!(
                    t.complete_list_size,
                    num("completeListSize="),
                    "{ctx}: completeListSize"
                );
                assert_eq!(
                    t.expiration_date.as_deref(),
                    note_value(&row.notes, "expirationDate="),
                    "{ctx}: expirationDate"
                );
            }
        }
        for h in &headers {
            assert!(!h.identifier.contains(['\n', '\r']), "{ctx}: {h:?}");
            assert!(!h.datestamp.contains(char::is_whitespace), "{ctx}: {h:?}");
        }
        for r in &p.records {
            match &r.metadata {
                Ok(Some(doc)) => {
                    let ns = check_standalone(doc)
                        .unwrap_or_else(|e| panic!("{ctx}: {}: {e}", r.header.identifier));
                    assert_eq!(ns, r.metadata_namespace, "{ctx}: metadata namespace");
                    checked_docs += 1;
                }
                Ok(None) => assert!(r.header.deleted, "{ctx}: no metadata, not deleted"),
                // The one designed rejection among well-formed responses.
                Err(why) => assert_eq!(
                    (row.file.as_str(), why.as_str()),
                    (
                        "mloesch_sickle/ListRecords4.xml",
                        "header has no identifier"
                    ),
                    "{ctx}"
                ),
            }
            assert_eq!(r.raw.is_empty(), r.metadata.is_ok(), "{ctx}: raw bytes");
        }
    }
    assert!(
        checked_docs > 700,
        "only {checked_docs} metadata documents checked"
    );
}

#[test]
fn representative_exact_values() {
    // Tokens: trimmed, newlines removed, attributes read.
    let p = page("KBNLdataservices_oai-pmh-bulk-downloader/response-with-newlines.xml");
    assert_eq!(p.identifiers.len(), 100);
    assert_eq!(
        p.next_token(),
        Some("thisValueShouldBeStrippedOfAnyNewlines")
    );
    assert!(
        p.identifiers
            .iter()
            .all(|h| parse_datestamp_lenient(&h.datestamp).is_some()),
        "a datestamp with a newline inside survives"
    );

    let p = page("MI-DPLA_combine/mods_250.xml");
    assert_eq!(p.records.len(), 250);
    assert_eq!(
        p.records[0].header.identifier,
        "oai:digital.library.wayne.edu:wayne:Adventur1860b50081974"
    );
    assert_eq!(
        p.records[0].metadata_namespace.as_deref(),
        Some("http://www.loc.gov/mods/v3")
    );
    let t = p.token.expect("token");
    assert_eq!(
        (t.cursor, t.complete_list_size, t.expiration_date.as_deref()),
        (Some(0), Some(438), Some("2017-12-08T09:05:28Z"))
    );

    // DSpace counts pages in `cursor`; we follow the token, never the cursor.
    let p = page("MITLibraries_oai-pmh-harvester/get-sets.1.page-second.xml");
    let t = p.token.expect("token");
    assert_eq!((t.value.as_str(), t.cursor), ("////200", Some(1)));
    let p = page("MITLibraries_oai-pmh-harvester/get-sets.9.page-last.xml");
    assert_eq!(p.next_token(), None);
    assert_eq!(p.token.expect("empty token").complete_list_size, Some(966));

    let p = page("afuetterer_oaipmh-scythe/list_identifiers.9.resumed.xml");
    let t = p.token.expect("token");
    assert!(t.value.starts_with(".eJyNjkFvgjAYQP9Lz2Y"));
    assert_eq!(
        (t.cursor, t.complete_list_size, t.expiration_date.as_deref()),
        (Some(50), Some(8_084_640), Some("2026-08-12T19:01:56Z"))
    );
    let p = page("caseyamcl_phpoaipmh/GoodResponseFourPage_4.xml");
    assert_eq!(p.identifiers.len(), 133);
    assert_eq!(p.next_token(), None);
    let p = page("usnistgov_core_oaipmh_harvester_app/response_list_records_oai_demo.xml");
    assert_eq!(p.next_token(), Some("xxx45abttyz"));

    // Request before responseDate; millisecond dates kept as sent.
    let p = page("NatLibFi_oai-pmh-client-js/index-01_response01.xml");
    assert_eq!(p.response_date.as_deref(), Some("2020-06-01T12:08:07.821Z"));
    assert_eq!(p.next_token(), Some("foobar"));

    // Every OAI element prefixed `oai:`; 7 fractional digits.
    let p = page("cessda_cessda.cdc.osmh-indexer.cmm/compliant_fragments_cmm_ddi_3_3.xml");
    let r = &p.records[0];
    assert_eq!(
        r.header.identifier,
        "no.nsd:39c1f667-17c2-475b-9333-846f59666e32:16"
    );
    assert_eq!(r.header.datestamp, "2024-05-03T13:14:02.3620880Z");
    assert!(r.header.datestamp_parsed().is_some());
    assert_eq!(r.metadata_namespace.as_deref(), Some("ddi:instance:3_3"));

    // No namespaces at all; records directly under the root.
    for f in [
        "inspirehep_hepcrawl/base_test_1.xml",
        "inspirehep_hepcrawl/base_test_record1_no_namespaces.xml",
    ] {
        let p = page(f);
        assert_eq!(p.records.len(), 1, "{f}");
        assert_eq!(
            p.records[0].header.identifier,
            "ftanucanberra:oai:digitalcollections.anu.edu.au:1885/10005"
        );
        assert_eq!(
            p.response_date.as_deref(),
            Some("2015-10-14T12:49:46.965704+00:00")
        );
    }
    assert_eq!(
        page("inspirehep_hepcrawl/base_test_record1_no_namespaces.xml").records[0]
            .metadata_namespace,
        None
    );

    // Spaces inside identifiers and setSpecs are kept.
    let p = page("inspirehep_hepcrawl/pos_record.xml");
    assert_eq!(
        p.records[0].header.identifier,
        "oai:pos.sissa.it:LATTICE 2013/001"
    );
    assert_eq!(
        p.records[0].header.set_specs,
        ["conference:LATTICE 2013", "group:9"]
    );

    // Invalid datestamp forms still parse leniently.
    let p = page("dpla_ingestion3/oai-page.xml");
    assert_eq!(p.records[0].header.datestamp, "20210311");
    assert_eq!(
        p.records[0]
            .header
            .datestamp_parsed()
            .map(|d| d.to_string()),
        Some("2021-03-11".into())
    );
    let p = page("cessda_cessda.cdc.osmh-indexer.cmm/synthetic_nesstar_deleted_record.xml");
    assert!(p.records[0].header.deleted);
    assert_eq!(
        p.records[0]
            .header
            .datestamp_parsed()
            .map(|d| d.to_string()),
        Some("2015-05-04T22:55:30Z".into())
    );

    // A deleted header with neither identifier nor datestamp: rejected
    // with its reason, the other record kept.
    let p = page("mloesch_sickle/ListRecords4.xml");
    assert_eq!(p.records.len(), 2);
    assert_eq!(
        p.records[0].metadata,
        Err("header has no identifier".to_owned())
    );
    assert!(matches!(p.records[1].metadata, Ok(Some(_))));

    // CDATA-split values read as one.
    let plain = page("DSpace_xoai/oai_dc-sets.xml").sets;
    let cdata = page("DSpace_xoai/oai_dc-sets-CDATA.xml").sets;
    assert_eq!(plain.len(), 2);
    assert_eq!(cdata.len(), 2);
    assert!(cdata.iter().all(|s| !s.contains("CDATA")), "{cdata:?}");

    // 4292 sets, up to five levels deep.
    let sets = page("KBNLdataservices_oai-pmh-bulk-downloader/ListSets.xml").sets;
    assert_eq!(sets.len(), 4292);
    assert!(sets.contains(&"dans:D20000:D23000:D23300:D23380".to_owned()));

    // One GetRecord wrapper holding 12 records: all kept.
    assert_eq!(
        page("inspirehep_hepcrawl/sample_arxiv_record.xml")
            .records
            .len(),
        12
    );

    let formats = page("afuetterer_oaipmh-scythe/list_metadata_formats.0.xml").metadata_formats;
    assert!(
        formats.iter().any(|f| f.prefix == "oai_dc"
            && f.namespace == "http://www.openarchives.org/OAI/2.0/oai_dc/")
    );
}

#[test]
fn identify_values() {
    let id =
        parse_identify(&read("afuetterer_oaipmh-scythe/identify.2.zenodo.xml")).expect("zenodo");
    assert_eq!(id.granularity, Granularity::Seconds);
    assert_eq!(
        id.earliest_datestamp.as_deref(),
        Some("2014-02-03T14:41:33Z")
    );
    assert_eq!(id.deleted_record, "no");
    let id = parse_identify(&read("LibreCat_perl-oai-lib/identify.xml")).expect("citebase");
    assert_eq!(id.granularity, Granularity::Day);
    assert_eq!(id.earliest_datestamp.as_deref(), Some("0001-01-01"));
    assert_eq!(id.deleted_record, "transient");
    let id = parse_identify(&read("DSpace_xoai/identify.xml")).expect("dataverse");
    assert_eq!(id.compression, ["gzip", "deflate"]);
    // A list parser given an Identify, and the reverse, say so.
    assert!(matches!(
        parse_page(&read("DSpace_xoai/identify.xml")),
        Err(PageError::NotOai(_))
    ));
    assert!(matches!(
        parse_identify(&read("mloesch_sickle/ListRecords.xml")),
        Err(PageError::NotOai(_))
    ));
}

#[test]
fn broken_responses_have_clear_outcomes() {
    // Invalid UTF-8 under a UTF-8 declaration plus a raw 0x06: repaired,
    // the record kept with warnings saying what was changed.
    let p = page("LibreCat_perl-oai-lib/badbytes.xml");
    let r = &p.records[0];
    let doc = r.metadata.clone().expect("ok").expect("some");
    assert!(std::str::from_utf8(&doc).is_ok());
    assert!(!doc.contains(&0x06));
    assert!(check_standalone(&doc).is_ok());
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("invalid UTF-8 byte 0xC2"))
    );
    assert!(r.warnings.iter().any(|w| w.contains("U+0006")));

    // Unclosed element, undefined entity: page errors with a position.
    match parse_identify(&read("infrae_pyoai/fake3_00001.xml")) {
        Err(PageError::Malformed { message, .. }) => {
            assert!(message.contains("bogus"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    match parse_identify(&read("infrae_pyoai/fake4_00001.xml")) {
        Err(PageError::Malformed { message, .. }) => {
            assert!(message.contains("&bogus;"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    for (f, why) in [
        ("mloesch_sickle/ListRecordsBroken.xml", "broken xml"),
        (
            "afuetterer_oaipmh-scythe/identify.0.httpbun-html.html",
            "HTML",
        ),
        (
            "MITLibraries_oai-pmh-harvester/get-records-two-errors.1.http500-empty-body.xml",
            "empty body",
        ),
        ("dpla_ingestion3/il.xml", "<record>"),
    ] {
        match parse_page(&read(f)) {
            Err(PageError::NotOai(m)) => assert!(m.contains(why), "{f}: {m}"),
            other => panic!("{f}: {other:?}"),
        }
    }
    // Errors sent with HTTP 422 and no XML declaration; unknown codes.
    expect_oai_error(
        "afuetterer_oaipmh-scythe/list_identifiers.10.badResumptionToken.xml",
        OaiErrorCode::BadResumptionToken,
    );
    expect_oai_error(
        "afuetterer_oaipmh-scythe/get_record.0.cannotDisseminateFormat.xml",
        OaiErrorCode::BadArgument,
    );
    expect_oai_error(
        "mloesch_sickle/undefinedError.xml",
        OaiErrorCode::Other("undefinedError".into()),
    );
}

/// Wraps a DPLA-style `<record>` fragment in an envelope, optionally
/// declaring namespaces on the root as providers do.
fn wrap(file: &str, root_decls: &str) -> Vec<u8> {
    let text = String::from_utf8(read(file)).expect("utf8");
    let body = match text.find("?>") {
        Some(i) if text.trim_start().starts_with("<?xml") => &text[i + 2..],
        _ => &text[..],
    };
    format!(
        "<OAI-PMH xmlns=\"http://www.openarchives.org/OAI/2.0/\" {root_decls}><responseDate>2024-01-01T00:00:00Z</responseDate><ListRecords>{body}</ListRecords></OAI-PMH>"
    )
    .into_bytes()
}

#[test]
fn namespace_declarations_from_the_envelope_are_carried_into_the_document() {
    // il.xml's metadata uses oai_qdc:, dc:, dcterms: and xsi: declared only
    // on the (stripped) envelope: without them the record is rejected with
    // the reason; with them on the root, the document re-declares them.
    let bare = parse_page(&wrap("dpla_ingestion3/il.xml", "")).expect("page");
    let why = bare.records[0].metadata.clone().expect_err("rejected");
    assert!(why.contains("undeclared namespace prefix"), "{why}");

    let decls = r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:oai_qdc="http://worldcat.org/xmlschemas/qdc-1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" xmlns:edm="http://www.europeana.eu/schemas/edm/" xmlns:oaiProvenance="http://www.openarchives.org/OAI/2.0/provenance""#;
    let p = parse_page(&wrap("dpla_ingestion3/il.xml", decls)).expect("page");
    let r = &p.records[0];
    let doc = String::from_utf8(r.metadata.clone().expect("ok").expect("some")).expect("utf8");
    assert!(doc.contains("xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\""));
    assert!(doc.contains("xmlns:dc=\"http://purl.org/dc/elements/1.1/\""));
    assert_eq!(
        check_standalone(doc.as_bytes()).expect("standalone"),
        Some("http://worldcat.org/xmlschemas/qdc-1.0/".into())
    );

    // tn.xml: the envelope binds `mods:` to the OAI namespace, the payload
    // rebinds it to MODS; the payload also uses an undeclared xlink:.
    let p = parse_page(&wrap("dpla_ingestion3/tn.xml", "")).expect("page");
    let why = p.records[0].metadata.clone().expect_err("rejected");
    assert!(why.contains("xlink"), "{why}");
    let p = parse_page(&wrap(
        "dpla_ingestion3/tn.xml",
        r#"xmlns:xlink="http://www.w3.org/1999/xlink""#,
    ))
    .expect("page");
    let r = &p.records[0];
    assert_eq!(r.header.identifier.split(':').next(), Some("oai"));
    assert_eq!(
        r.metadata_namespace.as_deref(),
        Some("http://www.loc.gov/mods/v3")
    );
    let doc = r.metadata.clone().expect("ok").expect("some");
    assert_eq!(
        check_standalone(&doc).expect("standalone"),
        Some("http://www.loc.gov/mods/v3".into())
    );
    // The envelope's `mods:` binding is shadowed, not re-declared.
    let text = String::from_utf8(doc).expect("utf8");
    let after_decl = &text[text.find("?>").expect("declaration") + 2..];
    let head = &after_decl[..after_decl.find('>').expect("root tag") + 1];
    assert_eq!(head.matches("xmlns:mods=").count(), 1, "{head}");

    // txdl.xml: oai_dc directly under <record>, no <metadata>.
    let p = parse_page(&wrap("dpla_ingestion3/txdl.xml", "")).expect("page");
    assert_eq!(
        p.records[0].metadata,
        Err("record has no <metadata> element".into())
    );
}
