//! The DataCite-style record Sheaf keeps beside each harvested document:
//! titles, creators, identifiers, dates (and publisher, year, type) read
//! from the metadata in one streaming pass, so the REST and OAI faces have
//! fields to show and filter on without parsing the document again.
//!
//! Reading is by element local name, so Dublin Core (`dc:title`,
//! `dc:creator`, …) maps exactly and DataCite-like formats (`title`,
//! `creatorName`, `identifier`, `date`) map on a best-effort basis; other
//! elements are ignored. Depends on quick-xml only.

use quick_xml::events::Event;
use quick_xml::reader::NsReader;
use serde_json::{Map, Value, json};

/// Values longer than this are cut (at a character boundary): the record
/// is a summary, the document keeps the full text.
const MAX_VALUE_CHARS: usize = 1000;
/// At most this many values per field, for the same reason.
const MAX_VALUES: usize = 50;

/// Which record field an element feeds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Title,
    Creator,
    Identifier,
    Date,
    Publisher,
}

fn field_of(local_name: &str) -> Option<Field> {
    Some(match local_name {
        "title" => Field::Title,
        "creator" | "creatorName" => Field::Creator,
        "identifier" | "alternateIdentifier" => Field::Identifier,
        "date" => Field::Date,
        "publisher" => Field::Publisher,
        _ => return None,
    })
}

#[derive(Default)]
struct Fields {
    titles: Vec<String>,
    creators: Vec<String>,
    identifiers: Vec<String>,
    dates: Vec<String>,
    publishers: Vec<String>,
}

impl Fields {
    fn push(&mut self, field: Field, value: String) {
        let list = match field {
            Field::Title => &mut self.titles,
            Field::Creator => &mut self.creators,
            Field::Identifier => &mut self.identifiers,
            Field::Date => &mut self.dates,
            Field::Publisher => &mut self.publishers,
        };
        if list.len() < MAX_VALUES && !list.contains(&value) {
            list.push(value);
        }
    }
}

/// Builds the DataCite-style record of a metadata document. `oai_identifier`
/// is added as an alternate identifier of type `OAI`. `Err` when the
/// document is not well-formed XML.
pub fn datacite_record(metadata: &[u8], oai_identifier: &str) -> Result<Value, String> {
    let fields = read_fields(metadata)?;
    Ok(to_record(fields, oai_identifier))
}

fn read_fields(metadata: &[u8]) -> Result<Fields, String> {
    let text = std::str::from_utf8(metadata).map_err(|e| format!("metadata is not UTF-8: {e}"))?;
    let mut reader = NsReader::from_str(text);
    // One entry per open element: the field it feeds (if any) and its text.
    let mut stack: Vec<(Option<Field>, String)> = Vec::new();
    let mut fields = Fields::default();
    loop {
        let event = reader.read_event().map_err(|e| {
            format!(
                "metadata is not well-formed at byte {}: {e}",
                reader.buffer_position()
            )
        })?;
        match event {
            Event::Start(e) => {
                let name = e.local_name();
                stack.push((field_of(name.as_ref()), String::new()));
            }
            Event::End(_) => {
                if let Some((Some(field), text)) = stack.pop() {
                    let value = clean(&text);
                    if !value.is_empty() {
                        fields.push(field, value);
                    }
                }
            }
            Event::Text(t) => append(&mut stack, &t.xml10_content()),
            Event::CData(t) => append(&mut stack, &t.xml10_content()),
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => match r.as_ref() {
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "amp" => Some('&'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        _ => None,
                    },
                    Err(_) => None,
                };
                if let Some(c) = resolved {
                    append(&mut stack, c.encode_utf8(&mut [0; 4]));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("metadata ends inside an element".to_owned());
    }
    Ok(fields)
}

fn append(stack: &mut [(Option<Field>, String)], text: &str) {
    if let Some((Some(_), buf)) = stack.last_mut()
        && buf.len() < MAX_VALUE_CHARS * 4
    {
        buf.push_str(text);
    }
}

/// Collapses whitespace runs and cuts overlong values.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_VALUE_CHARS));
    for (i, word) in s.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > MAX_VALUE_CHARS {
        out = out.chars().take(MAX_VALUE_CHARS).collect();
    }
    out
}

/// The identifier type DataCite would give a value, guessed from its form.
pub fn identifier_type(value: &str) -> &'static str {
    let lower = value.to_ascii_lowercase();
    if lower.starts_with("doi:")
        || lower.starts_with("https://doi.org/")
        || lower.starts_with("http://doi.org/")
        || lower.starts_with("http://dx.doi.org/")
        || lower.starts_with("https://dx.doi.org/")
        || (lower.starts_with("10.") && lower.contains('/'))
    {
        "DOI"
    } else if lower.starts_with("hdl:")
        || lower.starts_with("http://hdl.handle.net/")
        || lower.starts_with("https://hdl.handle.net/")
    {
        "Handle"
    } else if lower.starts_with("urn:") {
        "URN"
    } else if lower.starts_with("http://") || lower.starts_with("https://") {
        "URL"
    } else if lower.starts_with("oai:") {
        "OAI"
    } else {
        "Other"
    }
}

fn to_record(f: Fields, oai_identifier: &str) -> Value {
    let mut record = Map::new();
    record.insert(
        "titles".into(),
        f.titles.iter().map(|t| json!({ "value": t })).collect(),
    );
    record.insert(
        "creators".into(),
        f.creators.iter().map(|c| creator(c)).collect(),
    );
    if let Some(p) = f.publishers.first() {
        record.insert("publisher".into(), json!(p));
    }
    if let Some(year) = f.dates.iter().find_map(|d| year_of(d)) {
        record.insert("publicationYear".into(), json!(year));
    }
    record.insert(
        "resourceType".into(),
        json!({ "value": "XML_Metadata", "typeGeneral": "MODEL" }),
    );
    record.insert(
        "dates".into(),
        f.dates
            .iter()
            .map(|d| json!({ "value": d, "type": "ISSUED" }))
            .collect(),
    );
    let mut alternates: Vec<Value> = f
        .identifiers
        .iter()
        .map(|i| json!({ "value": i, "identifierType": identifier_type(i) }))
        .collect();
    if !f.identifiers.iter().any(|i| i == oai_identifier) {
        alternates.push(json!({ "value": oai_identifier, "identifierType": "OAI" }));
    }
    record.insert("alternateIdentifiers".into(), Value::Array(alternates));
    if let Some(doi) = f.identifiers.iter().find(|i| identifier_type(i) == "DOI") {
        record.insert(
            "identifier".into(),
            json!({ "value": doi, "identifierType": "DOI" }),
        );
    }
    Value::Object(record)
}

/// `Family, Given` becomes both names; anything else is kept whole as the
/// given name, as MetaStore does for free-text creators.
fn creator(name: &str) -> Value {
    match name.split_once(',') {
        Some((family, given)) if !family.trim().is_empty() && !given.trim().is_empty() => {
            json!({ "familyName": family.trim(), "givenName": given.trim() })
        }
        _ => json!({ "givenName": name }),
    }
}

/// The first four-digit year a date value starts with.
fn year_of(date: &str) -> Option<String> {
    let year: String = date.chars().take(4).collect();
    (year.len() == 4 && year.chars().all(|c| c.is_ascii_digit())).then_some(year)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DC: &str = r#"<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
        xmlns:dc="http://purl.org/dc/elements/1.1/">
      <dc:title>On   the &amp; <![CDATA[Origin]]>
        of Things</dc:title>
      <dc:creator>Darwin, Charles</dc:creator>
      <dc:creator>Anonymous</dc:creator>
      <dc:date>1859-11-24</dc:date>
      <dc:identifier>https://doi.org/10.1234/abc</dc:identifier>
      <dc:identifier>https://example.org/item/1</dc:identifier>
      <dc:publisher>John Murray</dc:publisher>
    </oai_dc:dc>"#;

    #[test]
    fn reads_dublin_core() {
        let r = datacite_record(DC.as_bytes(), "oai:ex:1").expect("record");
        assert_eq!(r["titles"][0]["value"], "On the & Origin of Things");
        assert_eq!(r["creators"][0]["familyName"], "Darwin");
        assert_eq!(r["creators"][0]["givenName"], "Charles");
        assert_eq!(r["creators"][1]["givenName"], "Anonymous");
        assert_eq!(r["publicationYear"], "1859");
        assert_eq!(r["publisher"], "John Murray");
        assert_eq!(r["dates"][0]["value"], "1859-11-24");
        assert_eq!(r["identifier"]["value"], "https://doi.org/10.1234/abc");
        let alts = r["alternateIdentifiers"].as_array().expect("array");
        assert_eq!(alts.len(), 3);
        assert_eq!(alts[1]["identifierType"], "URL");
        assert_eq!(alts[2]["value"], "oai:ex:1");
        assert_eq!(alts[2]["identifierType"], "OAI");
    }

    #[test]
    fn same_document_same_record() {
        let a = datacite_record(DC.as_bytes(), "oai:ex:1").expect("record");
        let b = datacite_record(DC.as_bytes(), "oai:ex:1").expect("record");
        assert_eq!(a.to_string(), b.to_string());
    }

    #[test]
    fn malformed_metadata_is_an_error() {
        assert!(datacite_record(b"<a><b></a>", "x").is_err());
        assert!(datacite_record(b"<a>", "x").is_err());
        assert!(datacite_record(&[0xff, 0xfe], "x").is_err());
    }

    #[test]
    fn identifier_types() {
        assert_eq!(identifier_type("10.5281/zenodo.1"), "DOI");
        assert_eq!(identifier_type("hdl:1234/5"), "Handle");
        assert_eq!(identifier_type("urn:nbn:de:1"), "URN");
        assert_eq!(identifier_type("http://x.org"), "URL");
        assert_eq!(identifier_type("ISBN 3-1"), "Other");
    }
}
