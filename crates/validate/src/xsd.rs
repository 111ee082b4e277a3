//! XML Schema through libxml2, hardened for untrusted input.
//!
//! Owns every libxml2 call in Sheaf. Depends on `bundled` and `report`.
//!
//! Safety model (see the research notes on libxml2 2.9.14):
//! - documents and schemas are parsed with [`safe_options`]: no recovery, no
//!   network, no entity substitution, no DTD loading (the crate's
//!   `no_def_dtd` flag is `XML_PARSE_DTDLOAD` for XML, so it stays off);
//!   any document carrying a DTD is refused after parsing;
//! - the XSD compiler loads `xs:import`/`xs:include`/`xs:redefine` targets
//!   itself, through libxml2's process-global input callbacks. Sheaf
//!   registers one callback that claims every URL and serves only the bytes
//!   of the bundle being compiled, from memory; every other URL gets an
//!   empty document (which fails to parse) and is logged. Before compiling,
//!   every such location is rewritten to a `sheaf:///…` URL naming a
//!   registered or bundled schema; a location that names neither is
//!   refused with a message, so nothing is ever fetched;
//! - libxml2 objects are `!Send`: each thread compiles its own copy of a
//!   schema from the shared [`XsdBundle`] and keeps it in a thread-local
//!   cache. Compilation, the only place resources are loaded, runs under
//!   one process-wide lock (libxml2 before 2.13 is not safe with
//!   concurrent loads through input callbacks); validation runs in
//!   parallel.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use libxml::parser::{Parser, ParserOptions, XmlParseFailure};
use libxml::schemas::{SchemaParserContext, SchemaValidationContext};
use libxml::tree::{Document, Node, NodeType};

use crate::bundled::{self, BundledSchema};
use crate::report::{Diagnostic, ValidationError, ValidationReport};

const XSD_NAMESPACE: &str = "http://www.w3.org/2001/XMLSchema";
/// The scheme of the in-memory URLs the compiler is allowed to load.
const SHEAF_URL_PREFIX: &str = "sheaf:///";
/// The catalog libxml2 loads by default, and what it is served instead.
const SYSTEM_CATALOG: &str = "file:///etc/xml/catalog";
const EMPTY_CATALOG: &[u8] = br#"<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog"/>"#;
/// Compiled schemas kept per thread before the cache is emptied.
const THREAD_CACHE_CAPACITY: usize = 256;

/// Parser options for every document and schema Sheaf did not write itself:
/// no network, no DTD loading, no entity substitution, no recovery.
pub fn safe_options() -> ParserOptions<'static> {
    ParserOptions {
        recover: false,
        no_net: true,
        huge: false,
        // Bit 4 is XML_PARSE_DTDLOAD for XML: never set it.
        no_def_dtd: false,
        no_error: true,
        no_warning: true,
        ..Default::default()
    }
}

/// Parses untrusted XML, refusing malformed input and any DTD.
pub(crate) fn parse_untrusted(bytes: &[u8]) -> Result<Document, ValidationReport> {
    install_loader();
    let parser = Parser::default();
    let doc = match parser.parse_string_with_diagnostics(bytes, safe_options()) {
        Ok((doc, _warnings)) => doc,
        Err(XmlParseFailure::ParseFailed(errors)) => {
            return Err(ValidationReport::from_libxml(&errors));
        }
        Err(other) => return Err(ValidationReport::message(other.to_string())),
    };
    if let Some(line) = dtd_line(&doc) {
        return Err(ValidationReport::single(Diagnostic::at(
            line,
            None,
            "document has a DOCTYPE (DTD); DTDs and entity declarations are refused",
        )));
    }
    Ok(doc)
}

/// `Some(line)` when the document carries a DTD.
fn dtd_line(doc: &Document) -> Option<Option<u32>> {
    let mut child = doc.as_node().get_first_child();
    while let Some(node) = child {
        if node.get_type() == Some(NodeType::DTDNode) {
            // The DTD precedes the root element; its line is not recorded.
            return Some(None);
        }
        child = node.get_next_sibling();
    }
    None
}

// ---------------------------------------------------------------------------
// Resolution of imports and includes

/// A registered XSD an import may resolve to.
#[derive(Debug, Clone)]
pub(crate) struct XsdCandidate {
    pub schema_id: String,
    pub version: i64,
    pub namespace: Option<String>,
    pub document: Arc<[u8]>,
}

/// What an `xs:import`/`xs:include` resolves to.
#[derive(Clone, Copy)]
enum Target<'a> {
    Bundled(&'static BundledSchema),
    Registered(&'a XsdCandidate),
}

impl Target<'_> {
    fn url(&self) -> String {
        match self {
            Target::Bundled(b) => format!("{SHEAF_URL_PREFIX}bundled/{}", b.file_name),
            Target::Registered(c) => {
                format!("{SHEAF_URL_PREFIX}registered/{}/{}", c.schema_id, c.version)
            }
        }
    }

    fn document(&self) -> &[u8] {
        match self {
            Target::Bundled(b) => b.document,
            Target::Registered(c) => &c.document,
        }
    }
}

/// Resolves schema locations against registered and bundled schemas only.
#[derive(Default)]
pub(crate) struct Resolver<'a> {
    pub registered: &'a [XsdCandidate],
}

impl<'a> Resolver<'a> {
    /// By file name first (bundled, then a registered schema id, with or
    /// without `.xsd`), then by namespace (registered, then bundled).
    fn resolve(&self, namespace: Option<&str>, location: Option<&str>) -> Option<Target<'a>> {
        if let Some(location) = location {
            let name = last_segment(location);
            if let Some(b) = bundled::by_file_name(name) {
                return Some(Target::Bundled(b));
            }
            let stem = name.strip_suffix(".xsd").unwrap_or(name);
            if let Some(c) = self
                .registered
                .iter()
                .find(|c| c.schema_id == name || c.schema_id == stem)
            {
                return Some(Target::Registered(c));
            }
        }
        let namespace = namespace?;
        if let Some(c) = self
            .registered
            .iter()
            .find(|c| c.namespace.as_deref() == Some(namespace))
        {
            return Some(Target::Registered(c));
        }
        bundled::by_namespace(namespace).map(Target::Bundled)
    }
}

/// The last path segment of a URL or path, without query or fragment.
fn last_segment(location: &str) -> &str {
    let end = location.find(['?', '#']).unwrap_or(location.len());
    let path = &location[..end];
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Rewrites every import/include/redefine of a parsed schema to the
/// `sheaf:///` URL of what it resolves to; returns those targets.
///
/// `main_namespace` is the namespace of the schema being compiled: an
/// imported document importing it back needs nothing loaded (the compiler
/// already has it), so that location is dropped.
fn rewrite_locations<'a>(
    doc: &Document,
    resolver: &Resolver<'a>,
    main_namespace: Option<&str>,
) -> Result<Vec<Target<'a>>, ValidationReport> {
    let Some(root) = doc.get_root_element() else {
        return Err(ValidationReport::message(
            "the schema document has no root element",
        ));
    };
    if root.get_name() != "schema" || namespace_of(&root).as_deref() != Some(XSD_NAMESPACE) {
        return Err(ValidationReport::message(format!(
            "not an XML Schema: the root element is <{}>, expected <schema> in {XSD_NAMESPACE}",
            root.get_name()
        )));
    }
    let mut targets = Vec::new();
    let mut refused = Vec::new();
    for mut child in root.get_child_elements() {
        let kind = child.get_name();
        if !matches!(kind.as_str(), "import" | "include" | "redefine")
            || namespace_of(&child).as_deref() != Some(XSD_NAMESPACE)
        {
            continue;
        }
        let location = child.get_attribute("schemaLocation");
        // An include or redefine shares the including schema's namespace.
        let namespace = if kind == "import" {
            child.get_attribute("namespace")
        } else {
            root.get_attribute("targetNamespace")
        };
        if kind == "import" && main_namespace.is_some() && namespace.as_deref() == main_namespace {
            if location.is_some() && child.remove_attribute("schemaLocation").is_err() {
                refused.push(Diagnostic::new("cannot rewrite the location of xs:import"));
            }
            continue;
        }
        match resolver.resolve(namespace.as_deref(), location.as_deref()) {
            Some(target) => {
                if child
                    .set_attribute("schemaLocation", &target.url())
                    .is_err()
                {
                    refused.push(Diagnostic::new(format!(
                        "cannot rewrite the location of xs:{kind}"
                    )));
                }
                targets.push(target);
            }
            // An import by namespace only loads nothing; libxml2 reports
            // later if components of that namespace are used.
            None if location.is_none() => {}
            None => refused.push(Diagnostic::new(format!(
                "xs:{kind} of {} from {:?} refused: it is neither a registered nor a \
                 bundled schema (schemas are never fetched from the network or disk; \
                 register the imported schema first)",
                namespace
                    .as_deref()
                    .map(|n| format!("namespace {n:?}"))
                    .unwrap_or_else(|| "no namespace".to_owned()),
                location.unwrap_or_default()
            ))),
        }
    }
    if refused.is_empty() {
        Ok(targets)
    } else {
        Err(ValidationReport {
            diagnostics: refused,
        })
    }
}

fn namespace_of(node: &Node) -> Option<String> {
    node.get_namespace().map(|ns| ns.get_href())
}

// ---------------------------------------------------------------------------
// Bundles: a schema with the closure of its imports, shareable across threads

/// Documents the compiler may load, by `sheaf:///` URL.
type Resources = Arc<HashMap<String, Vec<u8>>>;

/// A schema ready to compile on any thread: the main document with its
/// locations rewritten, and every document it loads, by `sheaf:///` URL.
#[derive(Debug)]
pub(crate) struct XsdBundle {
    main: Vec<u8>,
    resources: Resources,
    /// The main document's `targetNamespace`.
    pub namespace: Option<String>,
}

/// A schema compiled on this thread. The document stays alive with it:
/// the compiled schema may point into it.
struct CompiledXsd {
    ctx: SchemaValidationContext,
    _doc: Document,
}

thread_local! {
    /// Documents the compiler on this thread may load, by URL.
    static RESOURCES: RefCell<Option<Resources>> = const { RefCell::new(None) };
    /// URLs refused on this thread during the current compilation.
    static REFUSED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// Compiled schemas, by cache key.
    static COMPILED: RefCell<HashMap<String, CompiledXsd>> = RefCell::new(HashMap::new());
}

/// Compilations are serialised (see the module header).
static COMPILE_LOCK: Mutex<()> = Mutex::new(());

/// Registers the deny-by-default input callback, once per process.
fn install_loader() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        libxml::init_parser();
        libxml::io::register_input_callback(|_| true, |url| Some(serve(url)));
    });
}

/// Documents other parts of Sheaf have audited and let libxml2 read by
/// URL from any thread (the crosswalk stylesheets), through the one loader.
static SHARED: OnceLock<RwLock<HashMap<String, Vec<u8>>>> = OnceLock::new();

/// Lets libxml2 read each `(url, bytes)` — and nothing more — through
/// Sheaf's deny-by-default loader, on every thread, for the rest of the
/// process. The loader is the only input handler Sheaf registers, so no
/// caller can shadow another.
pub fn serve_documents(documents: impl IntoIterator<Item = (String, Vec<u8>)>) {
    install_loader();
    SHARED
        .get_or_init(Default::default)
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .extend(documents);
}

/// Serves `url` from the current compilation's resources or the shared
/// documents; anything else is refused with an empty document. Must not
/// panic (called from C).
fn serve(url: &str) -> Vec<u8> {
    let found = RESOURCES
        .try_with(|r| {
            r.try_borrow()
                .ok()
                .and_then(|r| r.as_ref().and_then(|m| m.get(url).cloned()))
        })
        .ok()
        .flatten()
        .or_else(|| {
            SHARED
                .get()
                .and_then(|m| m.read().ok().and_then(|m| m.get(url).cloned()))
        });
    match found {
        Some(bytes) => bytes,
        // libxml2 reads the system catalog on first use of its loader; an
        // empty catalog keeps catalogs out of resolution, quietly.
        None if url == SYSTEM_CATALOG => EMPTY_CATALOG.to_vec(),
        None => {
            tracing::warn!(url, "refused to load an external resource");
            let _ = REFUSED.try_with(|r| {
                if let Ok(mut r) = r.try_borrow_mut() {
                    r.push(url.to_owned());
                }
            });
            Vec::new()
        }
    }
}

/// Compiles a parsed schema document with `resources` as the only loadable
/// documents.
fn compile_document(doc: Document, resources: &Resources) -> Result<CompiledXsd, ValidationReport> {
    install_loader();
    let _guard = COMPILE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    RESOURCES.with(|r| *r.borrow_mut() = Some(Arc::clone(resources)));
    REFUSED.with(|r| r.borrow_mut().clear());
    let result = {
        let mut parser = SchemaParserContext::from_document(&doc);
        SchemaValidationContext::from_parser(&mut parser)
    };
    RESOURCES.with(|r| *r.borrow_mut() = None);
    let refused = REFUSED.with(|r| std::mem::take(&mut *r.borrow_mut()));
    match result {
        Ok(ctx) => Ok(CompiledXsd { ctx, _doc: doc }),
        Err(errors) => {
            let mut report = ValidationReport::from_libxml(&errors);
            report.diagnostics.extend(
                refused
                    .into_iter()
                    .map(|u| Diagnostic::new(format!("refused to load external resource {u:?}"))),
            );
            Err(report)
        }
    }
}

/// Parses, resolves and compiles a schema document: the bundle to share and
/// the compiled copy for this thread. Errors are the compiler's messages.
fn build(
    main: &[u8],
    resolver: &Resolver<'_>,
) -> Result<(XsdBundle, CompiledXsd), ValidationReport> {
    let doc = parse_untrusted(main)?;
    let namespace = doc
        .get_root_element()
        .and_then(|r| r.get_attribute("targetNamespace"));
    let mut queue = rewrite_locations(&doc, resolver, None)?;
    let mut resources = HashMap::new();
    let mut seen = HashSet::new();
    while let Some(target) = queue.pop() {
        let url = target.url();
        if !seen.insert(url.clone()) {
            continue;
        }
        let dep = parse_untrusted(target.document()).map_err(|r| prefix_report(&url, r))?;
        queue.extend(
            rewrite_locations(&dep, resolver, namespace.as_deref())
                .map_err(|r| prefix_report(&url, r))?,
        );
        resources.insert(url, dep.to_string().into_bytes());
    }
    let resources = Arc::new(resources);
    let main = doc.to_string().into_bytes();
    let compiled = compile_document(doc, &resources)?;
    Ok((
        XsdBundle {
            main,
            resources,
            namespace,
        },
        compiled,
    ))
}

fn prefix_report(url: &str, mut report: ValidationReport) -> ValidationReport {
    let name = url.strip_prefix(SHEAF_URL_PREFIX).unwrap_or(url);
    for d in &mut report.diagnostics {
        d.message = format!("in imported schema {name}: {}", d.message);
    }
    report
}

/// Compiles `document` as an XSD (proving it compiles) and returns the
/// shareable bundle.
pub(crate) fn build_bundle(
    document: &[u8],
    resolver: &Resolver<'_>,
) -> Result<Arc<XsdBundle>, ValidationReport> {
    build(document, resolver).map(|(bundle, _compiled)| Arc::new(bundle))
}

/// As [`build_bundle`], also caching the compiled copy on this thread under
/// `key`.
pub(crate) fn compile(
    key: &str,
    document: &[u8],
    resolver: &Resolver<'_>,
) -> Result<Arc<XsdBundle>, ValidationReport> {
    let (bundle, compiled) = build(document, resolver)?;
    cache_insert(key, compiled);
    Ok(Arc::new(bundle))
}

fn cache_insert(key: &str, compiled: CompiledXsd) {
    COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= THREAD_CACHE_CAPACITY {
            c.clear();
        }
        c.insert(key.to_owned(), compiled);
    });
}

/// Validates `document` against the bundle, compiling it on this thread
/// once per `key`.
pub(crate) fn validate(
    key: &str,
    bundle: &XsdBundle,
    document: &[u8],
) -> Result<(), ValidationError> {
    let cached = COMPILED.with(|c| c.borrow().contains_key(key));
    if !cached {
        let doc = parse_untrusted(&bundle.main).map_err(ValidationError::DoesNotCompile)?;
        let compiled =
            compile_document(doc, &bundle.resources).map_err(ValidationError::DoesNotCompile)?;
        cache_insert(key, compiled);
    }
    let doc = parse_untrusted(document).map_err(ValidationError::Invalid)?;
    COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        let Some(compiled) = c.get_mut(key) else {
            return Err(ValidationError::DoesNotCompile(ValidationReport::message(
                "compiled schema vanished from the thread cache",
            )));
        };
        compiled
            .ctx
            .validate_document(&doc)
            .map_err(|errors| ValidationError::Invalid(ValidationReport::from_libxml(&errors)))
    })
}

/// The bundle of a bundled schema, built once per process.
pub(crate) fn bundled_bundle(file_name: &str) -> Result<(String, Arc<XsdBundle>), ValidationError> {
    static BUNDLES: OnceLock<Mutex<HashMap<&'static str, Arc<XsdBundle>>>> = OnceLock::new();
    let schema = bundled::by_file_name(file_name)
        .ok_or_else(|| ValidationError::UnknownBundled(file_name.to_owned()))?;
    let key = format!("bundled/{}", schema.file_name);
    let map = BUNDLES.get_or_init(Default::default);
    if let Some(b) = map
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(schema.file_name)
    {
        return Ok((key, Arc::clone(b)));
    }
    let bundle = compile(&key, schema.document, &Resolver::default())
        .map_err(ValidationError::DoesNotCompile)?;
    map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(schema.file_name, Arc::clone(&bundle));
    Ok((key, bundle))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// The parser options themselves, below the DTD refusal: nothing that
    /// loads, recovers or lifts limits is on (`no_def_dtd` is the trap: it
    /// is DTD *loading* for XML), and an external entity parsed with them
    /// stays unexpanded.
    #[test]
    fn safe_options_never_load_or_expand() {
        let o = safe_options();
        // (The crate has no switch for entity substitution: it stays off.)
        assert!(o.no_net && !o.no_def_dtd && !o.recover && !o.huge);

        let canary = std::env::temp_dir().join(format!("sheaf-xxe-{}.txt", std::process::id()));
        std::fs::write(&canary, "CANARY-SECRET").unwrap();
        let doc = format!(
            "<!DOCTYPE r [<!ENTITY x SYSTEM \"file://{}\">]><r>&x;</r>",
            canary.display()
        );
        let parsed =
            Parser::default().parse_string_with_diagnostics(doc.as_bytes(), safe_options());
        let _ = std::fs::remove_file(&canary);
        if let Ok((doc, _)) = parsed {
            let text = doc
                .get_root_element()
                .map(|r| r.get_content())
                .unwrap_or_default();
            assert!(!text.contains("CANARY"), "external entity expanded: {text}");
        }
    }

    /// The loader is the second line of defence: even a location that
    /// escaped the rewrite (here: compiled directly, without it) is served
    /// nothing and fetched from nowhere.
    #[test]
    fn the_loader_refuses_what_the_bundle_does_not_hold() {
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
        for location in [
            format!("http://{addr}/evil.xsd"),
            "file:///etc/hostname".to_owned(),
            "../../etc/hostname".to_owned(),
        ] {
            let schema = format!(
                r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:a">
  <xs:include schemaLocation="{location}"/></xs:schema>"#
            );
            let doc = parse_untrusted(schema.as_bytes()).unwrap();
            let err = compile_document(doc, &Arc::new(HashMap::new()))
                .err()
                .expect("an include the loader refuses does not compile");
            let text = err.to_string();
            assert!(text.contains("refused to load external resource"), "{text}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn last_segments() {
        assert_eq!(last_segment("http://h/a/b.xsd?x=1#f"), "b.xsd");
        assert_eq!(last_segment("b.xsd"), "b.xsd");
        assert_eq!(last_segment("dir\\c.xsd"), "c.xsd");
    }

    #[test]
    fn every_bundled_schema_compiles_alone() {
        for b in bundled::BUNDLED {
            bundled_bundle(b.file_name).unwrap();
        }
    }
}
