//! OAI-PMH response parsing: one page in, typed records, headers, token
//! and protocol errors out — tolerant where providers are sloppy, strict
//! where data could be lost, and never panicking on any input.
//!
//! Depends on `sheaf-domain` (granularity, datestamps), quick-xml and
//! [`crate::repair`].
//!
//! How it reads a page:
//! - the body is first repaired into UTF-8 text ([`crate::repair`]):
//!   undeclared gzip, legacy or wrong encodings, invalid bytes, illegal
//!   XML characters; each repair becomes a warning on the page or on the
//!   record it falls in;
//! - envelope elements are recognised by local name in the OAI namespace
//!   or in none (envelopes with every element prefixed, with no namespace
//!   at all, or with a prefix rebound later all occur);
//! - a well-formedness problem inside one `<record>` (mismatched or
//!   unclosed tags, undefined entities, undeclared prefixes, bad
//!   attributes, a stray `&`) rejects that record with its reason and the
//!   rest of the page is kept; outside records it is a page error;
//! - each record's metadata element becomes a standalone document that
//!   re-declares every namespace in scope in the envelope.
//!
//! Why quick-xml's `Reader` with its `NamespaceResolver` driven by hand
//! rather than `NsReader`: recovering from a malformed record needs control
//! of the element and namespace scope stacks, and the re-declaration needs
//! every binding in scope, which this module keeps per element.

use chrono::{NaiveDate, NaiveDateTime};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{NamespaceResolver, PrefixDeclaration, ResolveResult};
use quick_xml::reader::Reader;
use sheaf_domain::{Datestamp, Granularity};

use crate::repair::{self, Repair};
use crate::resource::resolve_ref;

/// The OAI-PMH 2.0 namespace.
pub const OAI_NS: &str = "http://www.openarchives.org/OAI/2.0/";

/// What Identify says about the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identify {
    pub granularity: Granularity,
    pub earliest_datestamp: Option<String>,
    /// `no`, `transient` or `persistent` (as sent; empty when missing).
    pub deleted_record: String,
    pub repository_name: String,
    pub base_url: String,
    pub protocol_version: String,
    pub admin_emails: Vec<String>,
    /// Compression encodings the provider advertises (`gzip`, `deflate`).
    pub compression: Vec<String>,
    pub response_date: Option<String>,
}

impl Identify {
    /// Formats an instant as a `from`/`until` argument at this provider's
    /// granularity (truncating).
    pub fn format_datestamp(&self, t: chrono::DateTime<chrono::Utc>) -> String {
        Datestamp::new(t, self.granularity).to_string()
    }
}

/// A record header (also the items of ListIdentifiers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// Trimmed, line breaks removed; empty when the provider sent none.
    pub identifier: String,
    /// As sent, whitespace removed; empty when missing. See
    /// [`Header::datestamp_parsed`].
    pub datestamp: String,
    pub set_specs: Vec<String>,
    pub deleted: bool,
}

impl Header {
    /// The datestamp read leniently (see [`parse_datestamp_lenient`]).
    pub fn datestamp_parsed(&self) -> Option<Datestamp> {
        parse_datestamp_lenient(&self.datestamp)
    }
}

/// One record of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRecord {
    pub header: Header,
    /// The metadata element as a standalone UTF-8 document that
    /// re-declares every namespace in scope in the envelope. `Ok(None)` for
    /// a deleted record; `Err(reason)` when the record is malformed and
    /// must be rejected.
    pub metadata: Result<Option<Vec<u8>>, String>,
    /// The namespace URI of the metadata element (`None`: no metadata or
    /// no namespace).
    pub metadata_namespace: Option<String>,
    /// The record's bytes (after repair) when `metadata` is `Err`, for its
    /// rejection; empty otherwise (a stored record has its document, and
    /// pages stay small).
    pub raw: Vec<u8>,
    /// Repairs made inside this record (stripped characters, re-decoded
    /// bytes) and tolerated oddities (missing datestamp).
    pub warnings: Vec<String>,
}

/// A resumption token. An empty `value` ends the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumptionToken {
    /// Trimmed, line breaks removed.
    pub value: String,
    pub complete_list_size: Option<u64>,
    pub cursor: Option<u64>,
    pub expiration_date: Option<String>,
}

impl ResumptionToken {
    /// Whether another page follows.
    pub fn has_more(&self) -> bool {
        !self.value.is_empty()
    }
}

/// A metadata format from ListMetadataFormats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataFormat {
    pub prefix: String,
    pub schema: String,
    pub namespace: String,
}

/// One parsed response page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub response_date: Option<String>,
    /// ListRecords / GetRecord records, in order.
    pub records: Vec<ParsedRecord>,
    /// The token, if the element was present (it may be empty).
    pub token: Option<ResumptionToken>,
    /// ListIdentifiers headers, in order.
    pub identifiers: Vec<Header>,
    /// ListSets setSpecs, in order.
    pub sets: Vec<String>,
    pub metadata_formats: Vec<MetadataFormat>,
    /// The provider answered `noRecordsMatch`: success with no records.
    pub no_records_match: bool,
    /// Page-level repairs and oddities (transcoding, trailing garbage).
    pub warnings: Vec<String>,
}

impl Page {
    /// The token to send next, if the list continues.
    pub fn next_token(&self) -> Option<&str> {
        self.token
            .as_ref()
            .filter(|t| t.has_more())
            .map(|t| t.value.as_str())
    }

    /// Number of items (records plus identifiers) on the page.
    pub fn len(&self) -> usize {
        self.records.len() + self.identifiers.len()
    }

    /// Whether the page carries no records and no identifiers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub use sheaf_domain::OaiErrorCode;

/// Why a whole page could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// The provider answered with an OAI-PMH error (never `noRecordsMatch`,
    /// which is an empty page).
    #[error("OAI-PMH error {code}: {message}")]
    Oai { code: OaiErrorCode, message: String },
    /// Not an OAI-PMH response: empty body, HTML, plain text, other XML.
    #[error("not an OAI-PMH response: {0}")]
    NotOai(String),
    /// Broken XML outside any single record (or a truncated body).
    /// `position` is a byte offset into the repaired UTF-8 text.
    #[error("malformed XML at byte {position}: {message}")]
    Malformed { position: u64, message: String },
}

/// Parses a ListRecords, ListIdentifiers, GetRecord, ListSets or
/// ListMetadataFormats response.
pub fn parse_page(body: &[u8]) -> Result<Page, PageError> {
    let doc = parse_document(body)?;
    if doc.identify.is_some() {
        return Err(PageError::NotOai(
            "an Identify response where a list was expected".into(),
        ));
    }
    Ok(doc.page)
}

/// Parses an Identify response.
pub fn parse_identify(body: &[u8]) -> Result<Identify, PageError> {
    let doc = parse_document(body)?;
    let Some(b) = doc.identify else {
        return Err(PageError::NotOai(
            "the response has no <Identify> element".into(),
        ));
    };
    let get = |k: &str| {
        b.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let all = |k: &str| {
        b.iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    let earliest = get("earliestDatestamp");
    Ok(Identify {
        granularity: Granularity::from_oai(&get("granularity")),
        earliest_datestamp: (!earliest.is_empty()).then_some(earliest),
        deleted_record: get("deletedRecord"),
        repository_name: get("repositoryName"),
        base_url: get("baseURL"),
        protocol_version: get("protocolVersion"),
        admin_emails: all("adminEmail"),
        compression: all("compression"),
        response_date: doc.page.response_date,
    })
}

/// Reads the datestamp forms providers actually send: the two OAI forms,
/// RFC 3339 with offsets or fractions, offsets without a colon
/// (`+0000`), and `YYYYMMDD`.
pub fn parse_datestamp_lenient(s: &str) -> Option<Datestamp> {
    let s = s.trim();
    if let Ok(d) = Datestamp::parse_lenient(s) {
        return Some(d);
    }
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        let d = NaiveDate::parse_from_str(s, "%Y%m%d").ok()?;
        return Some(Datestamp::new(
            d.and_hms_opt(0, 0, 0)?.and_utc(),
            Granularity::Day,
        ));
    }
    if let Ok(t) = chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(Datestamp::new(t.to_utc(), Granularity::Seconds));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| Datestamp::new(t.and_utc(), Granularity::Seconds))
}

// ---------------------------------------------------------------------------
// The reader.

struct Doc {
    page: Page,
    /// Identify's fields (name, value) when the response is an Identify.
    identify: Option<Vec<(String, String)>>,
}

/// The role of an open element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Root,
    ResponseDate,
    Error,
    Identify,
    IdentifyField,
    Verb,
    Record,
    Header,
    HeaderField,
    Metadata,
    MetaRoot,
    InMetadata,
    Token,
    Set,
    SetSpec,
    Format,
    FormatField,
    /// Anything else: `request`, `about`, `description`, unknown elements.
    Ignore,
}

impl Kind {
    fn captures_text(self) -> bool {
        matches!(
            self,
            Kind::ResponseDate
                | Kind::Error
                | Kind::IdentifyField
                | Kind::HeaderField
                | Kind::Token
                | Kind::SetSpec
                | Kind::FormatField
        )
    }

    fn in_metadata(self) -> bool {
        matches!(self, Kind::MetaRoot | Kind::InMetadata)
    }
}

struct Frame {
    qname: String,
    local: String,
    kind: Kind,
    /// Namespace declarations on this element: prefix (`None` = default)
    /// and URI (unescaped).
    decls: Vec<(Option<String>, String)>,
    /// The `code` attribute of an error, the `status` of a header, …
    attr: Option<String>,
}

#[derive(Default)]
struct RecordState {
    start: usize,
    /// Index of the record's frame in the stack.
    frame: usize,
    header: Option<Header>,
    metadata_element: bool,
    meta: Option<MetaRoot>,
    error: Option<String>,
    warnings: Vec<String>,
}

impl RecordState {
    fn fail(&mut self, why: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(why.into());
        }
    }
}

struct MetaRoot {
    /// The rebuilt start tag, declarations included.
    head: String,
    /// Where the original start tag ends (content begins).
    content_start: usize,
    /// Where the element's end tag ends; `None` while open or for `<x/>`.
    end: Option<usize>,
    empty: bool,
    namespace: Option<String>,
}

struct State<'a> {
    text: &'a str,
    repairs: &'a [Repair],
    resolver: NamespaceResolver,
    stack: Vec<Frame>,
    buf: String,
    page: Page,
    identify: Option<Vec<(String, String)>>,
    errors: Vec<(OaiErrorCode, String)>,
    record: Option<RecordState>,
    header: Option<Header>,
    root_seen: bool,
    root_closed: bool,
    saw_verb: bool,
}

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

fn parse_document(body: &[u8]) -> Result<Doc, PageError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(PageError::NotOai("empty body".into()));
    }
    let prepared = repair::prepare(body).map_err(PageError::NotOai)?;
    let text = prepared.text.as_str();

    let mut reader = Reader::from_str(text);
    {
        let c = reader.config_mut();
        // Tag matching and `&` handling are checked here, so that a broken
        // record can be rejected alone instead of failing the page.
        c.check_end_names = false;
        c.allow_unmatched_ends = true;
        c.allow_dangling_amp = true;
        c.expand_empty_elements = false;
    }

    let mut st = State {
        text,
        repairs: &prepared.repairs,
        resolver: NamespaceResolver::default(),
        stack: Vec::new(),
        buf: String::new(),
        page: Page::default(),
        identify: None,
        errors: Vec::new(),
        record: None,
        header: None,
        root_seen: false,
        root_closed: false,
        saw_verb: false,
    };
    st.page.warnings.extend(prepared.notes.iter().cloned());

    loop {
        let before = reader.buffer_position() as usize;
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) => {
                let position = reader.error_position();
                if !st.root_seen {
                    return Err(PageError::NotOai(format!(
                        "not XML ({e}); body starts with {:?}",
                        snippet(text)
                    )));
                }
                return Err(PageError::Malformed {
                    position,
                    message: e.to_string(),
                });
            }
        };
        let after = reader.buffer_position() as usize;
        if st.root_closed {
            match event {
                Event::Eof => break,
                Event::Comment(_) | Event::PI(_) => continue,
                Event::Text(t) if t.trim().is_empty() => continue,
                _ => {
                    st.page
                        .warnings
                        .push("ignored content after the root element".into());
                    break;
                }
            }
        }
        match event {
            Event::Start(e) => st.start(&e, before, after, false)?,
            Event::Empty(e) => {
                st.start(&e, before, after, true)?;
                st.close_top(after)?;
            }
            Event::End(e) => st.end(e.name().as_ref(), before, after)?,
            Event::Text(t) => {
                let s = t.xml10_content();
                st.text_event(&s, before)?;
            }
            Event::CData(t) => {
                let s = t.xml10_content();
                st.chars(&s);
            }
            Event::GeneralRef(r) => match resolve_ref(&r) {
                Ok(c) => {
                    let mut b = [0u8; 4];
                    st.chars(c.encode_utf8(&mut b));
                }
                Err(why) => st.problem(why, before)?,
            },
            Event::DocType(d) => {
                if d.trim_start().to_ascii_lowercase().starts_with("html") {
                    return Err(PageError::NotOai("an HTML page".into()));
                }
                if !st.root_seen {
                    return Err(PageError::NotOai(
                        "a document with a DTD (OAI-PMH responses have none)".into(),
                    ));
                }
                return Err(PageError::Malformed {
                    position: before as u64,
                    message: "DOCTYPE inside the document".into(),
                });
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }

    if !st.root_seen {
        return Err(PageError::NotOai(format!(
            "no XML element; body starts with {:?}",
            snippet(text)
        )));
    }
    if let Some(open) = st.stack.last() {
        return Err(PageError::Malformed {
            position: text.len() as u64,
            message: format!("document ends inside <{}> (truncated?)", open.qname),
        });
    }

    if !st.errors.is_empty() {
        if st
            .errors
            .iter()
            .any(|(c, _)| *c == OaiErrorCode::NoRecordsMatch)
        {
            st.page.no_records_match = true;
        } else {
            let pick = st
                .errors
                .iter()
                .position(|(c, _)| *c == OaiErrorCode::BadResumptionToken)
                .unwrap_or(0);
            let (code, message) = st.errors.swap_remove(pick);
            return Err(PageError::Oai { code, message });
        }
    } else if !st.saw_verb && st.page.is_empty() && st.identify.is_none() {
        return Err(PageError::NotOai(
            "the OAI-PMH response has neither a verb element nor an error".into(),
        ));
    }
    Ok(Doc {
        page: st.page,
        identify: st.identify,
    })
}

fn snippet(text: &str) -> String {
    let t = text.trim_start();
    let end = t.char_indices().nth(60).map(|(i, _)| i).unwrap_or(t.len());
    t[..end].to_owned()
}

/// Removes line breaks and tabs (never part of an identifier, datestamp,
/// setSpec or token) and trims.
fn clean_atom(s: &str) -> String {
    let s = s.trim();
    if s.contains(['\n', '\r', '\t']) {
        s.chars()
            .filter(|c| !matches!(c, '\n' | '\r' | '\t'))
            .collect::<String>()
            .trim()
            .to_owned()
    } else {
        s.to_owned()
    }
}

impl State<'_> {
    fn parent_kind(&self) -> Option<Kind> {
        self.stack.last().map(|f| f.kind)
    }

    fn in_record(&self) -> bool {
        self.record.is_some()
    }

    /// A well-formedness problem at `pos`: rejects the current record, or
    /// fails the page outside records.
    fn problem(&mut self, why: String, pos: usize) -> Result<(), PageError> {
        match &mut self.record {
            Some(r) => {
                r.fail(why);
                Ok(())
            }
            None => Err(PageError::Malformed {
                position: pos as u64,
                message: why,
            }),
        }
    }

    fn chars(&mut self, s: &str) {
        if self.parent_kind().is_some_and(Kind::captures_text) {
            self.buf.push_str(s);
        }
    }

    fn text_event(&mut self, s: &str, pos: usize) -> Result<(), PageError> {
        if !self.root_seen {
            if !s.trim().is_empty() {
                return Err(PageError::NotOai(format!(
                    "not XML; body starts with {:?}",
                    snippet(self.text)
                )));
            }
            return Ok(());
        }
        if s.contains('&') {
            if self.in_record() {
                self.problem("unescaped & in text".into(), pos)?;
            } else {
                // Providers echo request URLs with raw `&`; outside records
                // the text is taken as written.
                let element = self.stack.last().map(|f| f.qname.as_str()).unwrap_or("");
                let note = format!("unescaped & in <{element}> taken literally");
                if !self.page.warnings.contains(&note) {
                    self.page.warnings.push(note);
                }
            }
        }
        self.chars(s);
        Ok(())
    }

    fn child_kind(&self, local: &str) -> Kind {
        let Some(parent) = self.parent_kind() else {
            return Kind::Root;
        };
        match (parent, local) {
            (Kind::Root, "responseDate") => Kind::ResponseDate,
            (Kind::Root, "error") => Kind::Error,
            (Kind::Root, "Identify") => Kind::Identify,
            (
                Kind::Root,
                "ListRecords"
                | "ListIdentifiers"
                | "GetRecord"
                | "ListSets"
                | "ListMetadataFormats",
            ) => Kind::Verb,
            (Kind::Root | Kind::Verb, "record") => Kind::Record,
            (Kind::Root | Kind::Verb | Kind::Record, "header") => Kind::Header,
            (Kind::Root | Kind::Verb, "resumptionToken") => Kind::Token,
            (Kind::Verb, "set") => Kind::Set,
            (Kind::Verb, "metadataFormat") => Kind::Format,
            (
                Kind::Identify,
                "repositoryName" | "baseURL" | "protocolVersion" | "adminEmail"
                | "earliestDatestamp" | "deletedRecord" | "granularity" | "compression",
            ) => Kind::IdentifyField,
            (Kind::Record, "metadata") => Kind::Metadata,
            (Kind::Header, "identifier" | "datestamp" | "setSpec") => Kind::HeaderField,
            (Kind::Metadata, _) => Kind::MetaRoot,
            (Kind::MetaRoot | Kind::InMetadata, _) => Kind::InMetadata,
            (Kind::Set, "setSpec") => Kind::SetSpec,
            (Kind::Format, "metadataPrefix" | "schema" | "metadataNamespace") => Kind::FormatField,
            _ => Kind::Ignore,
        }
    }

    fn start(
        &mut self,
        e: &BytesStart<'_>,
        before: usize,
        after: usize,
        empty: bool,
    ) -> Result<(), PageError> {
        let qname = e.name().as_ref().to_owned();
        let local = e.local_name().as_ref().to_owned();
        let mut kind = self.child_kind(&local);
        if kind == Kind::Root {
            if self.root_seen {
                return Err(PageError::Malformed {
                    position: before as u64,
                    message: "a second root element".into(),
                });
            }
            self.root_seen = true;
            if local.eq_ignore_ascii_case("html") {
                return Err(PageError::NotOai("an HTML page".into()));
            }
            if local != "OAI-PMH" {
                return Err(PageError::NotOai(format!(
                    "the root element is <{qname}>, not <OAI-PMH>"
                )));
            }
        }

        // Attributes: well-formedness, namespace declarations, the few
        // values the envelope needs.
        let mut decls = Vec::new();
        let mut attr = None;
        let mut attr_problem = None;
        let mut token_attrs = ResumptionToken::default();
        for a in e.attributes() {
            let a = match a {
                Ok(a) => a,
                Err(err) => {
                    attr_problem = Some(format!("malformed attribute in <{qname}>: {err}"));
                    break;
                }
            };
            let value = match a.normalized_value(quick_xml::XmlVersion::Implicit1_0) {
                Ok(v) => v.into_owned(),
                Err(err) => {
                    attr_problem = Some(format!("bad attribute value in <{qname}>: {err}"));
                    continue;
                }
            };
            if let Some(decl) = a.key.as_namespace_binding() {
                let prefix = match decl {
                    PrefixDeclaration::Default => None,
                    PrefixDeclaration::Named(p) => Some(p.to_owned()),
                };
                decls.push((prefix, value));
                continue;
            }
            let key = a.key.local_name();
            match (kind, key.as_ref()) {
                (Kind::Error, "code") | (Kind::Header, "status") => attr = Some(value),
                (Kind::Token, "completeListSize") => {
                    token_attrs.complete_list_size = value.trim().parse().ok();
                }
                (Kind::Token, "cursor") => token_attrs.cursor = value.trim().parse().ok(),
                (Kind::Token, "expirationDate") => {
                    let v = clean_atom(&value);
                    token_attrs.expiration_date = (!v.is_empty()).then_some(v);
                }
                _ => {}
            }
        }

        // Namespaces. quick-xml validates the reserved prefixes.
        let ns_problem = self.resolver.push(e).err().map(|err| err.to_string());
        let (resolved, _) = self.resolver.resolve_element(e.name());
        let namespace = match &resolved {
            ResolveResult::Bound(n) => Some(n.as_ref().to_owned()),
            _ => None,
        };
        let unknown_prefix = match &resolved {
            ResolveResult::Unknown(p) => Some(p.clone()),
            _ => None,
        };

        if kind == Kind::Record {
            if self.record.is_some() {
                // A record inside a record: the previous one never closed.
                kind = Kind::Ignore;
                if let Some(r) = &mut self.record {
                    r.fail("a <record> starts inside another record");
                }
            } else {
                self.record = Some(RecordState {
                    start: before,
                    frame: self.stack.len(),
                    ..RecordState::default()
                });
            }
        }

        if kind.in_metadata() || kind == Kind::Metadata {
            if let Some(p) = unknown_prefix {
                self.problem(
                    format!("undeclared namespace prefix {p:?} on <{qname}>"),
                    before,
                )?;
            }
            for a in e.attributes().flatten() {
                if a.key.as_namespace_binding().is_some() {
                    continue;
                }
                if let (ResolveResult::Unknown(p), _) = self.resolver.resolve_attribute(a.key) {
                    self.problem(
                        format!(
                            "undeclared namespace prefix {p:?} on attribute {} of <{qname}>",
                            a.key.as_ref()
                        ),
                        before,
                    )?;
                }
            }
        }
        if let Some(why) = attr_problem.or(ns_problem) {
            // Inside a record, or in an envelope element nobody reads: the
            // record is rejected or the problem ignored; in elements the
            // envelope needs, the page fails.
            if self.in_record() || kind != Kind::Ignore {
                self.problem(why, before)?;
            }
        }

        match kind {
            Kind::Metadata => {
                if let Some(r) = &mut self.record {
                    r.metadata_element = true;
                }
            }
            Kind::MetaRoot => {
                let in_scope = self.in_scope(&decls);
                if let Some(r) = &mut self.record {
                    if r.meta.is_some() {
                        r.fail("<metadata> holds more than one element");
                        kind = Kind::InMetadata;
                    } else {
                        let tag = &self.text[before..after];
                        let inner = if empty {
                            tag.strip_suffix("/>")
                        } else {
                            tag.strip_suffix('>')
                        }
                        .unwrap_or(tag)
                        .trim_end();
                        let mut head = String::with_capacity(inner.len() + 128);
                        head.push_str(inner);
                        for (prefix, uri) in in_scope {
                            head.push_str(" xmlns");
                            if let Some(p) = prefix {
                                head.push(':');
                                head.push_str(&p);
                            }
                            head.push_str("=\"");
                            head.push_str(&quick_xml::escape::escape(uri.as_str()));
                            head.push('"');
                        }
                        head.push_str(if empty { "/>" } else { ">" });
                        r.meta = Some(MetaRoot {
                            head,
                            content_start: after,
                            end: None,
                            empty,
                            namespace,
                        });
                    }
                }
            }
            Kind::Header => {
                self.header = Some(Header {
                    deleted: attr
                        .as_deref()
                        .is_some_and(|s| s.trim().eq_ignore_ascii_case("deleted")),
                    ..Header::default()
                });
            }
            Kind::Token => self.page.token = Some(token_attrs),
            Kind::Verb => self.saw_verb = true,
            Kind::Identify => {
                self.saw_verb = true;
                self.identify = Some(Vec::new());
            }
            _ => {}
        }
        if kind.captures_text() {
            self.buf.clear();
        }
        self.stack.push(Frame {
            qname,
            local,
            kind,
            decls,
            attr,
        });
        Ok(())
    }

    /// Every namespace binding in scope for a new element (outermost first,
    /// inner overriding), minus those the element declares itself.
    fn in_scope(&self, own: &[(Option<String>, String)]) -> Vec<(Option<String>, String)> {
        let mut map: Vec<(Option<String>, String)> = Vec::new();
        for f in &self.stack {
            for (prefix, uri) in &f.decls {
                map.retain(|(p, _)| p != prefix);
                if !uri.is_empty() {
                    map.push((prefix.clone(), uri.clone()));
                }
            }
        }
        map.retain(|(p, _)| p.as_deref() != Some("xml") && !own.iter().any(|(op, _)| op == p));
        map
    }

    fn end(&mut self, qname: &str, before: usize, after: usize) -> Result<(), PageError> {
        let Some(top) = self.stack.last() else {
            return Err(PageError::Malformed {
                position: before as u64,
                message: format!("end tag </{qname}> without a start tag"),
            });
        };
        if top.qname == qname {
            return self.close_top(after);
        }
        let expected = top.qname.clone();
        let found = self.stack.iter().rposition(|f| f.qname == qname);
        let Some(rec_frame) = self.record.as_ref().map(|r| r.frame) else {
            return Err(PageError::Malformed {
                position: before as u64,
                message: format!("end tag </{qname}> where </{expected}> was expected"),
            });
        };
        if let Some(r) = &mut self.record {
            r.fail(format!(
                "mismatched end tag </{qname}> where </{expected}> was expected"
            ));
        }
        match found {
            // Close everything opened since the matching start tag; that
            // may end the record (rejected), but the envelope goes on.
            Some(i) => {
                while self.stack.len() > i + 1 {
                    self.close_top(before)?;
                }
                self.close_top(after)
            }
            // A stray end tag inside the record: skip it.
            None if self.stack.len() > rec_frame => Ok(()),
            None => Err(PageError::Malformed {
                position: before as u64,
                message: format!("end tag </{qname}> without a start tag"),
            }),
        }
    }

    fn close_top(&mut self, after: usize) -> Result<(), PageError> {
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        self.resolver.pop();
        let text = if frame.kind.captures_text() {
            std::mem::take(&mut self.buf)
        } else {
            String::new()
        };
        match frame.kind {
            Kind::Root => self.root_closed = true,
            Kind::ResponseDate => {
                let v = clean_atom(&text);
                self.page.response_date = (!v.is_empty()).then_some(v);
            }
            Kind::Error => {
                let code = OaiErrorCode::parse(frame.attr.as_deref().unwrap_or(""));
                self.errors
                    .push((code, text.split_whitespace().collect::<Vec<_>>().join(" ")));
            }
            Kind::IdentifyField => {
                if let Some(fields) = &mut self.identify {
                    fields.push((frame.local, text.trim().to_owned()));
                }
            }
            Kind::HeaderField => {
                if let Some(h) = &mut self.header {
                    let v = clean_atom(&text);
                    match frame.local.as_str() {
                        "identifier" => h.identifier = v,
                        "datestamp" => h.datestamp = v.split_whitespace().collect(),
                        _ => {
                            if !v.is_empty() {
                                h.set_specs.push(v);
                            }
                        }
                    }
                }
            }
            Kind::Header => {
                if let Some(h) = self.header.take() {
                    match &mut self.record {
                        Some(r) if r.header.is_none() => r.header = Some(h),
                        Some(r) => r.fail("a record with two headers"),
                        None => self.page.identifiers.push(h),
                    }
                }
            }
            Kind::MetaRoot => {
                if let Some(m) = self.record.as_mut().and_then(|r| r.meta.as_mut())
                    && m.end.is_none()
                    && !m.empty
                {
                    m.end = Some(after);
                }
            }
            Kind::Token => {
                if let Some(t) = &mut self.page.token {
                    t.value = clean_atom(&text);
                }
            }
            Kind::SetSpec => {
                let v = clean_atom(&text);
                if !v.is_empty() {
                    self.page.sets.push(v);
                }
            }
            Kind::FormatField => {
                let v = text.trim().to_owned();
                match frame.local.as_str() {
                    "metadataPrefix" => self.page.metadata_formats.push(MetadataFormat {
                        prefix: v,
                        ..MetadataFormat::default()
                    }),
                    field => {
                        if let Some(f) = self.page.metadata_formats.last_mut() {
                            if field == "schema" {
                                f.schema = v;
                            } else {
                                f.namespace = v;
                            }
                        }
                    }
                }
            }
            Kind::Record => {
                if let Some(r) = self.record.take() {
                    let rec = self.finish_record(r, after);
                    self.page.records.push(rec);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn finish_record(&self, r: RecordState, end: usize) -> ParsedRecord {
        let start = r.start;
        let mut warnings = r.warnings;
        let lo = self.repairs.partition_point(|x| x.offset < r.start);
        let hi = self.repairs.partition_point(|x| x.offset < end);
        warnings.extend(self.repairs[lo..hi].iter().map(|x| x.message.clone()));
        let has_header = r.header.is_some();
        let header = r.header.unwrap_or_default();
        let metadata_namespace = r.meta.as_ref().and_then(|m| m.namespace.clone());
        let metadata = if let Some(e) = r.error {
            Err(e)
        } else if !has_header {
            Err("record has no <header>".into())
        } else if header.identifier.is_empty() {
            Err("header has no identifier".into())
        } else if header.deleted {
            Ok(None)
        } else {
            if header.datestamp.is_empty() {
                warnings.push("header has no datestamp".into());
            }
            match r.meta {
                None if r.metadata_element => Err("<metadata> has no child element".into()),
                None => Err("record has no <metadata> element".into()),
                Some(m) => {
                    let body = match m.end {
                        Some(e) => self.text.get(m.content_start..e).unwrap_or_default(),
                        None => "",
                    };
                    let mut doc = String::with_capacity(XML_DECL.len() + m.head.len() + body.len());
                    doc.push_str(XML_DECL);
                    doc.push_str(&m.head);
                    doc.push_str(body);
                    Ok(Some(doc.into_bytes()))
                }
            }
        };
        // Only a record that is rejected as it stands needs its bytes.
        let raw = match &metadata {
            Err(_) => self
                .text
                .get(start..end)
                .unwrap_or_default()
                .as_bytes()
                .to_vec(),
            Ok(_) => Vec::new(),
        };
        ParsedRecord {
            header,
            metadata,
            metadata_namespace,
            raw,
            warnings,
        }
    }
}
