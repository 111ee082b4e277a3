//! Schema registry and validation for Sheaf: XSD through libxml2 and JSON
//! Schema through `jsonschema`, both hardened for hostile input and
//! offline (imports and `$ref` resolve only against registered schemas and
//! the schemas bundled from `fixtures/schemas`).
//!
//! Depends on `sheaf-domain` and the `sheaf-store` trait. Modules:
//! `registry` (the async API the faces and the harvester use), `xsd` (all
//! libxml2 calls), `json`, `bundled` (schemas compiled into the binary),
//! `report` (diagnostics), `cli` (the `sheaf schemas`/`sheaf validate`
//! commands).

mod bundled;
pub mod cli;
mod json;
mod registry;
mod report;
mod xsd;

pub use bundled::{BUNDLED, BundledSchema, OAI_DC_NAMESPACE};
pub use registry::{Limits, Registry, RegistryError, SchemaRequest, Validator, rejection};
pub use report::{Diagnostic, ValidationError, ValidationReport};
pub use xsd::{safe_options as safe_parser_options, serve_documents};

/// Validates `document` against a schema bundled in the binary, by file
/// name: `OAI-PMH.xsd`, `oai_dc.xsd`, `simpledc20021212.xsd`, `xml.xsd`, or
/// `oai_dc-envelope.xsd` (OAI-PMH plus oai_dc: use it for responses that
/// carry oai_dc records, since OAI-PMH.xsd's metadata wildcard is strict).
///
/// Synchronous: runs libxml2 on the calling thread, compiling the schema
/// once per thread. Documents over the default size limit are refused.
pub fn validate_against_bundled(
    xsd_file_name: &str,
    document: &[u8],
) -> Result<(), ValidationError> {
    let limit = Limits::default().max_document_bytes;
    if document.len() > limit {
        return Err(ValidationError::TooLarge {
            limit,
            size: document.len(),
        });
    }
    let (key, bundle) = xsd::bundled_bundle(xsd_file_name)?;
    xsd::validate(&key, &bundle, document)
}
