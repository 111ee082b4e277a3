//! The `Store` trait — Sheaf's one model persisted — and its two
//! implementations, SQLite (embedded default) and PostgreSQL (scale-out).
//!
//! Depends on `sheaf-domain` only. Row types stay private to this crate and
//! convert into domain types. The backend is chosen once, from the URL
//! scheme, by [`connect`].
//!
//! Guarantees both backends give (the suite in `tests/store.rs` holds them):
//! - a put whose content hash (document, schema link, resources, ACL, record
//!   fields) equals the current version's writes nothing: `Unchanged`;
//! - delete writes a tombstone version; resurrect writes a new version equal
//!   to the last live one;
//! - every change gets a strictly increasing change sequence (`seq`) and a
//!   never-decreasing change time, both assigned under one lock, so `seq`
//!   order is commit order and a reader's [`Store::horizon`] never sees a
//!   hole that a later commit could fill;
//! - a write names the version it expects; a stale expectation is
//!   [`StoreError::Conflict`].

mod error;
mod migrate;
mod postgres;
mod sql;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
mod url;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use serde_json::Value;
use sheaf_domain::model::{
    AclEntry, Expect, HarvestRun, LiveHashes, NewRejection, NewSchema, PageItem, Provenance,
    RecordVersion, Rejection, RunCounts, RunStatus, SchemaVersion, Source, WriteOutcome,
};
use sheaf_domain::{RecordId, SchemaId, SourceId};

pub use error::StoreError;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use url::{Backend, DatabaseUrl};

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A shared, type-erased store, as the faces hold it.
pub type DynStore = Arc<dyn Store>;

/// What a schema put did.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaOutcome {
    Created(SchemaVersion),
    Updated(SchemaVersion),
    Unchanged(SchemaVersion),
}

impl SchemaOutcome {
    /// The version current after the put.
    pub fn into_version(self) -> SchemaVersion {
        match self {
            SchemaOutcome::Created(v) | SchemaOutcome::Updated(v) | SchemaOutcome::Unchanged(v) => {
                v
            }
        }
    }
}

/// Filters for listing the current versions of records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordFilter {
    /// Only these record ids (empty: any).
    pub ids: Vec<RecordId>,
    /// Only records describing one of these resources (empty: any).
    pub resource_ids: Vec<String>,
    /// Only records of one of these schemas (empty: any).
    pub schema_ids: Vec<SchemaId>,
    pub source_id: Option<SourceId>,
    /// Only records last changed at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only records last changed at or before this time.
    pub until: Option<DateTime<Utc>>,
    pub include_deleted: bool,
    /// When set, only records on whose ACL one of these subjects has at
    /// least READ, or that have no ACL at all (harvested records are
    /// public) — the REST face's authorisation filter.
    pub readable_by: Option<Vec<String>>,
}

/// The point up to which every change is committed: the snapshot an OAI
/// list is served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    /// The highest committed change sequence.
    pub seq: i64,
    /// The store's change clock at that point; every later change has a
    /// change time at or after it.
    pub at: DateTime<Utc>,
}

/// A page of the change feed: the newest version at or below `horizon_seq`
/// of every record whose such version has `after_seq < seq`, in `seq` order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeQuery {
    /// Keyset cursor: only versions with a greater sequence.
    pub after_seq: i64,
    /// The snapshot: versions above it are invisible.
    pub horizon_seq: i64,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub schema_id: Option<SchemaId>,
    pub source_id: Option<SourceId>,
    /// An upstream setSpec as recorded in the version's provenance.
    pub upstream_set: Option<String>,
    /// Only versions of schemas published under this metadata prefix as an
    /// OAI format (XML with a namespace); other versions never match.
    pub metadata_prefix: Option<String>,
    pub limit: i64,
}

/// Sheaf's persistence. Every face and the harvester go through it; none
/// names a concrete backend.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which database this is.
    fn backend(&self) -> Backend;

    /// Whether the database answers.
    async fn ping(&self) -> Result<()>;

    /// Creates a schema (`Expect::Absent`), adds a version
    /// (`Expect::Version(current)`), or either (`Expect::Any`).
    async fn put_schema(&self, schema: NewSchema, expect: Expect) -> Result<SchemaOutcome>;

    /// One version of a schema; the current one when `version` is `None`.
    async fn get_schema(
        &self,
        id: &SchemaId,
        version: Option<i64>,
    ) -> Result<Option<SchemaVersion>>;

    /// The current version of every schema, by id.
    async fn list_schemas(&self) -> Result<Vec<SchemaVersion>>;

    /// All versions of one schema, current first.
    async fn schema_versions(&self, id: &SchemaId) -> Result<Vec<SchemaVersion>>;

    /// Writes a new record version unless nothing changed.
    async fn put_record(
        &self,
        write: sheaf_domain::model::RecordWrite,
        expect: Expect,
    ) -> Result<WriteOutcome>;

    /// Writes a tombstone; `Unchanged` when already deleted, `NotFound`
    /// when the record never existed.
    async fn delete_record(
        &self,
        id: &RecordId,
        expect: Expect,
        provenance: Option<Provenance>,
    ) -> Result<WriteOutcome>;

    /// Writes a new version equal to the last live one of a deleted record;
    /// `Unchanged` when the record is live.
    async fn resurrect_record(&self, id: &RecordId, expect: Expect) -> Result<WriteOutcome>;

    /// One version of a record (tombstones included); the current one when
    /// `version` is `None`.
    async fn get_record(
        &self,
        id: &RecordId,
        version: Option<i64>,
    ) -> Result<Option<RecordVersion>>;

    /// Every version of a record, newest first.
    async fn record_versions(&self, id: &RecordId) -> Result<Vec<RecordVersion>>;

    /// The hashes of the current, live version of each of `ids` that has
    /// one (primary-key lookups only, whatever the store's size): how a
    /// harvest tells unchanged records before preparing them.
    async fn live_hashes(&self, ids: &[RecordId]) -> Result<HashMap<RecordId, LiveHashes>>;

    /// The current version of each matching record, ordered by last change
    /// (oldest first), with the total number of matches.
    async fn list_records(
        &self,
        filter: &RecordFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<RecordVersion>, i64)>;

    /// The current ACL of a record (empty when it has none or does not exist).
    async fn record_acl(&self, id: &RecordId) -> Result<Vec<AclEntry>>;

    /// Waits for in-flight writes to commit and returns the committed point.
    async fn horizon(&self) -> Result<Horizon>;

    /// One page of the change feed (see [`ChangeQuery`]).
    async fn changes(&self, query: &ChangeQuery) -> Result<Vec<RecordVersion>>;

    /// The same rows as [`Store::changes`], streamed as the database yields
    /// them, so a reader never holds a whole page.
    fn changes_stream(&self, query: ChangeQuery) -> BoxStream<'static, Result<RecordVersion>>;

    /// How many records [`Store::changes`] would return without limit, from
    /// `after_seq` on.
    async fn count_changes(&self, query: &ChangeQuery) -> Result<i64>;

    /// The last change sequence whose change time is before `t` (0 if
    /// none). Change times never decrease in sequence order, so every later
    /// sequence changed at or after `t`: a `from` time becomes a keyset
    /// start, and an incremental list never scans what came before it.
    async fn seq_before(&self, t: DateTime<Utc>) -> Result<i64>;

    /// The change time of the oldest version still visible, if any.
    async fn earliest_change(&self) -> Result<Option<DateTime<Utc>>>;

    /// The upstream set specs recorded for a source, sorted.
    async fn upstream_sets(&self, source: &SourceId) -> Result<Vec<String>>;

    /// The secret stored under `name`, storing `candidate` first when there
    /// is none: the first caller wins, on every process sharing the database.
    async fn shared_secret(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>>;

    /// Registers or updates a source from its config.
    async fn upsert_source(&self, source: &Source) -> Result<()>;

    async fn get_source(&self, id: &SourceId) -> Result<Option<Source>>;

    async fn list_sources(&self) -> Result<Vec<Source>>;

    /// Starts a run; fails with `Conflict` if the source has a run still
    /// marked running (resume that one instead).
    async fn start_run(
        &self,
        source: &SourceId,
        window_from: Option<String>,
        window_until: Option<String>,
    ) -> Result<HarvestRun>;

    /// Commits one harvested page and the run's new checkpoint in one
    /// transaction: after a crash either both are stored or neither.
    async fn commit_page(
        &self,
        run_id: i64,
        items: Vec<PageItem>,
        checkpoint: Option<Value>,
        response_date: Option<String>,
    ) -> Result<RunCounts>;

    /// Marks a run finished.
    async fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        message: Option<String>,
    ) -> Result<HarvestRun>;

    async fn get_run(&self, run_id: i64) -> Result<Option<HarvestRun>>;

    /// The newest runs first, of one source or all.
    async fn list_runs(&self, source: Option<&SourceId>, limit: i64) -> Result<Vec<HarvestRun>>;

    /// The newest succeeded run of a source.
    async fn last_successful_run(&self, source: &SourceId) -> Result<Option<HarvestRun>>;

    /// The source's run still marked running, if any (to resume it).
    async fn unfinished_run(&self, source: &SourceId) -> Result<Option<HarvestRun>>;

    /// Takes or renews the lease on a source for `holder` until `now + ttl`;
    /// false when another holder's lease has not expired.
    async fn acquire_lease(
        &self,
        source: &SourceId,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool>;

    /// Gives a lease up (only if `holder` holds it).
    async fn release_lease(&self, source: &SourceId, holder: &str) -> Result<()>;

    /// Keeps a document that failed validation.
    async fn add_rejection(&self, rejection: NewRejection) -> Result<i64>;

    /// The newest rejections first, of one source or all.
    async fn list_rejections(
        &self,
        source: Option<&SourceId>,
        limit: i64,
    ) -> Result<Vec<Rejection>>;
}

/// Connects to the database the URL names, creating an SQLite file (and its
/// directory) if missing, and migrates it.
pub async fn connect(url: &DatabaseUrl) -> Result<DynStore> {
    Ok(match url.backend() {
        Backend::Sqlite => Arc::new(SqliteStore::connect(url).await?),
        Backend::Postgres => Arc::new(PgStore::connect(url).await?),
    })
}
