//! Writing OAI-PMH XML with quick-xml: the envelope, headers, provenance,
//! and stored documents embedded as metadata.
//!
//! Writers here write into a `Vec<u8>`; the list stream hands its contents
//! to the response body chunk by chunk. Depends on `sheaf-domain`.

use std::borrow::Cow;
use std::io;

use chrono::{DateTime, SecondsFormat, Utc};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use sheaf_domain::Datestamp;
use sheaf_domain::model::{Provenance, RecordVersion};

use crate::request::is_set_spec;

pub(crate) const OAI_NS: &str = "http://www.openarchives.org/OAI/2.0/";
pub(crate) const OAI_SCHEMA_LOCATION: &str =
    "http://www.openarchives.org/OAI/2.0/ http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd";
pub(crate) const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
pub(crate) const OAI_DC_NS: &str = "http://www.openarchives.org/OAI/2.0/oai_dc/";
pub(crate) const OAI_DC_SCHEMA: &str = "http://www.openarchives.org/OAI/2.0/oai_dc.xsd";
pub(crate) const DC_NS: &str = "http://purl.org/dc/elements/1.1/";
const PROVENANCE_NS: &str = "http://www.openarchives.org/OAI/2.0/provenance";
const PROVENANCE_LOCATION: &str = "http://www.openarchives.org/OAI/2.0/provenance \
    http://www.openarchives.org/OAI/2.0/provenance.xsd";
const OAI_IDENTIFIER_NS: &str = "http://www.openarchives.org/OAI/2.0/oai-identifier";
const OAI_IDENTIFIER_LOCATION: &str = "http://www.openarchives.org/OAI/2.0/oai-identifier \
    http://www.openarchives.org/OAI/2.0/oai-identifier.xsd";

/// The writer every response uses.
pub(crate) type Xml = Writer<Vec<u8>>;

/// A new writer with room for one chunk.
pub(crate) fn writer() -> Xml {
    Writer::new(Vec::with_capacity(64 * 1024))
}

/// Removes the characters XML 1.0 forbids (most C0 controls, U+FFFE/F),
/// which stored JSON strings may contain.
pub(crate) fn clean(s: &str) -> Cow<'_, str> {
    let ok = |c: char| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
    };
    if s.chars().all(ok) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().filter(|c| ok(*c)).collect())
    }
}

/// A UTC time at seconds granularity, as OAI-PMH writes it.
pub(crate) fn seconds(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `<name attrs…>`
pub(crate) fn start(x: &mut Xml, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
    let mut e = BytesStart::new(name);
    for (k, v) in attrs {
        e.push_attribute((*k, clean(v)));
    }
    x.write_event(Event::Start(e))
}

/// `</name>`
pub(crate) fn end(x: &mut Xml, name: &str) -> io::Result<()> {
    x.write_event(Event::End(BytesEnd::new(name)))
}

/// `<name attrs…>text</name>`, or `<name attrs…/>` for empty text.
pub(crate) fn element(
    x: &mut Xml,
    name: &str,
    attrs: &[(&str, &str)],
    text: &str,
) -> io::Result<()> {
    if text.is_empty() {
        let mut e = BytesStart::new(name);
        for (k, v) in attrs {
            e.push_attribute((*k, clean(v)));
        }
        return x.write_event(Event::Empty(e));
    }
    start(x, name, attrs)?;
    x.write_event(Event::Text(BytesText::new(&clean(text))))?;
    end(x, name)
}

/// The XML declaration, `<OAI-PMH>`, `<responseDate>` and `<request>`.
pub(crate) fn envelope_start(
    x: &mut Xml,
    response_date: DateTime<Utc>,
    base_url: &str,
    echo: &[(&'static str, String)],
) -> io::Result<()> {
    x.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    x.get_mut().push(b'\n');
    start(
        x,
        "OAI-PMH",
        &[
            ("xmlns", OAI_NS),
            ("xmlns:xsi", XSI_NS),
            ("xsi:schemaLocation", OAI_SCHEMA_LOCATION),
        ],
    )?;
    element(x, "responseDate", &[], &seconds(response_date))?;
    let attrs: Vec<(&str, &str)> = echo.iter().map(|(k, v)| (*k, v.as_str())).collect();
    element(x, "request", &attrs, base_url)
}

/// `</OAI-PMH>`
pub(crate) fn envelope_end(x: &mut Xml) -> io::Result<()> {
    end(x, "OAI-PMH")?;
    x.get_mut().push(b'\n');
    Ok(())
}

/// The `oai-identifier` description of Identify.
pub(crate) fn oai_identifier(x: &mut Xml, repository_identifier: &str) -> io::Result<()> {
    start(x, "description", &[])?;
    start(
        x,
        "oai-identifier",
        &[
            ("xmlns", OAI_IDENTIFIER_NS),
            ("xsi:schemaLocation", OAI_IDENTIFIER_LOCATION),
        ],
    )?;
    element(x, "scheme", &[], "oai")?;
    element(x, "repositoryIdentifier", &[], repository_identifier)?;
    element(x, "delimiter", &[], ":")?;
    element(
        x,
        "sampleIdentifier",
        &[],
        &format!("oai:{repository_identifier}:example-record-1"),
    )?;
    end(x, "oai-identifier")?;
    end(x, "description")
}

/// The setSpecs a record belongs to: its schema, its source and the
/// upstream sets it was harvested from (beneath its source).
pub(crate) fn set_specs(rec: &RecordVersion) -> Vec<String> {
    let mut specs = vec![format!("schema:{}", rec.schema_id)];
    if let Some(src) = &rec.source_id {
        specs.push(format!("source:{src}"));
        for up in rec.provenance.iter().flat_map(|p| p.set_specs.iter()) {
            let spec = format!("source:{src}:{up}");
            if is_set_spec(&spec) {
                specs.push(spec);
            }
        }
    }
    specs
}

/// A record's `<header>`.
pub(crate) fn header(x: &mut Xml, oai_id: &str, rec: &RecordVersion) -> io::Result<()> {
    if rec.deleted {
        start(x, "header", &[("status", "deleted")])?;
    } else {
        start(x, "header", &[])?;
    }
    element(x, "identifier", &[], oai_id)?;
    element(x, "datestamp", &[], &seconds(rec.changed_at))?;
    for spec in set_specs(rec) {
        element(x, "setSpec", &[], &spec)?;
    }
    end(x, "header")
}

/// The `about` container with the record's harvest provenance (OAI
/// provenance guidelines). Skipped, with a log line, when the upstream
/// datestamp cannot be written as a date, since the schema requires one.
pub(crate) fn provenance(
    x: &mut Xml,
    p: &Provenance,
    fallback_namespace: &str,
    altered: bool,
) -> io::Result<()> {
    let Ok(datestamp) = Datestamp::parse_lenient(&p.datestamp) else {
        tracing::warn!(identifier = %p.oai_identifier, datestamp = %p.datestamp,
            "upstream datestamp unreadable; provenance omitted");
        return Ok(());
    };
    start(x, "about", &[])?;
    start(
        x,
        "provenance",
        &[
            ("xmlns", PROVENANCE_NS),
            ("xsi:schemaLocation", PROVENANCE_LOCATION),
        ],
    )?;
    let harvest = seconds(p.harvest_time);
    start(
        x,
        "originDescription",
        &[
            ("harvestDate", &harvest),
            ("altered", if altered { "true" } else { "false" }),
        ],
    )?;
    element(x, "baseURL", &[], &p.base_url)?;
    element(x, "identifier", &[], &p.oai_identifier)?;
    element(x, "datestamp", &[], &datestamp.to_string())?;
    element(
        x,
        "metadataNamespace",
        &[],
        p.metadata_namespace
            .as_deref()
            .unwrap_or(fallback_namespace),
    )?;
    end(x, "originDescription")?;
    end(x, "provenance")?;
    end(x, "about")
}

/// Why a stored document cannot be embedded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EmbedError {
    #[error("the document is not in a readable encoding")]
    Encoding,
    #[error("the document has a DOCTYPE")]
    Doctype,
    #[error("the document has no root element")]
    Empty,
}

/// A stored XML document ready to be written as metadata content: its
/// prolog (XML declaration, comments, processing instructions) dropped,
/// otherwise as stored — documents were well-formed and valid when stored.
/// Documents in other encodings are transcoded to UTF-8.
pub(crate) fn prepare(doc: &[u8]) -> Result<Cow<'_, str>, EmbedError> {
    match std::str::from_utf8(doc) {
        Ok(s) => Ok(Cow::Borrowed(skip_prolog(s)?.trim_end())),
        Err(_) => {
            let text = transcode(doc)?;
            Ok(Cow::Owned(skip_prolog(&text)?.trim_end().to_owned()))
        }
    }
}

/// Decodes a document in the encoding its declaration (or BOM) names.
fn transcode(doc: &[u8]) -> Result<String, EmbedError> {
    let mut reader = quick_xml::Reader::from_reader(doc);
    let mut buf = Vec::new();
    // The first event is the declaration, which fixes the encoding.
    reader
        .read_event_into(&mut buf)
        .map_err(|_| EmbedError::Encoding)?;
    let encoding = reader.encoding();
    quick_xml::encoding::decode(doc, encoding)
        .map(Cow::into_owned)
        .map_err(|_| EmbedError::Encoding)
}

/// The document from its root element on.
fn skip_prolog(s: &str) -> Result<&str, EmbedError> {
    let mut rest = s.trim_start_matches('\u{FEFF}');
    loop {
        rest = rest.trim_start();
        if rest.starts_with("<?") {
            let end = rest.find("?>").ok_or(EmbedError::Empty)?;
            rest = &rest[end + 2..];
        } else if rest.starts_with("<!--") {
            let end = rest.find("-->").ok_or(EmbedError::Empty)?;
            rest = &rest[end + 3..];
        } else if rest.starts_with("<!") {
            return Err(EmbedError::Doctype);
        } else if rest.starts_with('<') {
            return Ok(rest);
        } else {
            return Err(EmbedError::Empty);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_without_prolog() {
        let doc = prepare(
            b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<!-- c --><a xmlns=\"urn:a\">\xC3\xA9</a>\n",
        )
        .expect("embeds");
        assert_eq!(doc, "<a xmlns=\"urn:a\">é</a>");
    }

    #[test]
    fn transcodes_latin1() {
        let doc =
            prepare(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a xmlns=\"urn:a\">\xE9</a>")
                .expect("embeds");
        assert_eq!(doc, "<a xmlns=\"urn:a\">é</a>");
    }

    #[test]
    fn refuses_doctype_and_empty() {
        assert!(matches!(
            prepare(b"<!DOCTYPE a><a/>"),
            Err(EmbedError::Doctype)
        ));
        assert!(matches!(prepare(b"  "), Err(EmbedError::Empty)));
    }

    #[test]
    fn cleans_forbidden_characters() {
        assert_eq!(clean("a\u{1}b\tc"), "ab\tc");
        assert!(matches!(clean("plain"), Cow::Borrowed(_)));
    }
}
