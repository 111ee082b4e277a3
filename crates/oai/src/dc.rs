//! The `oai_dc` crosswalk: unqualified Dublin Core built from a record's
//! DataCite-style record (titles, creators, publisher, publicationYear,
//! subjects, identifiers, …) and its resource links, for records whose
//! document is not Dublin Core.
//!
//! Depends on `sheaf-domain` only.

use std::io;

use serde_json::Value;
use sheaf_domain::model::RecordVersion;

use crate::xml::{DC_NS, OAI_DC_NS, OAI_DC_SCHEMA, XSI_NS, Xml, element, end, start};
use crate::xslt::DcField;

/// Identifier values MetaStore uses for "not assigned yet".
const PLACEHOLDERS: &[&str] = &["(:tba)", "(:unas)", "(:unav)"];

/// Writes `<oai_dc:dc>` for a record.
pub(crate) fn write(x: &mut Xml, rec: &RecordVersion) -> io::Result<()> {
    open(x)?;
    for (name, value) in crosswalk(rec) {
        element(x, name, &[], &value)?;
    }
    end(x, "oai_dc:dc")
}

/// Writes `<oai_dc:dc>` with the fields an XSLT crosswalk produced.
pub(crate) fn write_fields(x: &mut Xml, fields: &[DcField]) -> io::Result<()> {
    open(x)?;
    for f in fields {
        match &f.lang {
            Some(lang) => element(x, &f.name, &[("xml:lang", lang)], &f.value)?,
            None => element(x, &f.name, &[], &f.value)?,
        }
    }
    end(x, "oai_dc:dc")
}

fn open(x: &mut Xml) -> io::Result<()> {
    start(
        x,
        "oai_dc:dc",
        &[
            ("xmlns:oai_dc", OAI_DC_NS),
            ("xmlns:dc", DC_NS),
            ("xmlns:xsi", XSI_NS),
            (
                "xsi:schemaLocation",
                &format!("{OAI_DC_NS} {OAI_DC_SCHEMA}"),
            ),
        ],
    )
}

/// The Dublin Core elements of a record, in a stable order, without
/// duplicates or empty values.
pub(crate) fn crosswalk(rec: &RecordVersion) -> Vec<(&'static str, String)> {
    let r = &rec.record;
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let mut push = |name: &'static str, v: String| {
        let v = v.trim().to_owned();
        if !v.is_empty() && !out.iter().any(|(n, o)| *n == name && *o == v) {
            out.push((name, v));
        }
    };
    for t in texts(&r["titles"], &["value", "title"])
        .into_iter()
        .chain(texts(&r["title"], &["value"]))
    {
        push("dc:title", t);
    }
    for c in items(&r["creators"]).filter_map(person) {
        push("dc:creator", c);
    }
    for s in texts(&r["subjects"], &["value", "subject"]) {
        push("dc:subject", s);
    }
    for d in texts(&r["descriptions"], &["value", "description"]) {
        push("dc:description", d);
    }
    for p in texts(&r["publisher"], &["value", "name"]) {
        push("dc:publisher", p);
    }
    for c in items(&r["contributors"]).filter_map(person) {
        push("dc:contributor", c);
    }
    for d in texts(&r["publicationYear"], &[])
        .into_iter()
        .chain(texts(&r["dates"], &["value", "date"]))
    {
        push("dc:date", d);
    }
    let rt = &r["resourceType"];
    for t in texts(&rt["typeGeneral"], &[])
        .into_iter()
        .chain(texts(&rt["value"], &[]))
    {
        push("dc:type", t);
    }
    for f in texts(&r["formats"], &["value", "format"]) {
        push("dc:format", f);
    }
    for id in identifier(&r["identifier"]) {
        push("dc:identifier", id);
    }
    for alt in items(&r["alternateIdentifiers"]) {
        // INTERNAL ids are Sheaf's own and mean nothing outside it.
        if alt["identifierType"].as_str() != Some("INTERNAL") {
            for id in texts(&alt["value"], &[]) {
                push("dc:identifier", id);
            }
        }
    }
    for res in &rec.resources {
        push("dc:identifier", res.clone());
    }
    for rel in items(&r["relatedIdentifiers"]) {
        let value = texts(&rel["value"], &[]);
        match rel["relationType"].as_str() {
            Some("IS_METADATA_FOR") => value.into_iter().for_each(|v| push("dc:identifier", v)),
            // The link to the record's own schema is not about the resource.
            Some("HAS_METADATA") => {}
            _ => value.into_iter().for_each(|v| push("dc:relation", v)),
        }
    }
    for l in texts(&r["language"], &[]) {
        push("dc:language", l);
    }
    for rights in texts(&r["rights"], &["value", "rights", "rightsUri", "schemeUri"]) {
        push("dc:rights", rights);
    }
    out
}

/// The elements of an array, or the value itself when it is one object.
fn items(v: &Value) -> Box<dyn Iterator<Item = &Value> + '_> {
    match v {
        Value::Array(a) => Box::new(a.iter()),
        Value::Null => Box::new(std::iter::empty()),
        other => Box::new(std::iter::once(other)),
    }
}

/// Strings found in a value: itself if scalar, the first of `keys` present
/// in an object, recursively through arrays.
fn texts(v: &Value, keys: &[&str]) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Array(a) => a.iter().flat_map(|i| texts(i, keys)).collect(),
        Value::Object(o) => keys
            .iter()
            .find_map(|k| o.get(*k).filter(|x| !x.is_null()))
            .map(|x| texts(x, &[]))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A creator or contributor as one string: its name, or "family, given".
fn person(p: &Value) -> Option<String> {
    if let Some(s) = p.as_str() {
        return Some(s.to_owned());
    }
    for k in ["name", "creatorName", "contributorName"] {
        if let Some(n) = texts(&p[k], &["value"]).into_iter().next() {
            return Some(n);
        }
    }
    let family = p["familyName"].as_str().unwrap_or("").trim();
    let given = p["givenName"].as_str().unwrap_or("").trim();
    match (family.is_empty(), given.is_empty()) {
        (true, true) => None,
        (false, true) => Some(family.to_owned()),
        (true, false) => Some(given.to_owned()),
        (false, false) => Some(format!("{family}, {given}")),
    }
}

/// The record's main identifier, DOIs as resolvable URLs, placeholders dropped.
fn identifier(v: &Value) -> Vec<String> {
    items(v)
        .flat_map(|i| {
            let kind = i["identifierType"].as_str().unwrap_or("");
            texts(i, &["value", "identifier"])
                .into_iter()
                .filter(|s| !PLACEHOLDERS.contains(&s.trim()))
                .map(move |s| {
                    if kind.eq_ignore_ascii_case("DOI") && !s.starts_with("http") {
                        format!("https://doi.org/{}", s.trim())
                    } else {
                        s
                    }
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;
    use sheaf_domain::{ContentHash, RecordId, SchemaId};

    fn rec(record: Value) -> RecordVersion {
        RecordVersion {
            id: RecordId::parse("r1").expect("id"),
            version: 1,
            deleted: false,
            schema_id: SchemaId::parse("s").expect("id"),
            schema_version: 1,
            document: Vec::new(),
            record,
            resources: vec!["https://data.example.org/1".into()],
            acl: Vec::new(),
            source_id: None,
            provenance: None,
            content_hash: ContentHash::of_parts([b"x".as_slice()]),
            seq: 1,
            changed_at: Utc::now(),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn maps_datacite_fields() {
        let dc = crosswalk(&rec(json!({
            "titles": [{"value": "A title"}, {"value": "A title"}],
            "creators": [{"familyName": "Doe", "givenName": "Jane"}, {"name": "ACME"}],
            "publisher": "Pub",
            "publicationYear": "2024",
            "subjects": [{"value": "physics"}],
            "identifier": {"value": "10.1234/x", "identifierType": "DOI"},
            "alternateIdentifiers": [{"value": "internal-1", "identifierType": "INTERNAL"}],
            "resourceType": {"value": "XML_Metadata", "typeGeneral": "MODEL"},
            "relatedIdentifiers": [{"value": "s", "relationType": "HAS_METADATA"},
                                   {"value": "https://other", "relationType": "IS_PART_OF"}],
            "language": "en",
        })));
        let want = [
            ("dc:title", "A title"),
            ("dc:creator", "Doe, Jane"),
            ("dc:creator", "ACME"),
            ("dc:subject", "physics"),
            ("dc:publisher", "Pub"),
            ("dc:date", "2024"),
            ("dc:type", "MODEL"),
            ("dc:type", "XML_Metadata"),
            ("dc:identifier", "https://doi.org/10.1234/x"),
            ("dc:identifier", "https://data.example.org/1"),
            ("dc:relation", "https://other"),
            ("dc:language", "en"),
        ];
        let got: Vec<(&str, &str)> = dc.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn survives_odd_shapes() {
        let dc = crosswalk(&rec(
            json!({"titles": "plain", "creators": 5, "identifier": {"value": "(:tba)"}}),
        ));
        assert_eq!(dc[0], ("dc:title", "plain".to_owned()));
        assert!(!dc.iter().any(|(_, v)| v == "(:tba)"));
    }
}
