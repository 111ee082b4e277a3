//! JSON Schema (drafts 4, 6, 7, 2019-09, 2020-12) through `jsonschema`,
//! offline: the crate is built without its HTTP and file resolvers, and
//! `$ref` resolves only against registered schemas handed in here.
//!
//! Depends on `report`. Compiled validators are `Send + Sync`; the registry
//! shares them with `Arc`.

use serde_json::Value;

use crate::report::{Diagnostic, ValidationReport};

/// The meta-schemas Sheaf accepts in `$schema`, without trailing `#`.
const SUPPORTED_DRAFTS: &[(&str, jsonschema::Draft)] = &[
    (
        "http://json-schema.org/draft-04/schema",
        jsonschema::Draft::Draft4,
    ),
    (
        "http://json-schema.org/draft-06/schema",
        jsonschema::Draft::Draft6,
    ),
    (
        "http://json-schema.org/draft-07/schema",
        jsonschema::Draft::Draft7,
    ),
    (
        "https://json-schema.org/draft/2019-09/schema",
        jsonschema::Draft::Draft201909,
    ),
    (
        "https://json-schema.org/draft/2020-12/schema",
        jsonschema::Draft::Draft202012,
    ),
];

/// A registered JSON schema a `$ref` may point at.
#[derive(Debug, Clone)]
pub(crate) struct JsonCandidate {
    pub schema_id: String,
    pub document: Value,
}

/// The URL under which a registered JSON schema can always be referenced.
pub(crate) fn registered_url(schema_id: &str) -> String {
    format!("sheaf:///registered/{schema_id}")
}

/// Parses JSON, reporting where it stops being JSON.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, ValidationReport> {
    serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        // serde_json appends the position to its message; it goes in the fields.
        let message = match text.rfind(" at line ") {
            Some(i) => &text[..i],
            None => &text,
        };
        ValidationReport::single(Diagnostic::at(
            u32::try_from(e.line()).ok().filter(|l| *l > 0),
            u32::try_from(e.column()).ok().filter(|c| *c > 0),
            format!("not valid JSON: {message}"),
        ))
    })
}

/// The `$id` of a schema (`id` in draft 4).
fn schema_uri(schema: &Value) -> Option<&str> {
    schema
        .get("$id")
        .or_else(|| schema.get("id"))
        .and_then(Value::as_str)
        .map(|s| s.trim_end_matches('#'))
}

/// Compiles a JSON schema, resolving `$ref` only against `registered`
/// (by `$id` or by `sheaf:///registered/<schemaId>`).
pub(crate) fn compile(
    schema: &Value,
    registered: &[JsonCandidate],
) -> Result<jsonschema::Validator, ValidationReport> {
    let draft = match schema.get("$schema") {
        None => jsonschema::Draft::Draft202012,
        Some(Value::String(uri)) => {
            let uri = uri.trim_end_matches('#');
            SUPPORTED_DRAFTS
                .iter()
                .find(|(u, _)| *u == uri)
                .map(|(_, d)| *d)
                .ok_or_else(|| {
                    ValidationReport::message(format!(
                        "unsupported $schema {uri:?}: use draft 4, 6, 7, 2019-09 or 2020-12"
                    ))
                })?
        }
        Some(other) => {
            return Err(ValidationReport::message(format!(
                "$schema must be a string, found {other}"
            )));
        }
    };
    if !schema.is_object() && !schema.is_boolean() {
        return Err(ValidationReport::message(
            "a JSON schema must be an object or a boolean",
        ));
    }
    let own_uri = schema_uri(schema);
    let mut builder = jsonschema::Registry::new();
    for c in registered {
        // A registered schema with an unusable `$id` stays reachable by its
        // `sheaf:///` URL; it must not break unrelated compilations.
        let by_id = schema_uri(&c.document)
            .filter(|u| Some(*u) != own_uri && jsonschema::uri::from_str(u).is_ok());
        for uri in by_id
            .map(str::to_owned)
            .into_iter()
            .chain([registered_url(&c.schema_id)])
        {
            builder = builder
                .add(uri, &c.document)
                .map_err(|e| ValidationReport::message(e.to_string()))?;
        }
    }
    let registry = builder
        .prepare()
        .map_err(|e| ValidationReport::message(format!("cannot index registered schemas: {e}")))?;
    jsonschema::options()
        .with_draft(draft)
        .offline()
        .should_validate_formats(true)
        .with_registry(&registry)
        .build(schema)
        .map_err(|e| ValidationReport::single(error_diagnostic(&e)))
}

/// Validates an already-parsed instance.
pub(crate) fn validate(
    validator: &jsonschema::Validator,
    instance: &Value,
) -> Result<(), ValidationReport> {
    let diagnostics: Vec<Diagnostic> = validator
        .iter_errors(instance)
        .map(|e| error_diagnostic(&e))
        .collect();
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(ValidationReport { diagnostics })
    }
}

fn error_diagnostic(e: &jsonschema::ValidationError<'_>) -> Diagnostic {
    let path = e.instance_path().as_str();
    let path = if path.is_empty() { "/" } else { path };
    Diagnostic::new(format!("at {path}: {e}"))
}
