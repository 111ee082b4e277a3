//! The small, safe XPath subset `resource_id` paths are written in, and
//! its evaluation over a standalone metadata document (streaming, no DOM).
//!
//! Depends on quick-xml only. Supported:
//!
//! - location steps separated by `/` (child) or `//` (descendant), the
//!   path always absolute: `//dc:identifier`, `/oai_dc:dc/dc:identifier`;
//! - name tests `prefix:local`, `local` (no namespace, as in XPath 1.0) or
//!   `*`; prefixes resolve through the config's `[namespaces]` table;
//! - predicates on any step: `[@attr='v']` (or `"v"`); on the last step
//!   also `[url]` (the value starts with `http://` or `https://`),
//!   `[starts-with(., 'v')]` and `[contains(., 'v')]`;
//! - an optional final `/@attr` selecting an attribute's value instead of
//!   the element's text.
//!
//! The value of an element is its text content (descendants included),
//! trimmed. Every non-empty match is returned, in document order, once.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// A compiled `resource_id` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    steps: Vec<Step>,
    attribute: Option<Name>,
    text_predicates: Vec<TextPredicate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Name {
    /// `None` = no namespace; for a `*` test, ignored.
    ns: Option<String>,
    /// `None` = `*`.
    local: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    descendant: bool,
    name: Name,
    attributes: Vec<(Name, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TextPredicate {
    Url,
    StartsWith(String),
    Contains(String),
}

impl TextPredicate {
    fn holds(&self, v: &str) -> bool {
        match self {
            TextPredicate::Url => {
                let lower = v.get(..8).unwrap_or(v).to_ascii_lowercase();
                lower.starts_with("http://") || lower.starts_with("https://")
            }
            TextPredicate::StartsWith(p) => v.starts_with(p.as_str()),
            TextPredicate::Contains(p) => v.contains(p.as_str()),
        }
    }
}

impl ResourcePath {
    /// Compiles `expr`, resolving prefixes through `namespaces`.
    pub fn compile(expr: &str, namespaces: &[(String, String)]) -> Result<Self, String> {
        Parser {
            src: expr,
            rest: expr.trim(),
            namespaces,
        }
        .path()
    }

    /// Every non-empty value the path selects in `doc`, in document order,
    /// without repeats. `Err` when `doc` is not well-formed XML.
    pub fn evaluate(&self, doc: &[u8]) -> Result<Vec<String>, String> {
        let mut reader = NsReader::from_reader(doc);
        let mut stack: Vec<Frame> = Vec::new();
        let mut captures: Vec<(usize, String)> = Vec::new();
        let mut found: Vec<String> = Vec::new();
        loop {
            let (ns, event) = reader
                .read_resolved_event()
                .map_err(|e| format!("metadata is not well-formed XML: {e}"))?;
            let ns = match ns {
                ResolveResult::Bound(n) => Some(n.as_ref().to_owned()),
                _ => None,
            };
            match event {
                Event::Start(e) => {
                    self.open(&reader, ns, &e, &mut stack, &mut captures, &mut found)?;
                }
                Event::Empty(e) => {
                    self.open(&reader, ns, &e, &mut stack, &mut captures, &mut found)?;
                    self.close(&mut stack, &mut captures, &mut found);
                }
                Event::End(_) => self.close(&mut stack, &mut captures, &mut found),
                Event::Text(t) => {
                    let s = t.xml10_content();
                    for (_, buf) in &mut captures {
                        buf.push_str(&s);
                    }
                }
                Event::CData(t) => {
                    let s = t.xml10_content();
                    for (_, buf) in &mut captures {
                        buf.push_str(&s);
                    }
                }
                Event::GeneralRef(r) => {
                    let c = resolve_ref(&r)?;
                    for (_, buf) in &mut captures {
                        buf.push(c);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(found)
    }

    fn open(
        &self,
        reader: &NsReader<&[u8]>,
        ns: Option<String>,
        e: &BytesStart<'_>,
        stack: &mut Vec<Frame>,
        captures: &mut Vec<(usize, String)>,
        found: &mut Vec<String>,
    ) -> Result<(), String> {
        stack.push(Frame::new(reader, ns, e)?);
        if self.structure_matches(stack) {
            match &self.attribute {
                Some(attr) => {
                    if let Some(v) = stack.last().and_then(|top| top.attr(attr)) {
                        push_unique(found, v.trim());
                    }
                }
                None => captures.push((stack.len(), String::new())),
            }
        }
        Ok(())
    }

    fn close(
        &self,
        stack: &mut Vec<Frame>,
        captures: &mut Vec<(usize, String)>,
        found: &mut Vec<String>,
    ) {
        let depth = stack.len();
        while let Some((d, _)) = captures.last() {
            if *d < depth {
                break;
            }
            if let Some((_, text)) = captures.pop() {
                let v = text.trim();
                if self.text_predicates.iter().all(|p| p.holds(v)) {
                    push_unique(found, v);
                }
            }
        }
        stack.pop();
    }

    fn structure_matches(&self, stack: &[Frame]) -> bool {
        fn go(steps: &[Step], stack: &[Frame]) -> bool {
            let (Some(step), Some(frame)) = (steps.last(), stack.last()) else {
                return steps.is_empty() && stack.is_empty();
            };
            if !frame.matches(step) {
                return false;
            }
            let steps = &steps[..steps.len() - 1];
            let parents = &stack[..stack.len() - 1];
            if step.descendant {
                if steps.is_empty() {
                    return true;
                }
                (0..parents.len()).rev().any(|i| go(steps, &parents[..=i]))
            } else {
                go(steps, parents)
            }
        }
        go(&self.steps, stack)
    }
}

fn push_unique(found: &mut Vec<String>, v: &str) {
    if !v.is_empty() && !found.iter().any(|f| f == v) {
        found.push(v.to_owned());
    }
}

/// The character an entity or character reference stands for.
pub(crate) fn resolve_ref(r: &quick_xml::events::BytesRef<'_>) -> Result<char, String> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c),
            _ => Err(format!("invalid character reference &{};", r.as_ref())),
        };
    }
    match r.as_ref() {
        "amp" => Ok('&'),
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "quot" => Ok('"'),
        "apos" => Ok('\''),
        other => Err(format!("undefined entity &{other};")),
    }
}

struct Frame {
    ns: Option<String>,
    local: String,
    attrs: Vec<(Option<String>, String, String)>,
}

impl Frame {
    fn new(
        reader: &NsReader<&[u8]>,
        ns: Option<String>,
        e: &BytesStart<'_>,
    ) -> Result<Self, String> {
        let mut attrs = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|e| format!("metadata has a malformed attribute: {e}"))?;
            if a.key.as_namespace_binding().is_some() {
                continue;
            }
            let (res, local) = reader.resolver().resolve_attribute(a.key);
            let ans = match res {
                ResolveResult::Bound(n) => Some(n.as_ref().to_owned()),
                _ => None,
            };
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| format!("metadata has a malformed attribute value: {e}"))?
                .into_owned();
            attrs.push((ans, local.as_ref().to_owned(), value));
        }
        Ok(Self {
            ns,
            local: e.local_name().as_ref().to_owned(),
            attrs,
        })
    }

    fn attr(&self, name: &Name) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(ns, local, _)| {
                name.local.as_deref().is_none_or(|l| l == local)
                    && (name.local.is_none() || *ns == name.ns)
            })
            .map(|(_, _, v)| v.as_str())
    }

    fn matches(&self, step: &Step) -> bool {
        let name_ok = match &step.name.local {
            None => true,
            Some(l) => *l == self.local && step.name.ns == self.ns,
        };
        name_ok
            && step
                .attributes
                .iter()
                .all(|(n, v)| self.attr(n).is_some_and(|a| a == v))
    }
}

struct Parser<'a> {
    src: &'a str,
    rest: &'a str,
    namespaces: &'a [(String, String)],
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        let at = self.src.len() - self.rest.len();
        format!("resource_id path {:?}: {what} at character {at}", self.src)
    }

    fn eat(&mut self, s: &str) -> bool {
        match self.rest.strip_prefix(s) {
            Some(r) => {
                self.rest = r.trim_start();
                true
            }
            None => false,
        }
    }

    fn path(mut self) -> Result<ResourcePath, String> {
        let mut steps = Vec::new();
        let mut attribute = None;
        let mut text_predicates = Vec::new();
        if !self.rest.starts_with('/') {
            return Err(self.err("the path must start with / or //"));
        }
        while !self.rest.is_empty() {
            let descendant = if self.eat("//") {
                true
            } else if self.eat("/") {
                false
            } else {
                return Err(self.err("expected / or //"));
            };
            if self.eat("@") {
                if descendant {
                    return Err(self.err("//@ is not supported; use /@ after an element step"));
                }
                attribute = Some(self.name(false)?);
                if !self.rest.is_empty() {
                    return Err(self.err("/@attribute must be the last step"));
                }
                break;
            }
            let name = self.name(true)?;
            let mut attributes = Vec::new();
            let mut texts = Vec::new();
            while self.eat("[") {
                if self.eat("@") {
                    let n = self.name(false)?;
                    if !self.eat("=") {
                        return Err(self.err("expected = after the attribute name"));
                    }
                    let v = self.literal()?;
                    attributes.push((n, v));
                } else if self.eat("url") {
                    texts.push(TextPredicate::Url);
                } else if self.eat("starts-with(") {
                    self.dot_comma()?;
                    let v = self.literal()?;
                    self.close_paren()?;
                    texts.push(TextPredicate::StartsWith(v));
                } else if self.eat("contains(") {
                    self.dot_comma()?;
                    let v = self.literal()?;
                    self.close_paren()?;
                    texts.push(TextPredicate::Contains(v));
                } else {
                    return Err(self.err(
                        "unsupported predicate (use [url], [@a='v'], [starts-with(., 'v')] or [contains(., 'v')])",
                    ));
                }
                if !self.eat("]") {
                    return Err(self.err("expected ]"));
                }
            }
            if !texts.is_empty() {
                if !text_predicates.is_empty() {
                    return Err(self.err("text predicates are supported on the last step only"));
                }
                text_predicates = texts;
                steps.push(Step {
                    descendant,
                    name,
                    attributes,
                });
                if !self.rest.is_empty() && !self.rest.starts_with("/@") {
                    return Err(self.err("text predicates are supported on the last step only"));
                }
            } else {
                steps.push(Step {
                    descendant,
                    name,
                    attributes,
                });
            }
        }
        if steps.is_empty() {
            return Err(self.err("the path selects no element"));
        }
        if attribute.is_some() && !text_predicates.is_empty() {
            return Err(self.err("text predicates cannot be combined with /@attribute"));
        }
        Ok(ResourcePath {
            steps,
            attribute,
            text_predicates,
        })
    }

    fn dot_comma(&mut self) -> Result<(), String> {
        if self.eat(".") && self.eat(",") {
            Ok(())
        } else {
            Err(self.err("expected ., as the first argument"))
        }
    }

    fn close_paren(&mut self) -> Result<(), String> {
        if self.eat(")") {
            Ok(())
        } else {
            Err(self.err("expected )"))
        }
    }

    fn literal(&mut self) -> Result<String, String> {
        let quote = match self.rest.chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(self.err("expected a quoted string")),
        };
        let body = &self.rest[1..];
        let end = body
            .find(quote)
            .ok_or_else(|| self.err("unterminated string"))?;
        let v = body[..end].to_owned();
        self.rest = body[end + 1..].trim_start();
        Ok(v)
    }

    fn name(&mut self, element: bool) -> Result<Name, String> {
        if element && self.eat("*") {
            return Ok(Name {
                ns: None,
                local: None,
            });
        }
        let len = self
            .rest
            .find(|c: char| !(c.is_alphanumeric() || "-_.:".contains(c)))
            .unwrap_or(self.rest.len());
        let qname = &self.rest[..len];
        if qname.is_empty() {
            return Err(self.err("expected a name"));
        }
        let (prefix, local) = match qname.split_once(':') {
            Some((p, l)) => (Some(p), l),
            None => (None, qname),
        };
        if !crate::config::is_ncname(local) || prefix.is_some_and(|p| !crate::config::is_ncname(p))
        {
            return Err(self.err(&format!("{qname:?} is not a name")));
        }
        let ns = match prefix {
            None => None,
            Some(p) => Some(
                self.namespaces
                    .iter()
                    .rev()
                    .find(|(k, _)| k == p)
                    .map(|(_, u)| u.clone())
                    .ok_or_else(|| {
                        self.err(&format!("prefix {p:?} is not declared in [namespaces]"))
                    })?,
            ),
        };
        self.rest = self.rest[len..].trim_start();
        Ok(Name {
            ns,
            local: Some(local.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_NAMESPACES;

    fn ns() -> Vec<(String, String)> {
        DEFAULT_NAMESPACES
            .iter()
            .map(|(p, u)| ((*p).to_owned(), (*u).to_owned()))
            .collect()
    }

    fn eval(expr: &str, doc: &str) -> Vec<String> {
        ResourcePath::compile(expr, &ns())
            .expect("compiles")
            .evaluate(doc.as_bytes())
            .expect("evaluates")
    }

    const DC: &str = r#"<?xml version="1.0"?>
<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <dc:identifier>urn:nbn:1</dc:identifier>
  <dc:identifier>
     https://example.org/a?x=1&amp;y=2
  </dc:identifier>
  <dc:relation><dc:identifier>http://example.org/nested</dc:identifier></dc:relation>
  <dc:identifier>https://example.org/a?x=1&amp;y=2</dc:identifier>
  <dc:identifier><![CDATA[https://doi.org/10.1/x]]></dc:identifier>
</oai_dc:dc>"#;

    #[test]
    fn descendant_with_url_predicate() {
        assert_eq!(
            eval("//dc:identifier[url]", DC),
            [
                "https://example.org/a?x=1&y=2",
                "http://example.org/nested",
                "https://doi.org/10.1/x"
            ]
        );
    }

    #[test]
    fn child_steps_and_text_predicates() {
        assert_eq!(
            eval("/oai_dc:dc/dc:identifier", DC),
            [
                "urn:nbn:1",
                "https://example.org/a?x=1&y=2",
                "https://doi.org/10.1/x"
            ]
        );
        assert_eq!(
            eval("//dc:identifier[starts-with(., 'https://doi.org/')]", DC),
            ["https://doi.org/10.1/x"]
        );
        assert_eq!(
            eval("//dc:identifier[contains(., 'nbn')]", DC),
            ["urn:nbn:1"]
        );
        assert_eq!(
            eval("/oai_dc:dc//dc:relation/*", DC),
            ["http://example.org/nested"]
        );
        assert!(eval("/dc:identifier", DC).is_empty());
    }

    #[test]
    fn attribute_predicates_and_selection() {
        let doc = r#"<resource xmlns="http://datacite.org/schema/kernel-4" xmlns:xlink="http://www.w3.org/1999/xlink">
            <identifier identifierType="URL">https://example.org/u</identifier>
            <identifier identifierType="DOI">10.5281/zenodo.1</identifier>
            <link xlink:href="https://example.org/l"/>
          </resource>"#;
        let mut n = ns();
        n.push(("d".into(), "http://datacite.org/schema/kernel-4".into()));
        let p = ResourcePath::compile("//d:identifier[@identifierType='DOI']", &n).expect("c");
        assert_eq!(p.evaluate(doc.as_bytes()).expect("e"), ["10.5281/zenodo.1"]);
        let p = ResourcePath::compile("//d:link/@xlink:href", &n).expect("c");
        assert_eq!(
            p.evaluate(doc.as_bytes()).expect("e"),
            ["https://example.org/l"]
        );
        // Unprefixed names mean "no namespace", as in XPath 1.0.
        let p = ResourcePath::compile("//identifier", &n).expect("c");
        assert!(p.evaluate(doc.as_bytes()).expect("e").is_empty());
    }

    #[test]
    fn unsupported_or_bad_paths_are_refused() {
        for bad in [
            "dc:identifier",
            "//dc:identifier[1]",
            "//zz:identifier",
            "//dc:identifier[url",
            "//dc:identifier[starts-with(., 'x')]/dc:x",
            "//@href",
            "//dc:identifier/@a/@b",
            "//dc:identifier[url]/@a",
            "/",
            "//dc:identifier | //dc:title",
        ] {
            assert!(ResourcePath::compile(bad, &ns()).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn malformed_metadata_is_an_error() {
        let p = ResourcePath::compile("//dc:identifier", &ns()).expect("c");
        assert!(p.evaluate(b"<a><b></a>").is_err());
        assert!(p.evaluate(b"<a>&bogus;</a>").is_err());
    }
}
