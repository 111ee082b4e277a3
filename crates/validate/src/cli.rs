//! The `sheaf schemas add|list` and `sheaf validate` commands, minus
//! argument parsing (the binary owns clap). Each returns the process exit
//! code: 0 success / all valid, 1 a document or schema was rejected, 2 a
//! usage error (bad id or spec, unknown schema, unreadable file).
//!
//! Depends on `registry`. Prints results to stdout and problems to stderr.

use std::path::{Path, PathBuf};

use sheaf_domain::SchemaId;
use sheaf_domain::model::{Expect, SchemaKind};
use sheaf_store::SchemaOutcome;

use crate::registry::{Registry, RegistryError, SchemaRequest};

/// Exit code: everything valid / done.
pub const EXIT_OK: i32 = 0;
/// Exit code: a document or schema was rejected.
pub const EXIT_INVALID: i32 = 1;
/// Exit code: the command was used wrongly.
pub const EXIT_USAGE: i32 = 2;

/// `sheaf schemas add <id> <file> [--prefix P]`: registers a new version
/// (XSD or JSON Schema, told apart by the document's first character).
pub async fn schemas_add(
    registry: &Registry,
    id: &str,
    file: &Path,
    prefix: Option<String>,
) -> i32 {
    let schema_id = match SchemaId::parse(id) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("invalid schema id {id:?}: {e}");
            return EXIT_USAGE;
        }
    };
    let document = match tokio::fs::read(file).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", file.display());
            return EXIT_USAGE;
        }
    };
    let kind = sniff_kind(&document);
    let req = SchemaRequest {
        schema_id,
        kind,
        document,
        metadata_prefix: prefix,
        record: serde_json::json!({ "titles": [{ "value": id }] }),
    };
    match registry.register(req, Expect::Any).await {
        Ok(outcome) => {
            let (what, v) = match &outcome {
                SchemaOutcome::Created(v) => ("registered", v),
                SchemaOutcome::Updated(v) => ("added", v),
                SchemaOutcome::Unchanged(v) => ("unchanged:", v),
            };
            println!(
                "{what} {} version {} ({}, prefix {}{})",
                v.schema_id,
                v.version,
                v.kind.as_str(),
                v.metadata_prefix,
                v.namespace
                    .as_deref()
                    .map(|n| format!(", namespace {n}"))
                    .unwrap_or_default()
            );
            EXIT_OK
        }
        Err(e @ (RegistryError::DoesNotCompile(_) | RegistryError::TooLarge { .. })) => {
            eprintln!("{}: {e}", file.display());
            EXIT_INVALID
        }
        Err(e) => {
            eprintln!("cannot register {id}: {e}");
            EXIT_INVALID
        }
    }
}

/// `sheaf schemas list`: the current version of every schema.
pub async fn schemas_list(registry: &Registry) -> i32 {
    match registry.store().list_schemas().await {
        Ok(schemas) => {
            println!(
                "{:<24} {:>7} {:<5} {:<16} NAMESPACE",
                "SCHEMA", "VERSION", "KIND", "PREFIX"
            );
            for s in schemas {
                println!(
                    "{:<24} {:>7} {:<5} {:<16} {}",
                    s.schema_id.as_str(),
                    s.version,
                    s.kind.as_str(),
                    s.metadata_prefix,
                    s.namespace.as_deref().unwrap_or("-")
                );
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("cannot list schemas: {e}");
            EXIT_INVALID
        }
    }
}

/// `sheaf validate <schemaId>[@version] <file>...`: validates each file and
/// prints its verdict; every diagnostic of an invalid file is printed.
pub async fn validate_files(registry: &Registry, spec: &str, files: &[PathBuf]) -> i32 {
    let (schema_id, version) = match parse_spec(spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_USAGE;
        }
    };
    if files.is_empty() {
        eprintln!("no files to validate");
        return EXIT_USAGE;
    }
    let schema = match registry.schema(&schema_id, version).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_USAGE;
        }
    };
    let mut code = EXIT_OK;
    for file in files {
        let document = match tokio::fs::read(file).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{}: cannot read: {e}", file.display());
                code = code.max(EXIT_USAGE);
                continue;
            }
        };
        match registry.validate_with(&schema, &document).await {
            Ok(()) => println!(
                "{}: valid against {}@{}",
                file.display(),
                schema.schema_id,
                schema.version
            ),
            Err(RegistryError::Invalid(report)) => {
                println!(
                    "{}: INVALID against {}@{}",
                    file.display(),
                    schema.schema_id,
                    schema.version
                );
                for d in &report.diagnostics {
                    println!("{}: {d}", file.display());
                }
                code = code.max(EXIT_INVALID);
            }
            Err(e @ RegistryError::TooLarge { .. }) => {
                println!("{}: INVALID: {e}", file.display());
                code = code.max(EXIT_INVALID);
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                code = code.max(EXIT_USAGE);
            }
        }
    }
    code
}

/// Reads `schemaId[@version]`.
pub fn parse_spec(spec: &str) -> Result<(SchemaId, Option<i64>), String> {
    let (id, version) = match spec.split_once('@') {
        Some((id, v)) => {
            let v: i64 = v.parse().ok().filter(|v| *v >= 1).ok_or_else(|| {
                format!("invalid version {v:?} in {spec:?}: expected a number ≥ 1")
            })?;
            (id, Some(v))
        }
        None => (spec, None),
    };
    let id = SchemaId::parse(id).map_err(|e| format!("invalid schema id in {spec:?}: {e}"))?;
    Ok((id, version))
}

/// JSON schemas start with `{` (or are `true`/`false`); anything else is
/// treated as XML.
fn sniff_kind(document: &[u8]) -> SchemaKind {
    let first = document
        .iter()
        .copied()
        .find(|b| !(b.is_ascii_whitespace() || *b == 0xEF || *b == 0xBB || *b == 0xBF));
    match first {
        Some(b'{' | b't' | b'f') => SchemaKind::Json,
        _ => SchemaKind::Xsd,
    }
}
