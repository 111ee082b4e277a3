//! Sheaf's pure domain: identifiers, datestamps, hashes and the one model
//! (schemas, records, resources, sources, harvest runs, rejections).
//!
//! This crate depends on nothing of ours and on no I/O crate: no sqlx, axum,
//! reqwest or libxml. Every other crate speaks in these types.

mod datestamp;
mod hash;
mod ids;
pub mod model;
mod oai;

pub use datestamp::{Datestamp, DatestampError, Granularity};
pub use hash::{ContentHash, etag};
pub use ids::{IdError, RecordId, SchemaId, SourceId};
pub use oai::OaiErrorCode;
