//! The schema registry: registers schema versions in the store after proving
//! they compile, and validates documents against them with validators
//! compiled once per (schemaId, version) and reused.
//!
//! Depends on `sheaf-store` (the `Store` trait only), `sheaf-domain`, and
//! this crate's engines (`xsd`, `json`). libxml2 work always runs on tokio's
//! blocking threads; nothing libxml2 owns crosses an `.await`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sheaf_domain::SchemaId;
use sheaf_domain::model::{Expect, NewRejection, NewSchema, SchemaKind, SchemaVersion};
use sheaf_store::{DynStore, SchemaOutcome, StoreError};

use crate::bundled;
use crate::json::{self, JsonCandidate};
use crate::report::{ValidationError, ValidationReport};
use crate::xsd::{self, Resolver, XsdBundle, XsdCandidate};

/// Limits applied to every document before it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Documents (and schema documents) larger than this are refused unread.
    pub max_document_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_document_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What a caller gives to register a schema version.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaRequest {
    pub schema_id: SchemaId,
    pub kind: SchemaKind,
    pub document: Vec<u8>,
    /// The OAI `metadataPrefix`; the schemaId when `None`.
    pub metadata_prefix: Option<String>,
    /// The DataCite-style record, stored as given.
    pub record: Value,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error("unknown schema {0:?}")]
    UnknownSchema(String),
    #[error("schema {schema_id:?} has no version {version}")]
    UnknownVersion { schema_id: String, version: i64 },
    /// The document does not validate (or is not well-formed).
    #[error("validation error:\n{0}")]
    Invalid(ValidationReport),
    /// The schema document does not compile; the compiler's messages.
    #[error("schema does not compile:\n{0}")]
    DoesNotCompile(ValidationReport),
    #[error("document is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { limit: usize, size: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A validation task died (a bug, logged); the document was not judged.
    #[error("internal validation failure: {0}")]
    Internal(String),
}

impl From<ValidationError> for RegistryError {
    fn from(e: ValidationError) -> Self {
        match e {
            ValidationError::Invalid(r) => RegistryError::Invalid(r),
            ValidationError::DoesNotCompile(r) => RegistryError::DoesNotCompile(r),
            ValidationError::TooLarge { limit, size } => RegistryError::TooLarge { limit, size },
            ValidationError::UnknownBundled(name) => RegistryError::UnknownSchema(name),
        }
    }
}

impl RegistryError {
    /// The diagnostics, when the error is about the document or schema text.
    pub fn report(&self) -> Option<&ValidationReport> {
        match self {
            RegistryError::Invalid(r) | RegistryError::DoesNotCompile(r) => Some(r),
            _ => None,
        }
    }
}

/// Identifies one immutable schema version's content in the caches.
type VersionKey = (String, i64, String);

fn version_key(s: &SchemaVersion) -> VersionKey {
    (
        s.schema_id.as_str().to_owned(),
        s.version,
        s.content_hash.as_str().to_owned(),
    )
}

/// Schemas in the store, validators compiled once per version.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    /// Distinguishes registries (and so stores) in the per-thread caches.
    id: u64,
    store: DynStore,
    limits: Limits,
    xsd: Mutex<HashMap<VersionKey, Arc<XsdBundle>>>,
    json: Mutex<HashMap<VersionKey, Arc<jsonschema::Validator>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "validation task failed");
        RegistryError::Internal(e.to_string())
    })
}

/// A compiled schema version, ready to validate documents synchronously.
/// Cheap to clone; call [`Validator::validate`] off the async threads
/// (`spawn_blocking`): libxml2 and large JSON documents take a while.
#[derive(Clone)]
pub struct Validator {
    compiled: Ready,
    max_document_bytes: usize,
}

#[derive(Clone)]
enum Ready {
    /// The bundle and the key of its per-thread compiled schema.
    Xsd {
        bundle: Arc<XsdBundle>,
        key: String,
    },
    Json(Arc<jsonschema::Validator>),
}

impl Validator {
    /// Validates one document (size limit first).
    pub fn validate(&self, document: &[u8]) -> Result<(), RegistryError> {
        if document.len() > self.max_document_bytes {
            return Err(RegistryError::TooLarge {
                limit: self.max_document_bytes,
                size: document.len(),
            });
        }
        match &self.compiled {
            Ready::Xsd { bundle, key } => xsd::validate(key, bundle, document)?,
            Ready::Json(validator) => {
                let instance = json::parse(document).map_err(RegistryError::Invalid)?;
                json::validate(validator, &instance).map_err(RegistryError::Invalid)?;
            }
        }
        Ok(())
    }
}

impl Registry {
    /// A registry over `store`.
    pub fn new(store: DynStore, limits: Limits) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Registry {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                store,
                limits,
                xsd: Mutex::new(HashMap::new()),
                json: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The store schemas are kept in.
    pub fn store(&self) -> &DynStore {
        &self.inner.store
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    fn check_size(&self, document: &[u8]) -> Result<(), RegistryError> {
        let limit = self.inner.limits.max_document_bytes;
        if document.len() > limit {
            return Err(RegistryError::TooLarge {
                limit,
                size: document.len(),
            });
        }
        Ok(())
    }

    /// Compiles the document (rejecting with the compiler's message), reads
    /// the XSD targetNamespace, defaults metadata_prefix to the schemaId,
    /// then stores the version.
    pub async fn register(
        &self,
        req: SchemaRequest,
        expect: Expect,
    ) -> Result<SchemaOutcome, RegistryError> {
        self.check_size(&req.document)?;
        let own_id = req.schema_id.as_str().to_owned();
        let (namespace, compiled) = match req.kind {
            SchemaKind::Xsd => {
                let candidates = self.xsd_candidates(Some(&own_id)).await?;
                let document = req.document.clone();
                let bundle = blocking(move || {
                    xsd::build_bundle(
                        &document,
                        &Resolver {
                            registered: &candidates,
                        },
                    )
                })
                .await?
                .map_err(RegistryError::DoesNotCompile)?;
                (bundle.namespace.clone(), Compiled::Xsd(bundle))
            }
            SchemaKind::Json => {
                let schema = json::parse(&req.document).map_err(RegistryError::DoesNotCompile)?;
                let candidates = self.json_candidates(Some(&own_id)).await?;
                let validator = blocking(move || json::compile(&schema, &candidates))
                    .await?
                    .map_err(RegistryError::DoesNotCompile)?;
                (None, Compiled::Json(Arc::new(validator)))
            }
        };
        let metadata_prefix = req.metadata_prefix.unwrap_or_else(|| own_id.clone());
        let outcome = self
            .inner
            .store
            .put_schema(
                NewSchema {
                    schema_id: req.schema_id,
                    kind: req.kind,
                    namespace,
                    metadata_prefix,
                    document: req.document,
                    record: req.record,
                },
                expect,
            )
            .await?;
        let version = match &outcome {
            SchemaOutcome::Created(v) | SchemaOutcome::Updated(v) | SchemaOutcome::Unchanged(v) => {
                v
            }
        };
        let key = version_key(version);
        match compiled {
            Compiled::Xsd(b) => {
                lock(&self.inner.xsd).entry(key).or_insert(b);
            }
            Compiled::Json(v) => {
                lock(&self.inner.json).entry(key).or_insert(v);
            }
        }
        Ok(outcome)
    }

    /// Validates against `schema_id` at `version` (`None`: the current one).
    /// Returns the schema version validated against.
    pub async fn validate(
        &self,
        schema_id: &SchemaId,
        version: Option<i64>,
        document: &[u8],
    ) -> Result<SchemaVersion, RegistryError> {
        self.check_size(document)?;
        let schema = self.schema(schema_id, version).await?;
        self.validate_with(&schema, document).await?;
        Ok(schema)
    }

    /// Loads one schema version, with the registry's "unknown" errors.
    pub async fn schema(
        &self,
        schema_id: &SchemaId,
        version: Option<i64>,
    ) -> Result<SchemaVersion, RegistryError> {
        if let Some(s) = self.inner.store.get_schema(schema_id, version).await? {
            return Ok(s);
        }
        match version {
            Some(v)
                if self
                    .inner
                    .store
                    .get_schema(schema_id, None)
                    .await?
                    .is_some() =>
            {
                Err(RegistryError::UnknownVersion {
                    schema_id: schema_id.as_str().to_owned(),
                    version: v,
                })
            }
            _ => Err(RegistryError::UnknownSchema(schema_id.as_str().to_owned())),
        }
    }

    /// Validates against an already-loaded schema version (no store access
    /// once the validator is compiled).
    pub async fn validate_with(
        &self,
        schema: &SchemaVersion,
        document: &[u8],
    ) -> Result<(), RegistryError> {
        self.check_size(document)?;
        let validator = self.validator(schema).await?;
        let document = document.to_vec();
        blocking(move || validator.validate(&document)).await?
    }

    /// Validates many documents against one schema version in one blocking
    /// task (cheaper per document than [`Registry::validate_with`]); one
    /// verdict per document, in order.
    pub async fn validate_many(
        &self,
        schema: &SchemaVersion,
        documents: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<(), RegistryError>>, RegistryError> {
        let validator = self.validator(schema).await?;
        blocking(move || documents.iter().map(|d| validator.validate(d)).collect()).await
    }

    /// The compiled validator of a schema version, for callers that run
    /// their own blocking work (the harvester validates while it prepares
    /// records, on the same thread).
    pub async fn validator(&self, schema: &SchemaVersion) -> Result<Validator, RegistryError> {
        let compiled = match schema.kind {
            SchemaKind::Xsd => Ready::Xsd {
                bundle: self.xsd_bundle(schema).await?,
                key: self.thread_key(schema),
            },
            SchemaKind::Json => Ready::Json(self.json_validator(schema).await?),
        };
        Ok(Validator {
            compiled,
            max_document_bytes: self.inner.limits.max_document_bytes,
        })
    }

    /// Registers oai_dc (prefix `oai_dc`, its namespace) if absent; idempotent.
    pub async fn ensure_builtins(&self) -> Result<(), RegistryError> {
        let id = builtin_oai_dc_id();
        if self.inner.store.get_schema(&id, None).await?.is_some() {
            return Ok(());
        }
        let document = bundled::by_file_name("oai_dc.xsd")
            .map(|b| b.document.to_vec())
            .ok_or_else(|| RegistryError::UnknownSchema("oai_dc.xsd".to_owned()))?;
        let req = SchemaRequest {
            schema_id: id,
            kind: SchemaKind::Xsd,
            document,
            metadata_prefix: Some("oai_dc".to_owned()),
            record: serde_json::json!({
                "titles": [{ "value": "OAI-PMH Dublin Core (oai_dc)" }],
            }),
        };
        match self.register(req, Expect::Absent).await {
            // Another process registered it in the meantime: that is fine.
            Ok(_) | Err(RegistryError::Store(StoreError::Conflict(_))) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The per-thread cache key of a schema version's compiled XSD.
    fn thread_key(&self, s: &SchemaVersion) -> String {
        format!(
            "registry-{}/{}/{}/{}",
            self.inner.id,
            s.schema_id.as_str(),
            s.version,
            s.content_hash.as_str()
        )
    }

    async fn xsd_bundle(&self, schema: &SchemaVersion) -> Result<Arc<XsdBundle>, RegistryError> {
        let key = version_key(schema);
        if let Some(b) = lock(&self.inner.xsd).get(&key) {
            return Ok(Arc::clone(b));
        }
        let candidates = self.xsd_candidates(Some(schema.schema_id.as_str())).await?;
        let document = schema.document.clone();
        let bundle = blocking(move || {
            xsd::build_bundle(
                &document,
                &Resolver {
                    registered: &candidates,
                },
            )
        })
        .await?
        .map_err(RegistryError::DoesNotCompile)?;
        Ok(Arc::clone(
            lock(&self.inner.xsd).entry(key).or_insert(bundle),
        ))
    }

    async fn json_validator(
        &self,
        schema: &SchemaVersion,
    ) -> Result<Arc<jsonschema::Validator>, RegistryError> {
        let key = version_key(schema);
        if let Some(v) = lock(&self.inner.json).get(&key) {
            return Ok(Arc::clone(v));
        }
        let parsed = json::parse(&schema.document).map_err(RegistryError::DoesNotCompile)?;
        let candidates = self
            .json_candidates(Some(schema.schema_id.as_str()))
            .await?;
        let validator = blocking(move || json::compile(&parsed, &candidates))
            .await?
            .map_err(RegistryError::DoesNotCompile)?;
        Ok(Arc::clone(
            lock(&self.inner.json)
                .entry(key)
                .or_insert_with(|| Arc::new(validator)),
        ))
    }

    /// Current registered XSDs, except `exclude`, for import resolution.
    async fn xsd_candidates(
        &self,
        exclude: Option<&str>,
    ) -> Result<Vec<XsdCandidate>, RegistryError> {
        Ok(self
            .inner
            .store
            .list_schemas()
            .await?
            .into_iter()
            .filter(|s| s.kind == SchemaKind::Xsd && Some(s.schema_id.as_str()) != exclude)
            .map(|s| XsdCandidate {
                schema_id: s.schema_id.as_str().to_owned(),
                version: s.version,
                namespace: s.namespace,
                document: s.document.into(),
            })
            .collect())
    }

    /// Current registered JSON schemas, except `exclude`, for `$ref`.
    async fn json_candidates(
        &self,
        exclude: Option<&str>,
    ) -> Result<Vec<JsonCandidate>, RegistryError> {
        Ok(self
            .inner
            .store
            .list_schemas()
            .await?
            .into_iter()
            .filter(|s| s.kind == SchemaKind::Json && Some(s.schema_id.as_str()) != exclude)
            .filter_map(|s| {
                let document = serde_json::from_slice(&s.document).ok()?;
                Some(JsonCandidate {
                    schema_id: s.schema_id.as_str().to_owned(),
                    document,
                })
            })
            .collect())
    }
}

enum Compiled {
    Xsd(Arc<XsdBundle>),
    Json(Arc<jsonschema::Validator>),
}

fn builtin_oai_dc_id() -> SchemaId {
    // A constant that satisfies the id rules; checked by a test.
    SchemaId::parse("oai_dc").unwrap_or_else(|_| unreachable!("oai_dc is a valid schema id"))
}

/// A rejection record for a document that failed validation: the raw bytes,
/// the schema version (when known) and the error's full text. The caller
/// fills in `source_id`, `run_id` and `identifier` as it knows them.
pub fn rejection(
    origin: &str,
    schema: Option<&SchemaVersion>,
    document: Vec<u8>,
    error: &RegistryError,
) -> NewRejection {
    NewRejection {
        origin: origin.to_owned(),
        source_id: None,
        run_id: None,
        identifier: None,
        schema_id: schema.map(|s| s.schema_id.clone()),
        schema_version: schema.map(|s| s.version),
        message: error.to_string(),
        document,
    }
}
