//! Registration: turns a harvested page's records into the store's page
//! items — a validated new version (or `unchanged`, decided by the store
//! from the content hash), a tombstone for a deleted header, or a
//! rejection with its reason for anything malformed or invalid.
//!
//! Depends on the store trait, the validation registry, [`crate::config`]
//! (schema choice, resource rule), [`crate::parse`] (records) and
//! [`crate::describe`] (the DataCite-style record).
//!
//! ## Record ids
//!
//! A harvested record's id is `<source id>:<OAI identifier>`, with every
//! byte of the identifier's UTF-8 outside the characters record ids allow
//! (letters, digits, `-_.:~/+@=,;!$*'()`) written as `%XX` — `%` itself
//! included, so the mapping is injective and `oai:arXiv.org:cs/0112017`
//! stays readable (`arxiv:oai:arXiv.org:cs/0112017`). An id that would be
//! longer than 512 characters is cut and suffixed with `~` and the SHA-256
//! of the whole identifier, which keeps it stable and unique.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sheaf_domain::model::{NewRejection, PageItem, Provenance, RecordWrite, SchemaVersion};
use sheaf_domain::{ContentHash, RecordId, SourceId};
use sheaf_store::{DynStore, StoreError};
use sheaf_validate::{Registry, RegistryError};

use crate::config::{ResourceIdRule, SourceConfig};
use crate::describe::datacite_record;
use crate::parse::ParsedRecord;
use crate::resource::ResourcePath;

/// The origin written on harvest rejections.
pub const ORIGIN: &str = "harvest";

/// Longest record id the domain allows.
const MAX_ID_CHARS: usize = 512;

/// Why registration could not run at all (per-record problems become
/// rejections, never errors).
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(
        "no schema is registered for metadataPrefix {prefix:?}; register one or set `schema` in the source's config"
    )]
    NoSchemaForPrefix { prefix: String },
    #[error("schema {schema}: {source}")]
    Schema {
        schema: String,
        #[source]
        source: RegistryError,
    },
    #[error("resource_id rule: {0}")]
    Rule(String),
    #[error("validation failed to run: {0}")]
    Validator(#[source] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The record id of a harvested record (see the module docs).
pub fn record_id(source: &SourceId, oai_identifier: &str) -> Option<RecordId> {
    let identifier = oai_identifier.trim();
    if identifier.is_empty() {
        return None;
    }
    let mut id = String::with_capacity(source.as_str().len() + 1 + identifier.len());
    id.push_str(source.as_str());
    id.push(':');
    for b in identifier.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.:~/+@=,;!$*'()".contains(&b) {
            id.push(b as char);
        } else {
            id.push_str(&format!("%{b:02X}"));
        }
    }
    if id.len() > MAX_ID_CHARS {
        let hash = ContentHash::of_parts([identifier.as_bytes()]);
        let keep = MAX_ID_CHARS - 1 - hash.as_str().len();
        // Only ASCII was written, so any byte index is a char boundary.
        id.truncate(keep);
        id.push('~');
        id.push_str(hash.as_str());
    }
    RecordId::parse(id).ok()
}

/// Registers the pages of one source: the schema, resource rule and
/// provenance fixed for a run.
#[derive(Clone)]
pub struct Registrar {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    source: SourceId,
    base_url: String,
    schema: SchemaVersion,
    rule: Rule,
}

enum Rule {
    OaiIdentifier,
    Path(ResourcePath),
}

/// What one record becomes before validation.
enum Prepared {
    Ready(PageItem),
    /// A write whose document still has to pass validation.
    Candidate(RecordWrite),
}

impl Registrar {
    /// Resolves the source's schema (its `schema`, else the one registered
    /// under its metadataPrefix; `oai_dc` is registered on demand) and
    /// compiles its resource rule.
    pub async fn new(registry: &Registry, config: &SourceConfig) -> Result<Self, RegisterError> {
        let schema = resolve_schema(registry, config).await?;
        let rule = match &config.resource_id {
            ResourceIdRule::OaiIdentifier => Rule::OaiIdentifier,
            ResourceIdRule::XPath(expr) => Rule::Path(
                ResourcePath::compile(expr, &config.namespaces).map_err(RegisterError::Rule)?,
            ),
        };
        Ok(Registrar {
            inner: Arc::new(Inner {
                registry: registry.clone(),
                source: config.id.clone(),
                base_url: config.base_url.to_string(),
                schema,
                rule,
            }),
        })
    }

    /// The schema version records are validated against and linked to.
    pub fn schema(&self) -> &SchemaVersion {
        &self.inner.schema
    }

    /// Turns a page's records into page items, in page order.
    ///
    /// Documents identical (same content hash) to a record's current
    /// version were validated against this very schema version when that
    /// version was written, so they skip validation: an unchanged
    /// re-harvest costs one lookup per page instead of a validation per
    /// record.
    pub async fn register_page(
        &self,
        records: Vec<ParsedRecord>,
        harvest_time: DateTime<Utc>,
    ) -> Result<Vec<PageItem>, RegisterError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let inner = Arc::clone(&self.inner);
        let prepared = tokio::task::spawn_blocking(move || {
            records
                .into_iter()
                .map(|r| inner.prepare(r, harvest_time))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| RegisterError::Validator(RegistryError::Internal(e.to_string())))?;

        let known = self.current_hashes(&prepared).await?;
        let mut to_validate: Vec<usize> = Vec::new();
        for (i, p) in prepared.iter().enumerate() {
            if let Prepared::Candidate(w) = p
                && known.get(&w.id) != Some(&w.content_hash())
            {
                to_validate.push(i);
            }
        }
        let verdicts = self.validate(&prepared, &to_validate).await?;
        let mut verdicts = to_validate.into_iter().zip(verdicts).peekable();

        let mut items = Vec::with_capacity(prepared.len());
        for (i, p) in prepared.into_iter().enumerate() {
            let verdict = match verdicts.peek() {
                Some((j, _)) if *j == i => verdicts.next().map(|(_, v)| v),
                _ => None,
            };
            items.push(match (p, verdict) {
                (Prepared::Ready(item), _) => item,
                (Prepared::Candidate(w), None | Some(Ok(()))) => PageItem::Put(w),
                (Prepared::Candidate(w), Some(Err(e))) => {
                    let identifier = w.provenance.as_ref().map(|p| p.oai_identifier.clone());
                    PageItem::Reject(self.inner.rejection(identifier, w.document, &e))
                }
            });
        }
        Ok(items)
    }

    /// The current content hash of every candidate's record, in one query.
    async fn current_hashes(
        &self,
        prepared: &[Prepared],
    ) -> Result<HashMap<RecordId, ContentHash>, RegisterError> {
        let ids: Vec<RecordId> = prepared
            .iter()
            .filter_map(|p| match p {
                Prepared::Candidate(w) => Some(w.id.clone()),
                Prepared::Ready(_) => None,
            })
            .collect();
        let store: &DynStore = self.inner.registry.store();
        Ok(store.live_hashes(&ids).await?)
    }

    /// Validates the candidates at `indices`, split over the blocking
    /// threads so a page uses every core; one verdict per index, in order.
    async fn validate(
        &self,
        prepared: &[Prepared],
        indices: &[usize],
    ) -> Result<Vec<Result<(), RegistryError>>, RegisterError> {
        if indices.is_empty() {
            return Ok(Vec::new());
        }
        let docs: Vec<Vec<u8>> = indices
            .iter()
            .filter_map(|&i| match &prepared[i] {
                Prepared::Candidate(w) => Some(w.document.clone()),
                Prepared::Ready(_) => None,
            })
            .collect();
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        // Small pages are not worth a second thread.
        let chunk = docs.len().div_ceil(parallel).max(64);
        let mut chunks = Vec::new();
        let mut rest = docs;
        while rest.len() > chunk {
            let tail = rest.split_off(chunk);
            chunks.push(rest);
            rest = tail;
        }
        chunks.push(rest);
        let registry = &self.inner.registry;
        let schema = &self.inner.schema;
        let results = futures_util::future::join_all(
            chunks
                .into_iter()
                .map(|c| registry.validate_many(schema, c)),
        )
        .await;
        let mut verdicts = Vec::with_capacity(indices.len());
        for r in results {
            verdicts.extend(r.map_err(RegisterError::Validator)?);
        }
        Ok(verdicts)
    }
}

impl Inner {
    fn provenance(&self, record: &ParsedRecord, harvest_time: DateTime<Utc>) -> Provenance {
        Provenance {
            harvest_time,
            base_url: self.base_url.clone(),
            oai_identifier: record.header.identifier.clone(),
            datestamp: record.header.datestamp.clone(),
            metadata_namespace: record.metadata_namespace.clone(),
            set_specs: record.header.set_specs.clone(),
        }
    }

    fn prepare(&self, record: ParsedRecord, harvest_time: DateTime<Utc>) -> Prepared {
        let identifier = record.header.identifier.clone();
        let Some(id) = record_id(&self.source, &identifier) else {
            return Prepared::Ready(PageItem::Reject(self.reject(
                Some(identifier.clone()),
                record.raw.clone(),
                format!("record has no usable OAI identifier ({identifier:?})"),
            )));
        };
        let provenance = self.provenance(&record, harvest_time);
        if record.header.deleted {
            return Prepared::Ready(PageItem::Delete {
                id,
                provenance: Some(provenance),
            });
        }
        let document = match record.metadata {
            Ok(Some(doc)) => doc,
            Ok(None) => {
                return Prepared::Ready(PageItem::Reject(self.reject(
                    Some(identifier),
                    record.raw,
                    "record is not deleted but has no metadata".to_owned(),
                )));
            }
            Err(reason) => {
                return Prepared::Ready(PageItem::Reject(self.reject(
                    Some(identifier),
                    record.raw,
                    format!("malformed record: {reason}"),
                )));
            }
        };
        let fields = match datacite_record(&document, &identifier) {
            Ok(f) => f,
            Err(reason) => {
                return Prepared::Ready(PageItem::Reject(self.reject(
                    Some(identifier),
                    record.raw,
                    format!("malformed metadata: {reason}"),
                )));
            }
        };
        let resources = match &self.rule {
            Rule::OaiIdentifier => vec![identifier.clone()],
            Rule::Path(path) => match path.evaluate(&document) {
                Ok(found) if !found.is_empty() => found,
                // A record whose metadata names no resource still describes
                // the upstream item: link it by its OAI identifier rather
                // than leave it unreachable by resourceId.
                Ok(_) => vec![identifier.clone()],
                Err(reason) => {
                    return Prepared::Ready(PageItem::Reject(self.reject(
                        Some(identifier),
                        record.raw,
                        format!("malformed metadata: {reason}"),
                    )));
                }
            },
        };
        Prepared::Candidate(RecordWrite {
            id,
            schema_id: self.schema.schema_id.clone(),
            schema_version: self.schema.version,
            document,
            record: fields,
            resources,
            acl: Vec::new(),
            source_id: Some(self.source.clone()),
            provenance: Some(provenance),
        })
    }

    fn reject(
        &self,
        identifier: Option<String>,
        document: Vec<u8>,
        message: String,
    ) -> NewRejection {
        NewRejection {
            origin: ORIGIN.to_owned(),
            source_id: Some(self.source.clone()),
            run_id: None,
            identifier,
            schema_id: Some(self.schema.schema_id.clone()),
            schema_version: Some(self.schema.version),
            message,
            document,
        }
    }

    /// A validation failure keeps the standalone document that was
    /// validated, so the validator's line numbers point into it.
    fn rejection(
        &self,
        identifier: Option<String>,
        document: Vec<u8>,
        error: &RegistryError,
    ) -> NewRejection {
        self.reject(identifier, document, error.to_string())
    }
}

/// The schema a source's records are validated against.
async fn resolve_schema(
    registry: &Registry,
    config: &SourceConfig,
) -> Result<SchemaVersion, RegisterError> {
    if let Some(id) = &config.schema {
        return registry
            .schema(id, None)
            .await
            .map_err(|source| RegisterError::Schema {
                schema: id.to_string(),
                source,
            });
    }
    if let Some(s) = by_prefix(registry.store(), &config.metadata_prefix).await? {
        return Ok(s);
    }
    if config.metadata_prefix == "oai_dc" {
        registry
            .ensure_builtins()
            .await
            .map_err(|source| RegisterError::Schema {
                schema: "oai_dc".to_owned(),
                source,
            })?;
        if let Some(s) = by_prefix(registry.store(), "oai_dc").await? {
            return Ok(s);
        }
    }
    Err(RegisterError::NoSchemaForPrefix {
        prefix: config.metadata_prefix.clone(),
    })
}

/// The schema published under `prefix`; when several are, the one whose
/// id is the prefix itself, else the first by id.
async fn by_prefix(store: &DynStore, prefix: &str) -> Result<Option<SchemaVersion>, StoreError> {
    let mut matching: Vec<SchemaVersion> = store
        .list_schemas()
        .await?
        .into_iter()
        .filter(|s| s.metadata_prefix == prefix)
        .collect();
    matching.sort_by(|a, b| a.schema_id.cmp(&b.schema_id));
    let exact = matching.iter().position(|s| s.schema_id.as_str() == prefix);
    Ok(match exact {
        Some(i) => Some(matching.swap_remove(i)),
        None => matching.into_iter().next(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> SourceId {
        SourceId::parse("arxiv").expect("id")
    }

    #[test]
    fn oai_identifiers_map_readably_and_injectively() {
        let id = record_id(&src(), "oai:arXiv.org:cs/0112017").expect("id");
        assert_eq!(id.as_str(), "arxiv:oai:arXiv.org:cs/0112017");
        let spaced = record_id(&src(), "oai:x:a b").expect("id");
        assert_eq!(spaced.as_str(), "arxiv:oai:x:a%20b");
        let percent = record_id(&src(), "oai:x:a%20b").expect("id");
        assert_eq!(percent.as_str(), "arxiv:oai:x:a%2520b");
        assert_ne!(spaced, percent);
        let umlaut = record_id(&src(), "oai:x:ü").expect("id");
        assert_eq!(umlaut.as_str(), "arxiv:oai:x:%C3%BC");
        assert!(record_id(&src(), "  ").is_none());
    }

    #[test]
    fn long_identifiers_are_hashed_stably() {
        let long = "oai:x:".to_owned() + &"é".repeat(400);
        let a = record_id(&src(), &long).expect("id");
        let b = record_id(&src(), &long).expect("id");
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), MAX_ID_CHARS);
        let other = "oai:x:".to_owned() + &"é".repeat(401);
        assert_ne!(a, record_id(&src(), &other).expect("id"));
    }
}
