//! XSLT crosswalks to `oai_dc` (libxslt through the `libxslt` crate).
//!
//! Each `[[oai.crosswalks]]` stylesheet is read and audited once at
//! startup, then compiled by each of a few dedicated worker threads, which
//! keep their compiled copies for the life of the process (libxml2 and
//! libxslt objects are not `Send`, so every thread owns its own). Requests
//! hand a document to the pool and await the Dublin Core fields it yields;
//! a transform that fails, times out or does not produce `oai_dc` is
//! reported as an error and the caller falls back to the DataCite
//! crosswalk.
//!
//! The `libxslt` crate exposes no safe way to set libxslt's security
//! preferences, so the audit refuses, before compiling, everything that
//! could load or write a resource: a DOCTYPE, `xsl:import`,
//! `xsl:include`, `document()`, `xsl:document`, extension elements and
//! the namespaces of extension functions that evaluate strings as XPath.
//! The stylesheet itself is served to libxml2 from the audited bytes by
//! `sheaf-validate`'s loader (the one input handler Sheaf registers), so
//! what is compiled is what was audited.
//!
//! Depends on `sheaf-domain`, `sheaf-validate` (loader, parser options)
//! and the `[oai]` config.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libxml::parser::Parser;
use libxml::tree::{Document, Node};
use quick_xml::XmlVersion;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use sheaf_domain::SchemaId;
use tokio::sync::oneshot;

use crate::config::{ConfigError, CrosswalkConfig};
use crate::xml::{DC_NS, OAI_DC_NS};

const XSL_NS: &str = "http://www.w3.org/1999/XSL/Transform";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
/// Largest stylesheet accepted.
const MAX_STYLESHEET_BYTES: usize = 4 * 1024 * 1024;
/// How long one transform may take before the DataCite crosswalk is used.
const TRANSFORM_TIMEOUT: Duration = Duration::from_secs(10);
/// Namespaces whose extension functions evaluate strings as XPath (and so
/// could call `document()` at run time) or write files.
const REFUSED_NAMESPACES: &[&str] = &[
    "http://exslt.org/dynamic",
    "http://icl.com/saxon",
    "http://www.jclark.com/xt",
    "http://xml.apache.org/xalan/redirect",
    "org.apache.xalan.xslt.extensions.Redirect",
    "http://xmlsoft.org/XSLT/namespace",
];
/// The fifteen elements of unqualified Dublin Core, as `oai_dc` allows them.
const DC_ELEMENTS: &[&str] = &[
    "title",
    "creator",
    "subject",
    "description",
    "publisher",
    "contributor",
    "date",
    "type",
    "format",
    "identifier",
    "source",
    "language",
    "relation",
    "coverage",
    "rights",
];

/// One Dublin Core element produced by a stylesheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DcField {
    /// The qualified name to write, e.g. `dc:title`.
    pub name: String,
    pub lang: Option<String>,
    pub value: String,
}

/// Which records a stylesheet applies to.
#[derive(Debug)]
enum Match {
    Schema(SchemaId),
    Namespace(String),
}

struct Job {
    index: usize,
    document: Vec<u8>,
    reply: oneshot::Sender<Result<Vec<DcField>, String>>,
}

/// The configured crosswalks and the threads that apply them.
#[derive(Default)]
pub(crate) struct Crosswalks {
    rules: Vec<(Match, PathBuf)>,
    jobs: Option<Mutex<mpsc::Sender<Job>>>,
}

impl std::fmt::Debug for Crosswalks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crosswalks")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Crosswalks {
    /// Reads, audits and compiles every stylesheet; an error names the
    /// file and what is wrong with it.
    pub(crate) fn load(configs: &[CrosswalkConfig]) -> Result<Self, ConfigError> {
        if configs.is_empty() {
            return Ok(Self::default());
        }
        let mut rules = Vec::new();
        let mut sources = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let at = format!("crosswalks[{i}]");
            let m = match (&c.schema, &c.namespace) {
                (Some(s), None) => Match::Schema(
                    SchemaId::parse(s)
                        .map_err(|_| ConfigError(format!("{at}.schema {s:?} is not a schemaId")))?,
                ),
                (None, Some(n)) => Match::Namespace(n.clone()),
                _ => {
                    return Err(ConfigError(format!(
                        "{at} needs exactly one of schema and namespace"
                    )));
                }
            };
            let (url, bytes) = read_stylesheet(&c.stylesheet)?;
            rules.push((m, c.stylesheet.clone()));
            sources.push((url, bytes));
        }
        let jobs = start_pool(&sources).map_err(|e| match e {
            PoolError::Compile(i) => ConfigError(format!(
                "crosswalk stylesheet {} does not compile as XSLT 1.0 (libxslt's messages are on stderr)",
                rules
                    .get(i)
                    .map_or_else(String::new, |(_, p)| p.display().to_string())
            )),
            PoolError::Spawn(e) => ConfigError(format!("cannot start the XSLT threads: {e}")),
        })?;
        Ok(Self {
            rules,
            jobs: Some(Mutex::new(jobs)),
        })
    }

    /// The stylesheet for records of `schema` whose documents are in
    /// `namespace`, if one is configured.
    pub(crate) fn find(&self, schema: &SchemaId, namespace: Option<&str>) -> Option<usize> {
        self.rules.iter().position(|(m, _)| match m {
            Match::Schema(s) => s == schema,
            Match::Namespace(n) => Some(n.as_str()) == namespace,
        })
    }

    /// Applies stylesheet `index` to `document` on the XSLT threads.
    pub(crate) async fn apply(
        &self,
        index: usize,
        document: Vec<u8>,
    ) -> Result<Vec<DcField>, String> {
        let sender = self
            .jobs
            .as_ref()
            .ok_or("no crosswalk stylesheets are configured")?
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (reply, answer) = oneshot::channel();
        sender
            .send(Job {
                index,
                document,
                reply,
            })
            .map_err(|_| "the XSLT threads have stopped".to_owned())?;
        match tokio::time::timeout(TRANSFORM_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the XSLT thread dropped the job".to_owned()),
            Err(_) => Err(format!(
                "the transform took longer than {}s",
                TRANSFORM_TIMEOUT.as_secs()
            )),
        }
    }

    /// The stylesheet file of rule `index`, for logs.
    pub(crate) fn file(&self, index: usize) -> String {
        self.rules
            .get(index)
            .map_or_else(String::new, |(_, p)| p.display().to_string())
    }
}

/// Reads and audits one stylesheet; returns the URL libxml2 will ask for
/// and the audited bytes.
fn read_stylesheet(path: &Path) -> Result<(String, Vec<u8>), ConfigError> {
    let name = path.display();
    let fail = |why: String| ConfigError(format!("crosswalk stylesheet {name}: {why}"));
    let canonical = std::fs::canonicalize(path).map_err(|e| fail(e.to_string()))?;
    let url = canonical
        .to_str()
        .filter(|s| !s.contains('\0'))
        .ok_or_else(|| fail("the path is not UTF-8".into()))?
        .to_owned();
    let meta = std::fs::metadata(&canonical).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a file".into()));
    }
    if meta.len() > MAX_STYLESHEET_BYTES as u64 {
        return Err(fail(format!("larger than {MAX_STYLESHEET_BYTES} bytes")));
    }
    let bytes = std::fs::read(&canonical).map_err(|e| fail(e.to_string()))?;
    audit(&bytes).map_err(fail)?;
    Ok((url, bytes))
}

/// Refuses a stylesheet that could load or write anything besides itself.
pub(crate) fn audit(bytes: &[u8]) -> Result<(), String> {
    if bytes.contains(&0) {
        return Err("contains a NUL byte".into());
    }
    let mut reader = quick_xml::NsReader::from_reader(bytes);
    let mut buf = Vec::new();
    let mut root_seen = false;
    let mut depth = 0usize;
    loop {
        let event = reader
            .read_resolved_event_into(&mut buf)
            .map_err(|e| format!("not well-formed XML: {e}"))?;
        if matches!(event.1, Event::Start(_)) {
            depth += 1;
        }
        match event {
            (_, Event::DocType(_)) => {
                return Err("has a DOCTYPE; DTDs and entities are refused".into());
            }
            (_, Event::End(_)) => depth = depth.saturating_sub(1),
            (ns, Event::Start(e) | Event::Empty(e)) => {
                root_seen = true;
                let local = e.local_name().into_inner().to_owned();
                let is_xsl = matches!(ns, ResolveResult::Bound(n) if n.into_inner() == XSL_NS);
                if is_xsl && matches!(local.as_str(), "import" | "include" | "document") {
                    return Err(format!(
                        "uses xsl:{local}; a crosswalk must be one self-contained stylesheet \
                         (libxslt's security preferences are not available to Sheaf, so \
                         nothing that loads or writes another resource is allowed)"
                    ));
                }
                for a in e.attributes() {
                    let a = a.map_err(|e| format!("not well-formed XML: {e}"))?;
                    let key = a.key.into_inner().to_owned();
                    let value = a
                        .normalized_value(XmlVersion::Implicit1_0)
                        .map_err(|e| format!("not well-formed XML: {e}"))?;
                    if key == "extension-element-prefixes"
                        || key.ends_with(":extension-element-prefixes")
                    {
                        return Err("declares extension elements; they are refused".into());
                    }
                    if (key == "xmlns" || key.starts_with("xmlns:"))
                        && REFUSED_NAMESPACES.contains(&value.trim())
                    {
                        return Err(format!(
                            "declares the extension namespace {value}, whose functions are refused"
                        ));
                    }
                    if calls_document(&value) {
                        return Err(format!(
                            "calls document() in {key}=\"{value}\"; a crosswalk may not load \
                             other documents"
                        ));
                    }
                }
            }
            (_, Event::Eof) => break,
            _ => {}
        }
        buf.clear();
    }
    if depth > 0 {
        Err("not well-formed XML: unclosed elements".into())
    } else if root_seen {
        Ok(())
    } else {
        Err("has no root element".into())
    }
}

/// Whether an XPath expression (or attribute value template) may call
/// `document(`: any `document` not part of a longer name, followed by `(`.
fn calls_document(expr: &str) -> bool {
    let name_char = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    let mut rest = expr;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find("document") {
        let prev = rest[..at].chars().next_back().or(before);
        let after = &rest[at + "document".len()..];
        if !prev.is_some_and(name_char) && after.trim_start().starts_with('(') {
            return true;
        }
        before = Some('t');
        rest = after;
    }
    false
}

enum PoolError {
    Compile(usize),
    Spawn(std::io::Error),
}

/// Starts the XSLT threads, each compiling every stylesheet once; returns
/// once all have compiled them (or one failed).
fn start_pool(sources: &[(String, Vec<u8>)]) -> Result<mpsc::Sender<Job>, PoolError> {
    // The compiler reads exactly the audited bytes, through the one loader.
    sheaf_validate::serve_documents(sources.iter().cloned());
    let urls: Arc<Vec<String>> = Arc::new(sources.iter().map(|(u, _)| u.clone()).collect());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), usize>>();
    for n in 0..threads {
        let urls = urls.clone();
        let rx = rx.clone();
        let ready = ready_tx.clone();
        std::thread::Builder::new()
            .name(format!("sheaf-xslt-{n}"))
            .spawn(move || worker(&urls, &rx, &ready))
            .map_err(PoolError::Spawn)?;
    }
    drop(ready_tx);
    for _ in 0..threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(i)) => return Err(PoolError::Compile(i)),
            Err(_) => return Err(PoolError::Compile(0)),
        }
    }
    Ok(tx)
}

/// One XSLT thread: compiles every stylesheet, says so, then serves jobs
/// until the pool is dropped.
fn worker(
    urls: &[String],
    jobs: &Mutex<mpsc::Receiver<Job>>,
    ready: &mpsc::Sender<Result<(), usize>>,
) {
    let mut sheets = Vec::with_capacity(urls.len());
    for (i, url) in urls.iter().enumerate() {
        match libxslt::parser::parse_file(url) {
            Ok(s) => sheets.push(s),
            Err(_) => {
                let _ = ready.send(Err(i));
                return;
            }
        }
    }
    if ready.send(Ok(())).is_err() {
        return;
    }
    loop {
        let job = jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(job) = job else { return };
        let result = match sheets.get_mut(job.index) {
            Some(sheet) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                transform(sheet, &job.document)
            }))
            .unwrap_or_else(|_| Err("the transform panicked".to_owned())),
            None => Err(format!("no crosswalk stylesheet {}", job.index)),
        };
        let _ = job.reply.send(result);
    }
}

fn transform(
    sheet: &mut libxslt::stylesheet::Stylesheet,
    document: &[u8],
) -> Result<Vec<DcField>, String> {
    let doc = Parser::default()
        .parse_string_with_options(document, sheaf_validate::safe_parser_options())
        .map_err(|e| format!("the stored document does not parse: {e}"))?;
    let out = sheet
        .transform(doc, Vec::new())
        .map_err(|e| format!("the transform failed: {e}"))?;
    dc_fields(&out)
}

/// The Dublin Core fields of a transform's result, which must be one
/// `oai_dc:dc` element holding only simple `dc:*` elements.
fn dc_fields(doc: &Document) -> Result<Vec<DcField>, String> {
    let root = doc
        .get_root_element()
        .ok_or("the transform produced no element")?;
    if root.get_name() != "dc" || href(&root).as_deref() != Some(OAI_DC_NS) {
        return Err(format!(
            "the transform produced {{{}}}{}, not oai_dc:dc",
            href(&root).unwrap_or_default(),
            root.get_name()
        ));
    }
    let mut fields = Vec::new();
    for child in root.get_child_elements() {
        let name = child.get_name();
        if href(&child).as_deref() != Some(DC_NS) || !DC_ELEMENTS.contains(&name.as_str()) {
            return Err(format!(
                "the transform produced {{{}}}{name} inside oai_dc:dc",
                href(&child).unwrap_or_default()
            ));
        }
        if !child.get_child_elements().is_empty() {
            return Err(format!("dc:{name} has element content"));
        }
        let value = child.get_content().trim().to_owned();
        if value.is_empty() {
            continue;
        }
        fields.push(DcField {
            name: format!("dc:{name}"),
            lang: child
                .get_property_ns("lang", XML_NS)
                .filter(|l| !l.trim().is_empty()),
            value,
        });
    }
    Ok(fields)
}

fn href(node: &Node) -> Option<String> {
    node.get_namespace().map(|n| n.get_href())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">"#;

    fn sheet(body: &str) -> String {
        format!("{HEAD}{body}</xsl:stylesheet>")
    }

    #[test]
    fn audit_refuses_what_could_load_or_write() {
        assert!(audit(sheet(r#"<xsl:template match="/"><x/></xsl:template>"#).as_bytes()).is_ok());
        for bad in [
            r#"<xsl:import href="other.xsl"/>"#.to_owned(),
            r#"<xsl:include href="http://example.org/x.xsl"/>"#.to_owned(),
            r#"<xsl:template match="/"><xsl:copy-of select="document('http://x.org/a')"/></xsl:template>"#.to_owned(),
            r#"<xsl:template match="/"><xsl:copy-of select="document (concat('a', 'b'))"/></xsl:template>"#.to_owned(),
            r#"<xsl:template match="/"><a href="{document('x')}"/></xsl:template>"#.to_owned(),
            r#"<xsl:template match="/"><xsl:document href="out.xml"/></xsl:template>"#.to_owned(),
        ] {
            assert!(audit(sheet(&bad).as_bytes()).is_err(), "{bad}");
        }
        let dtd = format!("<!DOCTYPE x SYSTEM \"http://x.org/x.dtd\">{}", sheet(""));
        assert!(audit(dtd.as_bytes()).is_err());
        let ext = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:e="http://exslt.org/common" extension-element-prefixes="e"/>"#;
        assert!(audit(ext.as_bytes()).is_err());
        let dyn_ns = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:d="http://exslt.org/dynamic"/>"#;
        assert!(audit(dyn_ns.as_bytes()).is_err());
        assert!(audit(b"<a>").is_err());
        assert!(audit(b"").is_err());
    }

    #[test]
    fn document_calls_are_found_by_name() {
        assert!(calls_document("document('')"));
        assert!(calls_document("concat(document ('x'), 'y')"));
        assert!(!calls_document("my-document(1)"));
        assert!(!calls_document("b:documentation"));
        assert!(!calls_document("documents"));
    }

    #[tokio::test]
    async fn the_shipped_example_crosswalks_a_book() {
        let file = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/oai/crosswalks/book-to-oai_dc.xsl");
        let c = Crosswalks::load(&[CrosswalkConfig {
            schema: Some("book".into()),
            namespace: None,
            stylesheet: file,
        }])
        .expect("loads");
        let doc = b"<?xml version=\"1.0\"?><book xmlns=\"urn:sheaf:test:book\"><title> A  &amp; B </title><year>2024</year></book>";
        let fields = c.apply(0, doc.to_vec()).await.expect("transforms");
        assert_eq!(fields[0].name, "dc:title");
        assert_eq!(fields[0].value, "A & B");
        assert_eq!(fields[0].lang.as_deref(), Some("en"));
        assert!(c.apply(0, b"<other/>".to_vec()).await.is_err());
    }
}
