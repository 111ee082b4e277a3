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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sheaf_domain::model::{NewRejection, PageItem, Provenance, RecordWrite, SchemaVersion};
use sheaf_domain::{ContentHash, RecordId, SourceId};
use sheaf_store::{DynStore, StoreError};
use sheaf_validate::{Registry, RegistryError, Validator};

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

/// How Sheaf reads records into versions: bump it whenever
/// [`datacite_record`], the resource rules or the document extraction
/// change what a record becomes, so that input keys made by an older
/// reading no longer match and every record is prepared afresh.
const READING: &str = "sheaf-harvest-reading/1";

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
    /// Everything besides the record itself that its version is derived
    /// from (see [`Inner::input_key`]).
    reading: ContentHash,
}

enum Rule {
    OaiIdentifier,
    Path(ResourcePath),
}

/// A registered page: its items in page order, and the records behind
/// its `Keep` items (in the same order), in case the store finds one of
/// them changed and they must be prepared after all.
pub struct RegisteredPage {
    pub items: Vec<PageItem>,
    kept: Vec<ParsedRecord>,
}

impl RegisteredPage {
    /// Whether the page holds `Keep` items (and so may be refused as stale).
    pub fn has_kept(&self) -> bool {
        !self.kept.is_empty()
    }
}

/// A record after the first, cheap look: settled without preparing it,
/// or waiting for its input key to be compared with the stored one.
enum Triaged {
    Ready(PageItem),
    Pending {
        id: RecordId,
        input: ContentHash,
        record: ParsedRecord,
    },
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
        let rule_text = match &config.resource_id {
            ResourceIdRule::OaiIdentifier => String::new(),
            ResourceIdRule::XPath(expr) => expr.clone(),
        };
        let namespaces: Vec<String> = config
            .namespaces
            .iter()
            .map(|(prefix, uri)| format!("{prefix}={uri}"))
            .collect();
        let base_url = config.base_url.to_string();
        let schema_version = schema.version.to_string();
        let reading = ContentHash::of_parts([
            READING.as_bytes(),
            config.id.as_str().as_bytes(),
            base_url.as_bytes(),
            schema.schema_id.as_str().as_bytes(),
            schema_version.as_bytes(),
            schema.content_hash.as_str().as_bytes(),
            rule_text.as_bytes(),
            namespaces.join("\n").as_bytes(),
        ]);
        Ok(Registrar {
            inner: Arc::new(Inner {
                registry: registry.clone(),
                source: config.id.clone(),
                base_url,
                schema,
                rule,
                reading,
            }),
        })
    }

    /// The schema version records are validated against and linked to.
    pub fn schema(&self) -> &SchemaVersion {
        &self.inner.schema
    }

    /// Turns a page's records into page items, in page order.
    ///
    /// A record whose input key (its document, OAI identifier and this
    /// registrar's reading) equals the one its live version was written
    /// with is kept as it is, without deriving its fields, resources or
    /// validating it: an unchanged re-harvest costs a hash and one lookup
    /// per page. The others are prepared and validated, spread over the
    /// blocking threads so that a page uses every core.
    pub async fn register_page(
        &self,
        records: Vec<ParsedRecord>,
        harvest_time: DateTime<Utc>,
    ) -> Result<RegisteredPage, RegisterError> {
        if records.is_empty() {
            return Ok(RegisteredPage {
                items: Vec::new(),
                kept: Vec::new(),
            });
        }
        let inner = Arc::clone(&self.inner);
        let triaged = on_cores(records, move |r| inner.triage(r, harvest_time)).await?;

        let mut mentions: HashMap<&RecordId, usize> = HashMap::new();
        for t in &triaged {
            match t {
                Triaged::Pending { id, .. } | Triaged::Ready(PageItem::Delete { id, .. }) => {
                    *mentions.entry(id).or_default() += 1;
                }
                Triaged::Ready(_) => {}
            }
        }
        let ids: Vec<RecordId> = mentions.keys().map(|&id| id.clone()).collect();
        let live = self.inner.registry.store().live_hashes(&ids).await?;
        // A record mentioned twice in the page (a deletion included) is
        // always prepared: its other mention may change it.
        let once: HashSet<RecordId> = mentions
            .into_iter()
            .filter(|(_, n)| *n == 1)
            .map(|(id, _)| id.clone())
            .collect();

        let mut items: Vec<Option<PageItem>> = Vec::with_capacity(triaged.len());
        let mut kept = Vec::new();
        let mut to_prepare = Vec::new();
        for t in triaged {
            match t {
                Triaged::Ready(item) => items.push(Some(item)),
                Triaged::Pending { id, input, record } => {
                    if once.contains(&id)
                        && live.get(&id).and_then(|l| l.input.as_ref()) == Some(&input)
                    {
                        items.push(Some(PageItem::Keep { id, input }));
                        kept.push(record);
                    } else {
                        to_prepare.push((items.len(), id, input, record));
                        items.push(None);
                    }
                }
            }
        }
        Ok(RegisteredPage {
            items: self.fill(items, to_prepare, harvest_time).await?,
            kept,
        })
    }

    /// The page with every `Keep` item prepared after all (the store
    /// found a kept record changed since the page was registered).
    pub async fn expand(
        &self,
        page: RegisteredPage,
        harvest_time: DateTime<Utc>,
    ) -> Result<Vec<PageItem>, RegisterError> {
        let mut kept = page.kept.into_iter();
        let mut items: Vec<Option<PageItem>> = Vec::with_capacity(page.items.len());
        let mut to_prepare = Vec::new();
        for item in page.items {
            match item {
                PageItem::Keep { id, input } => {
                    let record = kept.next().ok_or_else(|| {
                        RegisterError::Validator(RegistryError::Internal(
                            "a kept record went missing".into(),
                        ))
                    })?;
                    to_prepare.push((items.len(), id, input, record));
                    items.push(None);
                }
                other => items.push(Some(other)),
            }
        }
        self.fill(items, to_prepare, harvest_time).await
    }

    /// Prepares and validates records on the blocking threads, each into
    /// the empty slot of `items` at the index it comes with.
    async fn fill(
        &self,
        mut items: Vec<Option<PageItem>>,
        records: Vec<(usize, RecordId, ContentHash, ParsedRecord)>,
        harvest_time: DateTime<Utc>,
    ) -> Result<Vec<PageItem>, RegisterError> {
        if !records.is_empty() {
            for (at, item) in self.prepare_all(records, harvest_time).await? {
                items[at] = Some(item);
            }
        }
        Ok(items.into_iter().flatten().collect())
    }

    /// Prepares and validates records on the blocking threads; each result
    /// comes back with the index it was given.
    async fn prepare_all(
        &self,
        records: Vec<(usize, RecordId, ContentHash, ParsedRecord)>,
        harvest_time: DateTime<Utc>,
    ) -> Result<Vec<(usize, PageItem)>, RegisterError> {
        let validator = self
            .inner
            .registry
            .validator(&self.inner.schema)
            .await
            .map_err(RegisterError::Validator)?;
        let inner = Arc::clone(&self.inner);
        on_cores(records, move |(at, id, input, record)| {
            (
                at,
                inner.prepare(id, input, record, harvest_time, &validator),
            )
        })
        .await
    }
}

/// The bytes a rejection keeps of a record: its standalone metadata
/// document when it has one, else the record as received.
fn evidence(record: ParsedRecord) -> Vec<u8> {
    match record.metadata {
        Ok(Some(document)) => document,
        Ok(None) | Err(_) => record.raw,
    }
}

/// Maps `items` in order on the blocking threads, in as many chunks as
/// there are cores (small batches stay on one thread).
async fn on_cores<T, U, F>(items: Vec<T>, f: F) -> Result<Vec<U>, RegisterError>
where
    T: Send + 'static,
    U: Send + 'static,
    F: Fn(T) -> U + Send + Sync + 'static,
{
    let chunk = items.len().div_ceil(crate::run::cores()).max(32);
    let f = Arc::new(f);
    let mut tasks = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let tail = rest.split_off(chunk.min(rest.len()));
        let batch = std::mem::replace(&mut rest, tail);
        let f = Arc::clone(&f);
        tasks.push(tokio::task::spawn_blocking(move || {
            batch.into_iter().map(|t| f(t)).collect::<Vec<U>>()
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.extend(
            task.await
                .map_err(|e| RegisterError::Validator(RegistryError::Internal(e.to_string())))?,
        );
    }
    Ok(out)
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

    /// The input key of a record's document: equal keys mean equal
    /// versions, since everything else a version is derived from is in
    /// `reading`.
    fn input_key(&self, identifier: &str, document: &[u8]) -> ContentHash {
        ContentHash::of_parts([
            self.reading.as_str().as_bytes(),
            identifier.as_bytes(),
            document,
        ])
    }

    /// The cheap first look at a record: its id, a tombstone or a
    /// rejection for a header or metadata that cannot be stored, else its
    /// input key.
    fn triage(&self, record: ParsedRecord, harvest_time: DateTime<Utc>) -> Triaged {
        let identifier = record.header.identifier.clone();
        let Some(id) = record_id(&self.source, &identifier) else {
            let message = format!("record has no usable OAI identifier ({identifier:?})");
            return Triaged::Ready(PageItem::Reject(self.reject(
                Some(identifier),
                evidence(record),
                message,
            )));
        };
        if record.header.deleted {
            return Triaged::Ready(PageItem::Delete {
                id,
                provenance: Some(self.provenance(&record, harvest_time)),
            });
        }
        let input = match &record.metadata {
            Ok(Some(doc)) => self.input_key(&identifier, doc),
            Ok(None) => {
                return Triaged::Ready(PageItem::Reject(self.reject(
                    Some(identifier),
                    evidence(record),
                    "record is not deleted but has no metadata".to_owned(),
                )));
            }
            Err(reason) => {
                let message = format!("malformed record: {reason}");
                return Triaged::Ready(PageItem::Reject(self.reject(
                    Some(identifier),
                    evidence(record),
                    message,
                )));
            }
        };
        Triaged::Pending { id, input, record }
    }

    /// Derives a record's version (fields, resources, provenance) and
    /// validates its document: a put, or a rejection with the reason.
    fn prepare(
        &self,
        id: RecordId,
        input: ContentHash,
        record: ParsedRecord,
        harvest_time: DateTime<Utc>,
        validator: &Validator,
    ) -> PageItem {
        let identifier = record.header.identifier.clone();
        let provenance = self.provenance(&record, harvest_time);
        let document = evidence(record);
        // A rejection from here on keeps the standalone document that was
        // read (and validated), so positions in the message point into it.
        let fields = match datacite_record(&document, &identifier) {
            Ok(f) => f,
            Err(reason) => {
                return PageItem::Reject(self.reject(
                    Some(identifier),
                    document,
                    format!("malformed metadata: {reason}"),
                ));
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
                    return PageItem::Reject(self.reject(
                        Some(identifier),
                        document,
                        format!("malformed metadata: {reason}"),
                    ));
                }
            },
        };
        if let Err(e) = validator.validate(&document) {
            return PageItem::Reject(self.reject(Some(identifier), document, e.to_string()));
        }
        PageItem::harvested(
            RecordWrite {
                id,
                schema_id: self.schema.schema_id.clone(),
                schema_version: self.schema.version,
                document,
                record: fields,
                resources,
                acl: Vec::new(),
                source_id: Some(self.source.clone()),
                provenance: Some(provenance),
            },
            input,
        )
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
