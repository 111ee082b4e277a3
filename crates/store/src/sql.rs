//! The one SQL implementation of [`crate::Store`], instantiated for SQLite
//! and for PostgreSQL by [`sql_store!`].
//!
//! Both databases run the same statements: `$n` placeholders, `ON CONFLICT`,
//! `RETURNING`; times are microseconds since the epoch in `BIGINT`, JSON is
//! text. What differs (column types, identity columns) lives in the
//! per-backend migrations; how a write transaction begins and how rows
//! aggregate into one JSON array are macro arguments. A macro rather than
//! a function generic over `sqlx::Database` because the generic form needs
//! a dozen trait bounds repeated on every item; the macro keeps one body
//! with concrete types.
//!
//! Concurrency: every write transaction first locks the single row of
//! `change_counter` (SQLite: `BEGIN IMMEDIATE` takes the database write
//! lock; PostgreSQL: the row lock of the first `UPDATE`). Writers are thus
//! serialised, so change sequences are handed out in commit order and a
//! reader that takes the same lock ([`crate::Store::horizon`]) sees every
//! change up to the sequence it reads — none can commit below it later.

use chrono::{DateTime, Utc};
use sheaf_domain::ContentHash;
use sheaf_domain::RecordId;
use sheaf_domain::model::{
    AclEntry, Expect, LiveHashes, Provenance, RecordVersion, RecordWrite, Rendered, RunCounts,
    WriteOutcome,
};

use crate::StoreError;

/// Microseconds since the epoch, the stored form of every time.
pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Corrupt(format!("time {us} out of range")))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serialising our own plain data types cannot fail.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    s: &str,
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn provenance_from(s: Option<String>) -> Result<Option<Provenance>, StoreError> {
    s.map(|s| from_json(&s, "provenance")).transpose()
}

pub(crate) fn acl_from(s: &str) -> Result<Vec<AclEntry>, StoreError> {
    from_json(s, "acl")
}

pub(crate) fn tombstone_hash(live: &ContentHash) -> ContentHash {
    ContentHash::of_parts([b"tombstone".as_slice(), live.as_str().as_bytes()])
}

/// Adds one write's effect to page counts.
pub(crate) fn count(c: &mut RunCounts, outcome: &sheaf_domain::model::WriteOutcome) {
    use sheaf_domain::model::WriteOutcome::*;
    match outcome {
        Created(_) => c.created += 1,
        Updated(_) => c.updated += 1,
        Unchanged(_) => c.unchanged += 1,
        Deleted(_) => c.deleted += 1,
    }
}

/// The change clock read under the write lock; advanced once per version.
pub(crate) struct Clock {
    pub seq: i64,
    pub last: i64,
    pub dirty: bool,
}

impl Clock {
    /// The next change: a fresh sequence and a time never before the last.
    pub fn tick(&mut self) -> (i64, i64) {
        self.seq += 1;
        self.last = self.last.max(to_micros(Utc::now()));
        self.dirty = true;
        (self.seq, self.last)
    }
}

/// Most rows one multi-row statement writes or looks up: well under the
/// bind limits of both backends at 15 columns a row.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

pub(crate) fn check_expect(
    id: &RecordId,
    current: Option<&RecordVersion>,
    expect: Expect,
) -> Result<(), StoreError> {
    match (expect, current) {
        (Expect::Any, _) => Ok(()),
        (Expect::Absent, None) => Ok(()),
        (Expect::Absent, Some(_)) => {
            Err(StoreError::Conflict(format!("record {id} already exists")))
        }
        (Expect::Version(_), None) => Err(StoreError::NotFound(format!("record {id}"))),
        (Expect::Version(v), Some(c)) if c.version == v => Ok(()),
        (Expect::Version(v), Some(c)) => Err(StoreError::Conflict(format!(
            "record {id} is at version {}, not {v}",
            c.version
        ))),
    }
}

/// A record's current version as far as deciding a page needs it.
pub(crate) struct Head {
    pub deleted: bool,
    pub hashes: LiveHashes,
}

/// The text columns of a version no writer rendered (a tombstone, or a
/// single-record write).
pub(crate) fn render_version(v: &RecordVersion) -> Rendered {
    Rendered {
        hash: v.content_hash.clone(),
        record: v.record.to_string(),
        resources: to_json(&v.resources),
        acl: to_json(&v.acl),
        provenance: v.provenance.as_ref().map(to_json),
    }
}

/// What a put makes of a record's current version: a new version (its
/// sequence and time taken from `clock`), or `unchanged` when its content
/// hash (`hash`, the write's [`RecordWrite::content_hash`]) matches a live
/// current version.
pub(crate) fn next_put(
    current: Option<&RecordVersion>,
    mut w: RecordWrite,
    hash: ContentHash,
    expect: Expect,
    clock: &mut Clock,
) -> Result<WriteOutcome, StoreError> {
    check_expect(&w.id, current, expect)?;
    if let Some(c) = current.filter(|c| !c.deleted && c.content_hash == hash) {
        return Ok(WriteOutcome::Unchanged(c.clone()));
    }
    w.normalise();
    let (seq, now) = clock.tick();
    let now = from_micros(now)?;
    let v = RecordVersion {
        id: w.id,
        version: current.map_or(1, |c| c.version + 1),
        deleted: false,
        schema_id: w.schema_id,
        schema_version: w.schema_version,
        document: w.document,
        record: w.record,
        resources: w.resources,
        acl: w.acl,
        source_id: w.source_id,
        provenance: w.provenance,
        content_hash: hash,
        seq,
        changed_at: now,
        created_at: current.map_or(now, |c| c.created_at),
    };
    Ok(match current {
        None => WriteOutcome::Created(v),
        Some(_) => WriteOutcome::Updated(v),
    })
}

/// What a delete makes of a record's current version: a tombstone, or
/// `unchanged` when it is one already.
pub(crate) fn next_delete(
    current: Option<&RecordVersion>,
    id: &RecordId,
    expect: Expect,
    provenance: Option<Provenance>,
    clock: &mut Clock,
) -> Result<WriteOutcome, StoreError> {
    check_expect(id, current, expect)?;
    let Some(c) = current else {
        return Err(StoreError::NotFound(format!("record {id}")));
    };
    if c.deleted {
        return Ok(WriteOutcome::Unchanged(c.clone()));
    }
    let (seq, now) = clock.tick();
    Ok(WriteOutcome::Deleted(RecordVersion {
        version: c.version + 1,
        deleted: true,
        document: Vec::new(),
        content_hash: tombstone_hash(&c.content_hash),
        provenance: provenance.or(c.provenance.clone()),
        seq,
        changed_at: from_micros(now)?,
        ..c.clone()
    }))
}

/// Columns of a record version joined with its record, in the order
/// `version_from_row` reads them.
pub(crate) const VERSION_COLS: &str = "v.record_id, v.version, v.deleted, v.schema_id, \
    v.schema_version, v.document, v.record, v.resources, v.acl, v.source_id, v.provenance, \
    v.content_hash, v.seq, v.changed_at, r.created_at";

pub(crate) const SCHEMA_COLS: &str = "sv.schema_id, sv.version, sv.kind, sv.namespace, \
    sv.metadata_prefix, sv.document, sv.record, sv.content_hash, s.created_at, sv.created_at AS updated_at";

pub(crate) const RUN_COLS: &str = "run_id, source_id, status, started_at, finished_at, \
    window_from, window_until, checkpoint, response_date, seen, created, updated, unchanged, \
    deleted, rejected, message";

/// Generates a `Store` implementation over one sqlx database.
macro_rules! sql_store {
    ($store:ident, $db:ty, $row:ty, $begin_write:literal, $json_rows:literal) => {
        use std::collections::HashMap;

        use async_trait::async_trait;
        use chrono::{DateTime, Utc};
        use serde_json::Value;
        use sheaf_domain::model::{
            AclEntry, Expect, HarvestRun, LiveHashes, NewRejection, NewSchema, PageItem, Provenance,
            RecordVersion, RecordWrite, Rejection, Rendered, RunCounts, RunStatus, SchemaKind,
            SchemaVersion, Source, WriteOutcome,
        };
        use sheaf_domain::{ContentHash, RecordId, SchemaId, SourceId};
        use sqlx::{QueryBuilder, Row};

        use crate::sql::*;
        use crate::{
            Backend, ChangeQuery, Horizon, RecordFilter, Result, SchemaOutcome, Store, StoreError,
        };

        type Tx = sqlx::Transaction<'static, $db>;
        type Conn = <$db as sqlx::Database>::Connection;

        impl $store {
            async fn begin_write(&self) -> Result<(Tx, Clock)> {
                let mut tx = self.pool.begin_with($begin_write).await?;
                let row = sqlx::query(
                    "UPDATE change_counter SET seq = seq WHERE id = 1 RETURNING seq, last_time",
                )
                .fetch_one(&mut *tx)
                .await?;
                let clock = Clock {
                    seq: row.try_get("seq")?,
                    last: row.try_get("last_time")?,
                    dirty: false,
                };
                Ok((tx, clock))
            }

            async fn commit_write(&self, mut tx: Tx, clock: Clock) -> Result<()> {
                if clock.dirty {
                    sqlx::query("UPDATE change_counter SET seq = $1, last_time = $2 WHERE id = 1")
                        .bind(clock.seq)
                        .bind(clock.last)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                self.committed();
                Ok(())
            }
        }

        /// Runs `statements` in order on `conn`, each built when the one
        /// before it has run. The first failure ends the run; the caller's
        /// transaction then rolls back.
        async fn run_all(
            conn: &mut Conn,
            statements: impl IntoIterator<Item = QueryBuilder<$db>>,
        ) -> Result<()> {
            for mut qb in statements {
                qb.build().execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// Statements over a multi-row `VALUES` list of `rows`,
        /// [`ROWS_PER_STATEMENT`] rows a statement, each built when taken:
        /// `head` is the statement up to its `VALUES` (an `INSERT`'s table
        /// and columns, or a `FROM (` to read the rows from), `bind` binds
        /// one row, `tail` follows the values (an `ON CONFLICT` clause, the
        /// rest of the `FROM`, or nothing). Rows given by value are bound by
        /// value: their strings and bytes move into the statement.
        fn with_values<T>(
            head: &'static str,
            rows: impl IntoIterator<Item = T>,
            mut bind: impl FnMut(sqlx::query_builder::Separated<'_, $db, &'static str>, T),
            tail: &'static str,
        ) -> impl Iterator<Item = QueryBuilder<$db>> {
            let mut rows = rows.into_iter().peekable();
            std::iter::from_fn(move || {
                rows.peek()?;
                let mut qb = QueryBuilder::<$db>::new(head);
                qb.push_values(rows.by_ref().take(ROWS_PER_STATEMENT), &mut bind);
                qb.push(tail);
                Some(qb)
            })
        }

        /// `DELETE`s of the rows of `table` (keyed by `record_id`) that
        /// belong to `ids`, [`ROWS_PER_STATEMENT`] ids a statement.
        fn deletes<'a>(
            table: &'static str,
            ids: &'a [&'a str],
        ) -> impl Iterator<Item = QueryBuilder<$db>> + 'a {
            ids.chunks(ROWS_PER_STATEMENT).map(move |chunk| {
                let mut qb =
                    QueryBuilder::<$db>::new(format!("DELETE FROM {table} WHERE record_id IN ("));
                push_in_list(&mut qb, chunk.iter().copied());
                qb
            })
        }

        /// Binds `values` as the items of an `IN (` list and closes it.
        fn push_in_list<'a>(
            qb: &mut QueryBuilder<$db>,
            values: impl IntoIterator<Item = &'a str>,
        ) {
            let mut sep = qb.separated(", ");
            for v in values {
                sep.push_bind(v);
            }
            sep.push_unseparated(")");
        }

        fn version_from_row(row: &$row) -> Result<RecordVersion> {
            let id: String = row.try_get("record_id")?;
            let schema_id: String = row.try_get("schema_id")?;
            let source_id: Option<String> = row.try_get("source_id")?;
            let record: String = row.try_get("record")?;
            let resources: String = row.try_get("resources")?;
            let acl: String = row.try_get("acl")?;
            Ok(RecordVersion {
                id: RecordId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                version: row.try_get("version")?,
                deleted: row.try_get("deleted")?,
                schema_id: SchemaId::parse(schema_id)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                schema_version: row.try_get("schema_version")?,
                document: row.try_get("document")?,
                record: from_json(&record, "record")?,
                resources: from_json(&resources, "resources")?,
                acl: acl_from(&acl)?,
                source_id: source_id
                    .map(SourceId::parse)
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                provenance: provenance_from(row.try_get("provenance")?)?,
                content_hash: ContentHash::from_stored(row.try_get("content_hash")?),
                seq: row.try_get("seq")?,
                changed_at: from_micros(row.try_get("changed_at")?)?,
                created_at: from_micros(row.try_get("created_at")?)?,
            })
        }

        fn schema_from_row(row: &$row) -> Result<SchemaVersion> {
            let id: String = row.try_get("schema_id")?;
            let kind: String = row.try_get("kind")?;
            let record: String = row.try_get("record")?;
            Ok(SchemaVersion {
                schema_id: SchemaId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                version: row.try_get("version")?,
                kind: SchemaKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("schema kind {kind}")))?,
                namespace: row.try_get("namespace")?,
                metadata_prefix: row.try_get("metadata_prefix")?,
                document: row.try_get("document")?,
                record: from_json(&record, "schema record")?,
                content_hash: ContentHash::from_stored(row.try_get("content_hash")?),
                created_at: from_micros(row.try_get("created_at")?)?,
                updated_at: from_micros(row.try_get("updated_at")?)?,
            })
        }

        fn run_from_row(row: &$row) -> Result<HarvestRun> {
            let source: String = row.try_get("source_id")?;
            let status: String = row.try_get("status")?;
            let checkpoint: Option<String> = row.try_get("checkpoint")?;
            let finished: Option<i64> = row.try_get("finished_at")?;
            Ok(HarvestRun {
                id: row.try_get("run_id")?,
                source_id: SourceId::parse(source)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                status: RunStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("run status {status}")))?,
                started_at: from_micros(row.try_get("started_at")?)?,
                finished_at: finished.map(from_micros).transpose()?,
                window_from: row.try_get("window_from")?,
                window_until: row.try_get("window_until")?,
                checkpoint: checkpoint.map(|c| from_json(&c, "checkpoint")).transpose()?,
                response_date: row.try_get("response_date")?,
                counts: RunCounts {
                    seen: row.try_get("seen")?,
                    created: row.try_get("created")?,
                    updated: row.try_get("updated")?,
                    unchanged: row.try_get("unchanged")?,
                    deleted: row.try_get("deleted")?,
                    rejected: row.try_get("rejected")?,
                },
                message: row.try_get("message")?,
            })
        }

        fn source_from_row(row: &$row) -> Result<Source> {
            let id: String = row.try_get("source_id")?;
            let config: String = row.try_get("config")?;
            Ok(Source {
                id: SourceId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                base_url: row.try_get("base_url")?,
                enabled: row.try_get("enabled")?,
                config: from_json(&config, "source config")?,
                updated_at: from_micros(row.try_get("updated_at")?)?,
            })
        }

        async fn current_version(conn: &mut Conn, id: &RecordId) -> Result<Option<RecordVersion>> {
            let sql = format!(
                "SELECT {VERSION_COLS} FROM records r JOIN record_versions v \
                 ON v.record_id = r.record_id AND v.version = r.version WHERE r.record_id = $1"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id.as_str())
                .fetch_optional(&mut *conn)
                .await?;
            row.as_ref().map(version_from_row).transpose()
        }

        /// The current version of each of `ids` that exists, a statement per
        /// [`ROWS_PER_STATEMENT`] ids.
        async fn current_versions(
            conn: &mut Conn,
            ids: &[&RecordId],
        ) -> Result<HashMap<RecordId, RecordVersion>> {
            let mut out = HashMap::with_capacity(ids.len());
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                let mut qb = QueryBuilder::<$db>::new(format!(
                    "SELECT {VERSION_COLS} FROM records r JOIN record_versions v \
                     ON v.record_id = r.record_id AND v.version = r.version WHERE r.record_id IN ("
                ));
                push_in_list(&mut qb, chunk.iter().map(|id| id.as_str()));
                for row in qb.build().fetch_all(&mut *conn).await? {
                    let v = version_from_row(&row)?;
                    out.insert(v.id.clone(), v);
                }
            }
            Ok(out)
        }

        /// The hashes of the current version of each of `ids` that exists
        /// and whether it is a tombstone, a statement per
        /// [`ROWS_PER_STATEMENT`] ids. Each statement returns its heads as
        /// one JSON array in one row: a page's 500 heads as 500 rows cost
        /// SQLite's driver a hand-over between threads each.
        async fn heads_on(conn: &mut Conn, ids: &[&RecordId]) -> Result<HashMap<RecordId, Head>> {
            let mut out = HashMap::with_capacity(ids.len());
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                let mut qb = QueryBuilder::<$db>::new(concat!(
                    "SELECT CAST(",
                    $json_rows,
                    "(record_id, CASE WHEN deleted THEN 1 ELSE 0 END, content_hash, \
                     input_hash)) AS TEXT) AS heads FROM records WHERE record_id IN ("
                ));
                push_in_list(&mut qb, chunk.iter().map(|id| id.as_str()));
                let row = qb.build().fetch_one(&mut *conn).await?;
                // No heads at all: `[]` from SQLite, NULL from PostgreSQL.
                let Some(heads) = row.try_get::<Option<String>, _>("heads")? else {
                    continue;
                };
                let heads: Vec<(String, u8, String, Option<String>)> =
                    serde_json::from_str(&heads)
                        .map_err(|e| StoreError::Corrupt(format!("record heads: {e}")))?;
                for (id, deleted, content, input) in heads {
                    let id = RecordId::parse(&id)
                        .map_err(|e| StoreError::Corrupt(format!("record id {id:?}: {e}")))?;
                    out.insert(
                        id,
                        Head {
                            deleted: deleted != 0,
                            hashes: LiveHashes {
                                content: ContentHash::from_stored(content),
                                input: input.map(ContentHash::from_stored),
                            },
                        },
                    );
                }
            }
            Ok(out)
        }

        /// Records new input keys on live versions in place: a harvest
        /// whose derivation changed (resource rule, schema, Sheaf's own
        /// reading of records) but produced the same content writes no new
        /// version, and the next harvest can skip those records again.
        async fn rekey_live(conn: &mut Conn, rekeyed: &[(RecordId, ContentHash)]) -> Result<()> {
            // One row a record, the last key it was given winning.
            let mut last: HashMap<&RecordId, &ContentHash> = HashMap::new();
            for (id, input) in rekeyed {
                last.insert(id, input);
            }
            let rekeyed: Vec<(&RecordId, &ContentHash)> = last.into_iter().collect();
            let bind = |mut b: sqlx::query_builder::Separated<'_, $db, &'static str>,
                        (id, input): &(&RecordId, &ContentHash)| {
                b.push_bind(id.as_str()).push_bind(input.as_str());
            };
            let versions = with_values(
                "UPDATE record_versions SET input_hash = v.column2 FROM (",
                &rekeyed,
                bind,
                ") AS v WHERE record_versions.record_id = v.column1 AND record_versions.version = \
                 (SELECT r.version FROM records r WHERE r.record_id = v.column1)",
            );
            let heads = with_values(
                "UPDATE records SET input_hash = v.column2 FROM (",
                &rekeyed,
                bind,
                ") AS v WHERE records.record_id = v.column1",
            );
            run_all(conn, versions.chain(heads)).await
        }

        /// Inserts new versions (in change order) and points each record, its
        /// resources, ACL and sets at its last one, in a few multi-row
        /// statements whatever the number of versions.
        /// `before` holds the current versions the batch replaces: resource
        /// links and ACL rows are rewritten only for records whose links
        /// changed, which keeps the common harvest write to a few
        /// statements a batch. `rendered` holds, by sequence, the text a
        /// page's puts rendered for their versions, `inputs` their
        /// harvester's input keys.
        async fn write_versions(
            conn: &mut Conn,
            mut new: Vec<RecordVersion>,
            mut rendered: HashMap<i64, Rendered>,
            inputs: &HashMap<i64, ContentHash>,
            before: &HashMap<RecordId, RecordVersion>,
        ) -> Result<()> {
            // The documents move into their statements; the rest is bound
            // from `new`, which the heads' rows borrow too.
            let documents: Vec<Vec<u8>> =
                new.iter_mut().map(|v| std::mem::take(&mut v.document)).collect();
            let heads = HeadRows::of(&new, inputs, before);
            let versions = with_values(
                "INSERT INTO record_versions (record_id, version, seq, deleted, schema_id, \
                 schema_version, document, record, resources, acl, source_id, provenance, \
                 content_hash, input_hash, changed_at) ",
                new.iter().zip(documents),
                |mut b, (v, document)| {
                    let r = rendered.remove(&v.seq).unwrap_or_else(|| render_version(v));
                    b.push_bind(v.id.as_str())
                        .push_bind(v.version)
                        .push_bind(v.seq)
                        .push_bind(v.deleted)
                        .push_bind(v.schema_id.as_str())
                        .push_bind(v.schema_version)
                        .push_bind(document)
                        .push_bind(r.record)
                        .push_bind(r.resources)
                        .push_bind(r.acl)
                        .push_bind(v.source_id.as_ref().map(|s| s.as_str()))
                        .push_bind(r.provenance)
                        .push_bind(v.content_hash.as_str())
                        .push_bind(inputs.get(&v.seq).map(ContentHash::as_str))
                        .push_bind(to_micros(v.changed_at));
                },
                "",
            );
            run_all(conn, heads.statements().chain(versions)).await
        }

        /// The rows that point each record of a batch at its last version
        /// there: its head row, set memberships, resource links and ACL
        /// rows, and which records' old links and ACL rows go.
        struct HeadRows<'a> {
            /// Each record's last version in the batch (a page may hold one
            /// record twice), in change order, with its input key.
            finals: Vec<(&'a RecordVersion, Option<&'a ContentHash>)>,
            sets: Vec<(i64, &'a str)>,
            /// Records whose links change and had some before.
            unlinked: Vec<&'a str>,
            /// Resources of the changed links, sorted and distinct: one row
            /// each, taken in one order by every writer.
            identifiers: Vec<&'a str>,
            /// (resource identifier, record id), sorted and distinct.
            links: Vec<(&'a str, &'a str)>,
            /// Records whose ACL changes and had a version before.
            unacled: Vec<&'a str>,
            /// ((record id, sid), permission): one row per record and sid.
            acl: Vec<((&'a str, &'a str), &'a str)>,
        }

        impl<'a> HeadRows<'a> {
            fn of(
                new: &'a [RecordVersion],
                inputs: &'a HashMap<i64, ContentHash>,
                before: &HashMap<RecordId, RecordVersion>,
            ) -> Self {
                let mut last: HashMap<&RecordId, &RecordVersion> =
                    HashMap::with_capacity(new.len());
                for v in new {
                    last.insert(&v.id, v);
                }
                let mut finals: Vec<(&RecordVersion, Option<&ContentHash>)> = last
                    .into_values()
                    .map(|v| (v, inputs.get(&v.seq)))
                    .collect();
                finals.sort_by_key(|(v, _)| v.seq);
                let sets = new
                    .iter()
                    .flat_map(|v| {
                        v.provenance
                            .iter()
                            .flat_map(|p| p.set_specs.iter())
                            .map(move |s| (v.seq, s.as_str()))
                    })
                    .collect();
                let relinked: Vec<&RecordVersion> = finals
                    .iter()
                    .map(|(v, _)| *v)
                    .filter(|v| before.get(&v.id).is_none_or(|b| b.resources != v.resources))
                    .collect();
                let reacled: Vec<&RecordVersion> = finals
                    .iter()
                    .map(|(v, _)| *v)
                    .filter(|v| before.get(&v.id).is_none_or(|b| b.acl != v.acl))
                    .collect();
                let mut identifiers: Vec<&str> = relinked
                    .iter()
                    .flat_map(|v| v.resources.iter().map(String::as_str))
                    .collect();
                identifiers.sort_unstable();
                identifiers.dedup();
                let mut links: Vec<(&str, &str)> = relinked
                    .iter()
                    .flat_map(|v| v.resources.iter().map(|r| (r.as_str(), v.id.as_str())))
                    .collect();
                links.sort_unstable();
                links.dedup();
                // The entry listed last wins, as the ACL is sorted: the
                // strongest permission a sid was given.
                let mut acl: HashMap<(&str, &str), &str> = HashMap::new();
                for v in &reacled {
                    for e in &v.acl {
                        acl.insert((v.id.as_str(), e.sid.as_str()), e.permission.as_str());
                    }
                }
                let mut acl: Vec<((&str, &str), &str)> = acl.into_iter().collect();
                acl.sort_unstable();
                let existed = |v: &&&RecordVersion| before.contains_key(&v.id);
                Self {
                    unlinked: relinked.iter().filter(existed).map(|v| v.id.as_str()).collect(),
                    unacled: reacled.iter().filter(existed).map(|v| v.id.as_str()).collect(),
                    finals,
                    sets,
                    identifiers,
                    links,
                    acl,
                }
            }

            /// The statements writing these rows, in an order the foreign
            /// keys allow: head rows before the links and ACL rows naming
            /// them, resources before their links.
            fn statements(&self) -> impl Iterator<Item = QueryBuilder<$db>> + '_ {
                let heads = with_values(
                    "INSERT INTO records (record_id, version, seq, deleted, schema_id, source_id, \
                     changed_at, created_at, content_hash, input_hash) ",
                    &self.finals,
                    |mut b, (v, input)| {
                        b.push_bind(v.id.as_str())
                            .push_bind(v.version)
                            .push_bind(v.seq)
                            .push_bind(v.deleted)
                            .push_bind(v.schema_id.as_str())
                            .push_bind(v.source_id.as_ref().map(|s| s.as_str()))
                            .push_bind(to_micros(v.changed_at))
                            .push_bind(to_micros(v.created_at))
                            .push_bind(v.content_hash.as_str())
                            .push_bind(input.map(ContentHash::as_str));
                    },
                    " ON CONFLICT (record_id) DO UPDATE SET version = excluded.version, \
                     seq = excluded.seq, deleted = excluded.deleted, schema_id = excluded.schema_id, \
                     source_id = excluded.source_id, changed_at = excluded.changed_at, \
                     content_hash = excluded.content_hash, input_hash = excluded.input_hash",
                );
                let sets = with_values(
                    "INSERT INTO version_sets (seq, set_spec) ",
                    &self.sets,
                    |mut b, (seq, set)| {
                        b.push_bind(*seq).push_bind(*set);
                    },
                    " ON CONFLICT DO NOTHING",
                );
                let resources = with_values(
                    "INSERT INTO resources (identifier) ",
                    &self.identifiers,
                    |mut b, i| {
                        b.push_bind(*i);
                    },
                    " ON CONFLICT (identifier) DO NOTHING",
                );
                // Links name their resource by identifier and find its key
                // in the same statement (`WHERE true` keeps SQLite from
                // reading the join's `ON` as the start of the upsert clause).
                let links = with_values(
                    "INSERT INTO record_resources (resource_id, record_id) \
                     SELECT r.resource_id, v.column2 FROM (",
                    &self.links,
                    |mut b, (identifier, id)| {
                        b.push_bind(*identifier).push_bind(*id);
                    },
                    ") AS v JOIN resources r ON r.identifier = v.column1 WHERE true \
                     ON CONFLICT DO NOTHING",
                );
                let acl = with_values(
                    "INSERT INTO acl_entries (record_id, sid, permission) ",
                    &self.acl,
                    |mut b, ((id, sid), permission)| {
                        b.push_bind(*id).push_bind(*sid).push_bind(*permission);
                    },
                    " ON CONFLICT (record_id, sid) DO UPDATE SET permission = excluded.permission",
                );
                heads
                    .chain(sets)
                    .chain(deletes("record_resources", &self.unlinked))
                    .chain(resources)
                    .chain(links)
                    .chain(deletes("acl_entries", &self.unacled))
                    .chain(acl)
            }
        }

        /// Writes `outcome`'s new version, if it has one, over `current`.
        async fn write_outcome(
            conn: &mut Conn,
            outcome: &WriteOutcome,
            current: Option<RecordVersion>,
        ) -> Result<()> {
            let new = match outcome {
                WriteOutcome::Unchanged(_) => return Ok(()),
                WriteOutcome::Created(v) | WriteOutcome::Updated(v) | WriteOutcome::Deleted(v) => v,
            };
            let before: HashMap<RecordId, RecordVersion> =
                current.map(|c| (c.id.clone(), c)).into_iter().collect();
            write_versions(conn, vec![new.clone()], HashMap::new(), &HashMap::new(), &before).await
        }

        async fn apply_put(
            conn: &mut Conn,
            clock: &mut Clock,
            w: RecordWrite,
            expect: Expect,
        ) -> Result<WriteOutcome> {
            let current = current_version(conn, &w.id).await?;
            let hash = w.content_hash();
            let outcome = next_put(current.as_ref(), w, hash, expect, clock)?;
            write_outcome(conn, &outcome, current).await?;
            Ok(outcome)
        }

        async fn apply_delete(
            conn: &mut Conn,
            clock: &mut Clock,
            id: &RecordId,
            expect: Expect,
            provenance: Option<Provenance>,
        ) -> Result<WriteOutcome> {
            let current = current_version(conn, id).await?;
            let outcome = next_delete(current.as_ref(), id, expect, provenance, clock)?;
            write_outcome(conn, &outcome, current).await?;
            Ok(outcome)
        }

        /// Whether this run already kept the same rejection (same record,
        /// bytes and reason): a restarted window sees records twice.
        async fn rejected_in_run(conn: &mut Conn, r: &NewRejection) -> Result<bool> {
            let (Some(run), Some(identifier)) = (r.run_id, r.identifier.as_deref()) else {
                return Ok(false);
            };
            let row = sqlx::query(
                "SELECT 1 AS found FROM rejections WHERE run_id = $1 AND identifier = $2 \
                 AND message = $3 AND document = $4 LIMIT 1",
            )
            .bind(run)
            .bind(identifier)
            .bind(&r.message)
            .bind(r.document.as_slice())
            .fetch_optional(&mut *conn)
            .await?;
            Ok(row.is_some())
        }

        async fn apply_rejection(conn: &mut Conn, r: &NewRejection) -> Result<i64> {
            let row = sqlx::query(
                "INSERT INTO rejections (origin, source_id, run_id, identifier, schema_id, \
                 schema_version, message, document, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING rejection_id",
            )
            .bind(&r.origin)
            .bind(r.source_id.as_ref().map(|s| s.as_str()))
            .bind(r.run_id)
            .bind(r.identifier.as_deref())
            .bind(r.schema_id.as_ref().map(|s| s.as_str()))
            .bind(r.schema_version)
            .bind(&r.message)
            .bind(r.document.as_slice())
            .bind(to_micros(Utc::now()))
            .fetch_one(&mut *conn)
            .await?;
            Ok(row.try_get("rejection_id")?)
        }

        /// Appends the `WHERE` conditions of a change query (all but the
        /// keyset cursor, which only `changes` uses).
        fn push_change_filters(qb: &mut QueryBuilder<$db>, q: &ChangeQuery) {
            qb.push(" AND v.seq <= ").push_bind(q.horizon_seq);
            qb.push(
                " AND NOT EXISTS (SELECT 1 FROM record_versions w WHERE w.record_id = v.record_id \
                 AND w.seq > v.seq AND w.seq <= ",
            )
            .push_bind(q.horizon_seq)
            .push(")");
            if let Some(from) = q.from {
                qb.push(" AND v.changed_at >= ").push_bind(to_micros(from));
            }
            if let Some(until) = q.until {
                qb.push(" AND v.changed_at <= ").push_bind(to_micros(until));
            }
            if let Some(s) = &q.schema_id {
                qb.push(" AND v.schema_id = ").push_bind(s.as_str());
            }
            if let Some(s) = &q.source_id {
                qb.push(" AND v.source_id = ").push_bind(s.as_str());
            }
            if let Some(set) = &q.upstream_set {
                qb.push(" AND EXISTS (SELECT 1 FROM version_sets vs WHERE vs.seq = v.seq AND vs.set_spec = ")
                    .push_bind(set.as_str())
                    .push(")");
            }
            if let Some(p) = &q.metadata_prefix {
                qb.push(
                    // Only versions whose documents are an OAI format: XML
                    // with a namespace (as the OAI face's GetRecord asks).
                    " AND EXISTS (SELECT 1 FROM schema_versions sp WHERE sp.schema_id = v.schema_id \
                     AND sp.version = v.schema_version AND sp.kind = 'XML' \
                     AND sp.namespace IS NOT NULL AND sp.namespace <> '' AND sp.metadata_prefix = ",
                )
                .push_bind(p.as_str())
                .push(")");
            }
        }

        /// Appends the `WHERE` conditions of a record list.
        fn push_record_filters(qb: &mut QueryBuilder<$db>, f: &RecordFilter) {
            qb.push(" WHERE 1 = 1");
            if !f.include_deleted {
                qb.push(" AND r.deleted = ").push_bind(false);
            }
            if !f.ids.is_empty() {
                qb.push(" AND r.record_id IN (");
                push_in_list(qb, f.ids.iter().map(|id| id.as_str()));
            }
            if !f.resource_ids.is_empty() {
                qb.push(
                    " AND r.record_id IN (SELECT rr.record_id FROM record_resources rr \
                     JOIN resources res ON res.resource_id = rr.resource_id WHERE res.identifier IN (",
                );
                push_in_list(qb, f.resource_ids.iter().map(|id| id.as_str()));
                qb.push(")");
            }
            if !f.schema_ids.is_empty() {
                qb.push(" AND r.schema_id IN (");
                push_in_list(qb, f.schema_ids.iter().map(|id| id.as_str()));
            }
            if let Some(s) = &f.source_id {
                qb.push(" AND r.source_id = ").push_bind(s.as_str());
            }
            if let Some(from) = f.from {
                qb.push(" AND r.changed_at >= ").push_bind(to_micros(from));
            }
            if let Some(until) = f.until {
                qb.push(" AND r.changed_at <= ").push_bind(to_micros(until));
            }
            match f.readable_by.as_deref() {
                None => {}
                Some([]) => {
                    qb.push(
                        " AND NOT EXISTS (SELECT 1 FROM acl_entries a0 WHERE a0.record_id = r.record_id)",
                    );
                }
                Some(sids) => {
                    // A record without any ACL entry (harvested) is public.
                    qb.push(
                        " AND (NOT EXISTS (SELECT 1 FROM acl_entries a0 WHERE a0.record_id = r.record_id) \
                         OR EXISTS (SELECT 1 FROM acl_entries a WHERE a.record_id = r.record_id \
                         AND a.sid IN (",
                    );
                    push_in_list(qb, sids.iter().map(|sid| sid.as_str()));
                    qb.push("))");
                }
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> Backend {
                Self::BACKEND
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn put_schema(&self, s: NewSchema, expect: Expect) -> Result<SchemaOutcome> {
                let (mut tx, clock) = self.begin_write().await?;
                let current = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SCHEMA_COLS} FROM schemas s JOIN schema_versions sv \
                     ON sv.schema_id = s.schema_id AND sv.version = s.current_version \
                     WHERE s.schema_id = $1"
                )))
                .bind(s.schema_id.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(schema_from_row)
                .transpose()?;
                let id = &s.schema_id;
                match (expect, &current) {
                    (Expect::Any, _) | (Expect::Absent, None) => {}
                    (Expect::Absent, Some(_)) => {
                        return Err(StoreError::Conflict(format!("schema {id} already exists")));
                    }
                    (Expect::Version(_), None) => {
                        return Err(StoreError::NotFound(format!("schema {id}")));
                    }
                    (Expect::Version(v), Some(c)) if c.version != v => {
                        return Err(StoreError::Conflict(format!(
                            "schema {id} is at version {}, not {v}",
                            c.version
                        )));
                    }
                    (Expect::Version(_), Some(_)) => {}
                }
                let kind = s.kind.as_str();
                let record = s.record.to_string();
                let hash = ContentHash::of_parts([
                    s.document.as_slice(),
                    kind.as_bytes(),
                    s.metadata_prefix.as_bytes(),
                    s.namespace.as_deref().unwrap_or("").as_bytes(),
                    record.as_bytes(),
                ]);
                if let Some(c) = current.as_ref().filter(|c| c.content_hash == hash) {
                    return Ok(SchemaOutcome::Unchanged(c.clone()));
                }
                let now = Utc::now();
                let version = current.as_ref().map_or(1, |c| c.version + 1);
                let created_at = current.as_ref().map_or(now, |c| c.created_at);
                sqlx::query(
                    "INSERT INTO schemas (schema_id, current_version, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (schema_id) DO UPDATE SET current_version = excluded.current_version",
                )
                .bind(id.as_str())
                .bind(version)
                .bind(to_micros(created_at))
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO schema_versions (schema_id, version, kind, namespace, \
                     metadata_prefix, document, record, content_hash, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(id.as_str())
                .bind(version)
                .bind(kind)
                .bind(s.namespace.as_deref())
                .bind(&s.metadata_prefix)
                .bind(s.document.as_slice())
                .bind(&record)
                .bind(hash.as_str())
                .bind(to_micros(now))
                .execute(&mut *tx)
                .await?;
                self.commit_write(tx, clock).await?;
                let v = SchemaVersion {
                    schema_id: s.schema_id,
                    version,
                    kind: s.kind,
                    namespace: s.namespace,
                    metadata_prefix: s.metadata_prefix,
                    document: s.document,
                    record: s.record,
                    content_hash: hash,
                    created_at,
                    updated_at: from_micros(to_micros(now))?,
                };
                Ok(if current.is_some() {
                    SchemaOutcome::Updated(v)
                } else {
                    SchemaOutcome::Created(v)
                })
            }

            async fn get_schema(
                &self,
                id: &SchemaId,
                version: Option<i64>,
            ) -> Result<Option<SchemaVersion>> {
                let row = match version {
                    Some(v) => {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SELECT {SCHEMA_COLS} FROM schemas s JOIN schema_versions sv \
                             ON sv.schema_id = s.schema_id WHERE s.schema_id = $1 AND sv.version = $2"
                        )))
                        .bind(id.as_str())
                        .bind(v)
                        .fetch_optional(&self.pool)
                        .await?
                    }
                    None => {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SELECT {SCHEMA_COLS} FROM schemas s JOIN schema_versions sv \
                             ON sv.schema_id = s.schema_id AND sv.version = s.current_version \
                             WHERE s.schema_id = $1"
                        )))
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await?
                    }
                };
                row.as_ref().map(schema_from_row).transpose()
            }

            async fn list_schemas(&self) -> Result<Vec<SchemaVersion>> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SCHEMA_COLS} FROM schemas s JOIN schema_versions sv \
                     ON sv.schema_id = s.schema_id AND sv.version = s.current_version \
                     ORDER BY s.schema_id"
                )))
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(schema_from_row)
                .collect()
            }

            async fn schema_versions(&self, id: &SchemaId) -> Result<Vec<SchemaVersion>> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SCHEMA_COLS} FROM schemas s JOIN schema_versions sv \
                     ON sv.schema_id = s.schema_id WHERE s.schema_id = $1 ORDER BY sv.version DESC"
                )))
                .bind(id.as_str())
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(schema_from_row)
                .collect()
            }

            async fn put_record(&self, write: RecordWrite, expect: Expect) -> Result<WriteOutcome> {
                let (mut tx, mut clock) = self.begin_write().await?;
                let outcome = apply_put(&mut tx, &mut clock, write, expect).await?;
                self.commit_write(tx, clock).await?;
                Ok(outcome)
            }

            async fn delete_record(
                &self,
                id: &RecordId,
                expect: Expect,
                provenance: Option<Provenance>,
            ) -> Result<WriteOutcome> {
                let (mut tx, mut clock) = self.begin_write().await?;
                let outcome = apply_delete(&mut tx, &mut clock, id, expect, provenance).await?;
                self.commit_write(tx, clock).await?;
                Ok(outcome)
            }

            async fn resurrect_record(&self, id: &RecordId, expect: Expect) -> Result<WriteOutcome> {
                let (mut tx, mut clock) = self.begin_write().await?;
                let current = current_version(&mut tx, id).await?;
                check_expect(id, current.as_ref(), expect)?;
                let Some(c) = current else {
                    return Err(StoreError::NotFound(format!("record {id}")));
                };
                if !c.deleted {
                    return Ok(WriteOutcome::Unchanged(c));
                }
                let sql = format!(
                    "SELECT {VERSION_COLS} FROM record_versions v JOIN records r \
                     ON r.record_id = v.record_id WHERE v.record_id = $1 AND v.deleted = $2 \
                     ORDER BY v.version DESC LIMIT 1"
                );
                let live = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id.as_str())
                    .bind(false)
                    .fetch_optional(&mut *tx)
                    .await?
                    .as_ref()
                    .map(version_from_row)
                    .transpose()?
                    .ok_or_else(|| StoreError::Corrupt(format!("record {id} has no live version")))?;
                let (seq, now) = clock.tick();
                let v = RecordVersion {
                    version: c.version + 1,
                    seq,
                    changed_at: from_micros(now)?,
                    ..live
                };
                let outcome = WriteOutcome::Updated(v);
                write_outcome(&mut tx, &outcome, Some(c)).await?;
                self.commit_write(tx, clock).await?;
                Ok(outcome)
            }

            async fn get_record(
                &self,
                id: &RecordId,
                version: Option<i64>,
            ) -> Result<Option<RecordVersion>> {
                let Some(version) = version else {
                    let mut conn = self.pool.acquire().await?;
                    return current_version(&mut conn, id).await;
                };
                let sql = format!(
                    "SELECT {VERSION_COLS} FROM record_versions v JOIN records r \
                     ON r.record_id = v.record_id WHERE v.record_id = $1 AND v.version = $2"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id.as_str())
                    .bind(version)
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(version_from_row)
                    .transpose()
            }

            async fn record_versions(&self, id: &RecordId) -> Result<Vec<RecordVersion>> {
                let sql = format!(
                    "SELECT {VERSION_COLS} FROM record_versions v JOIN records r \
                     ON r.record_id = v.record_id WHERE v.record_id = $1 ORDER BY v.version DESC"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id.as_str())
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(version_from_row)
                    .collect()
            }

            async fn list_records(
                &self,
                filter: &RecordFilter,
                offset: i64,
                limit: i64,
            ) -> Result<(Vec<RecordVersion>, i64)> {
                let (offset, limit) = (offset.max(0), limit.max(0));
                let mut qb = QueryBuilder::<$db>::new(format!(
                    "SELECT {VERSION_COLS} FROM records r JOIN record_versions v \
                     ON v.record_id = r.record_id AND v.version = r.version"
                ));
                push_record_filters(&mut qb, filter);
                // LIMIT and OFFSET as literals: bound, they make SQLite
                // re-prepare the statement on every execution (it reads them
                // while planning), which costs more than the query itself.
                qb.push(format_args!(" ORDER BY r.seq LIMIT {limit} OFFSET {offset}"));
                let rows = qb.build().fetch_all(&self.pool).await?;
                let items = rows.iter().map(version_from_row).collect::<Result<Vec<_>>>()?;
                let n = items.len() as i64;
                // A short page that is not past the end tells the total: the
                // count query (half the cost of a lookup) is skipped.
                let total = if n < limit && (n > 0 || offset == 0) {
                    offset + n
                } else {
                    let mut count = QueryBuilder::<$db>::new("SELECT COUNT(*) AS n FROM records r");
                    push_record_filters(&mut count, filter);
                    count.build().fetch_one(&self.pool).await?.try_get("n")?
                };
                Ok((items, total))
            }

            async fn live_hashes(&self, ids: &[RecordId]) -> Result<HashMap<RecordId, LiveHashes>> {
                let mut conn = self.pool.acquire().await?;
                let ids: Vec<&RecordId> = ids.iter().collect();
                Ok(heads_on(&mut conn, &ids)
                    .await?
                    .into_iter()
                    .filter(|(_, head)| !head.deleted)
                    .map(|(id, head)| (id, head.hashes))
                    .collect())
            }

            async fn record_acl(&self, id: &RecordId) -> Result<Vec<AclEntry>> {
                let rows = sqlx::query(
                    "SELECT sid, permission FROM acl_entries WHERE record_id = $1 ORDER BY sid",
                )
                .bind(id.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        let p: String = r.try_get("permission")?;
                        Ok(AclEntry {
                            sid: r.try_get("sid")?,
                            permission: sheaf_domain::model::Permission::parse(&p)
                                .ok_or_else(|| StoreError::Corrupt(format!("permission {p}")))?,
                        })
                    })
                    .collect()
            }

            async fn horizon(&self) -> Result<Horizon> {
                let (tx, mut clock) = self.begin_write().await?;
                let at = clock.last.max(to_micros(Utc::now()));
                // The horizon's time is stored as the clock's last time, so
                // a later change is never stamped before it — not even by a
                // process whose wall clock lags this one's.
                if at > clock.last {
                    clock.last = at;
                    clock.dirty = true;
                }
                let seq = clock.seq;
                self.commit_write(tx, clock).await?;
                Ok(Horizon {
                    seq,
                    at: from_micros(at)?,
                })
            }

            async fn changes(&self, q: &ChangeQuery) -> Result<Vec<RecordVersion>> {
                let mut qb = QueryBuilder::<$db>::new(format!(
                    "SELECT {VERSION_COLS} FROM record_versions v JOIN records r \
                     ON r.record_id = v.record_id WHERE v.seq > "
                ));
                qb.push_bind(q.after_seq);
                push_change_filters(&mut qb, q);
                qb.push(" ORDER BY v.seq LIMIT ").push_bind(q.limit.max(0));
                qb.build()
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(version_from_row)
                    .collect()
            }

            fn changes_stream(
                &self,
                q: ChangeQuery,
            ) -> futures_util::stream::BoxStream<'static, Result<RecordVersion>> {
                use futures_util::StreamExt;
                // The row stream borrows its query and pool, so it runs in
                // its own task and hands rows over a small bounded channel.
                let pool = self.pool.clone();
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<RecordVersion>>(64);
                tokio::spawn(async move {
                    let mut qb = QueryBuilder::<$db>::new(format!(
                        "SELECT {VERSION_COLS} FROM record_versions v JOIN records r \
                         ON r.record_id = v.record_id WHERE v.seq > "
                    ));
                    qb.push_bind(q.after_seq);
                    push_change_filters(&mut qb, &q);
                    qb.push(" ORDER BY v.seq LIMIT ").push_bind(q.limit.max(0));
                    let mut rows = qb.build().fetch(&pool);
                    while let Some(row) = rows.next().await {
                        let item = row.map_err(StoreError::from).and_then(|r| version_from_row(&r));
                        let failed = item.is_err();
                        if tx.send(item).await.is_err() || failed {
                            break;
                        }
                    }
                });
                Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
            }

            async fn count_changes(&self, q: &ChangeQuery) -> Result<i64> {
                let mut qb = QueryBuilder::<$db>::new(
                    "SELECT COUNT(*) AS n FROM record_versions v WHERE v.seq > ",
                );
                qb.push_bind(q.after_seq);
                push_change_filters(&mut qb, q);
                Ok(qb.build().fetch_one(&self.pool).await?.try_get("n")?)
            }

            async fn seq_before(&self, t: DateTime<Utc>) -> Result<i64> {
                let row = sqlx::query(
                    "SELECT seq FROM record_versions WHERE changed_at < $1 \
                     ORDER BY changed_at DESC, seq DESC LIMIT 1",
                )
                .bind(to_micros(t))
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|r| r.try_get("seq")).transpose()?.unwrap_or(0))
            }

            async fn earliest_change(&self) -> Result<Option<DateTime<Utc>>> {
                let row = sqlx::query("SELECT MIN(changed_at) AS t FROM records")
                    .fetch_one(&self.pool)
                    .await?;
                let t: Option<i64> = row.try_get("t")?;
                t.map(from_micros).transpose()
            }

            async fn upstream_sets(&self, source: &SourceId) -> Result<Vec<String>> {
                let rows = sqlx::query(
                    "SELECT DISTINCT vs.set_spec FROM version_sets vs \
                     JOIN record_versions v ON v.seq = vs.seq WHERE v.source_id = $1 \
                     ORDER BY vs.set_spec",
                )
                .bind(source.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(|r| Ok(r.try_get("set_spec")?)).collect()
            }

            async fn shared_secret(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>> {
                sqlx::query(
                    "INSERT INTO shared_secrets (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(candidate)
                .execute(&self.pool)
                .await?;
                let row = sqlx::query("SELECT value FROM shared_secrets WHERE name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.try_get("value")?)
            }

            async fn upsert_source(&self, s: &Source) -> Result<()> {
                sqlx::query(
                    "INSERT INTO sources (source_id, base_url, enabled, config, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source_id) DO UPDATE SET \
                     base_url = excluded.base_url, enabled = excluded.enabled, \
                     config = excluded.config, updated_at = excluded.updated_at",
                )
                .bind(s.id.as_str())
                .bind(&s.base_url)
                .bind(s.enabled)
                .bind(s.config.to_string())
                .bind(to_micros(s.updated_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn get_source(&self, id: &SourceId) -> Result<Option<Source>> {
                sqlx::query("SELECT * FROM sources WHERE source_id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(source_from_row)
                    .transpose()
            }

            async fn list_sources(&self) -> Result<Vec<Source>> {
                sqlx::query("SELECT * FROM sources ORDER BY source_id")
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(source_from_row)
                    .collect()
            }

            async fn start_run(
                &self,
                source: &SourceId,
                window_from: Option<String>,
                window_until: Option<String>,
            ) -> Result<HarvestRun> {
                let (mut tx, clock) = self.begin_write().await?;
                let running = sqlx::query(
                    "SELECT run_id FROM harvest_runs WHERE source_id = $1 AND status = 'running'",
                )
                .bind(source.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(r) = running {
                    let id: i64 = r.try_get("run_id")?;
                    return Err(StoreError::Conflict(format!(
                        "source {source} already has run {id} in progress"
                    )));
                }
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO harvest_runs (source_id, status, started_at, window_from, \
                     window_until) VALUES ($1, 'running', $2, $3, $4) RETURNING {RUN_COLS}"
                )))
                .bind(source.as_str())
                .bind(to_micros(Utc::now()))
                .bind(window_from)
                .bind(window_until)
                .fetch_one(&mut *tx)
                .await?;
                let run = run_from_row(&row)?;
                self.commit_write(tx, clock).await?;
                Ok(run)
            }

            async fn commit_page(
                &self,
                run_id: i64,
                items: Vec<PageItem>,
                checkpoint: Option<Value>,
                response_date: Option<String>,
            ) -> Result<RunCounts> {
                let (mut tx, mut clock) = self.begin_write().await?;
                let status: Option<String> =
                    sqlx::query("SELECT status FROM harvest_runs WHERE run_id = $1")
                        .bind(run_id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|r| r.try_get("status"))
                        .transpose()?;
                match status.as_deref() {
                    Some("running") => {}
                    Some(s) => {
                        return Err(StoreError::Conflict(format!("run {run_id} is {s}")));
                    }
                    None => return Err(StoreError::NotFound(format!("run {run_id}"))),
                }
                // The page is decided in memory in page order (a record may
                // come twice) and written in a few multi-row statements.
                // Current versions are read in two steps: the heads of the
                // records mentioned, whose hashes settle every unchanged
                // record without reading it, then the full current version
                // of the rest that exist (none on a first harvest).
                let looked_up: Vec<&RecordId> = items
                    .iter()
                    .filter_map(|item| match item {
                        PageItem::Put { write, .. } => Some(&write.id),
                        PageItem::Keep { id, .. } | PageItem::Delete { id, .. } => Some(id),
                        PageItem::Reject(_) => None,
                    })
                    .collect();
                let heads = heads_on(&mut tx, &looked_up).await?;
                let live = |id: &RecordId| heads.get(id).filter(|h| !h.deleted).map(|h| &h.hashes);
                // A record is settled when every mention of it in the page is
                // a put of its live content or a keep of its live input key;
                // the others are read whole.
                let mut settled: HashMap<RecordId, bool> = HashMap::new();
                for item in &items {
                    let (id, same) = match item {
                        PageItem::Put { write, rendered, .. } => (
                            &write.id,
                            live(&write.id).map(|l| &l.content) == Some(&rendered.hash),
                        ),
                        PageItem::Keep { id, input } => {
                            (id, live(id).and_then(|l| l.input.as_ref()) == Some(input))
                        }
                        PageItem::Delete { id, .. } => (id, false),
                        PageItem::Reject(_) => continue,
                    };
                    *settled.entry(id.clone()).or_insert(true) &= same;
                }
                let stale: Vec<&str> = items
                    .iter()
                    .filter_map(|item| match item {
                        PageItem::Keep { id, .. } if settled.get(id) != Some(&true) => Some(id.as_str()),
                        _ => None,
                    })
                    .collect();
                if let Some(first) = stale.first() {
                    return Err(StoreError::Stale(format!(
                        "{} record(s) changed since the page was registered, {first} first",
                        stale.len()
                    )));
                }
                let ids: Vec<&RecordId> = settled
                    .iter()
                    .filter(|(id, unchanged)| !**unchanged && heads.contains_key(*id))
                    .map(|(id, _)| id)
                    .collect();
                let before = current_versions(&mut tx, &ids).await?;
                // Where a record's version written earlier in this page is.
                let mut heads: HashMap<RecordId, usize> = HashMap::new();
                let mut new: Vec<RecordVersion> = Vec::new();
                let mut rejections = Vec::new();
                let mut counts = RunCounts::default();
                // What the puts brought beside their new versions, by
                // sequence (rendered text, input keys), and the input keys
                // of live versions whose content a put repeated under a new
                // key.
                let mut rendered_by_seq: HashMap<i64, Rendered> = HashMap::new();
                let mut inputs: HashMap<i64, ContentHash> = HashMap::new();
                let mut rekeyed: Vec<(RecordId, ContentHash)> = Vec::new();
                for item in items {
                    counts.seen += 1;
                    let outcome = match item {
                        PageItem::Put { write, rendered, input } => {
                            if settled.get(&write.id) == Some(&true) {
                                counts.unchanged += 1;
                                if let Some(input) = input
                                    && live(&write.id).and_then(|l| l.input.as_ref()) != Some(&input)
                                {
                                    rekeyed.push((write.id, input));
                                }
                                continue;
                            }
                            let current = heads.get(&write.id).map(|&i| &new[i]).or_else(|| before.get(&write.id));
                            let o = next_put(current, *write, rendered.hash.clone(), Expect::Any, &mut clock)?;
                            count(&mut counts, &o);
                            if let WriteOutcome::Created(v) | WriteOutcome::Updated(v) = &o {
                                rendered_by_seq.insert(v.seq, rendered);
                                if let Some(input) = input {
                                    inputs.insert(v.seq, input);
                                }
                            }
                            o
                        }
                        // Settled, or the page was refused above.
                        PageItem::Keep { .. } => {
                            counts.unchanged += 1;
                            continue;
                        }
                        PageItem::Delete { id, provenance } => {
                            // Every upstream deletion counts as one, even of
                            // a record never stored here or deleted already.
                            counts.deleted += 1;
                            let current = heads.get(&id).map(|&i| &new[i]).or_else(|| before.get(&id));
                            match next_delete(current, &id, Expect::Any, provenance, &mut clock) {
                                Ok(o) => o,
                                Err(StoreError::NotFound(_)) => continue,
                                Err(e) => return Err(e),
                            }
                        }
                        PageItem::Reject(mut r) => {
                            r.run_id = Some(run_id);
                            rejections.push(r);
                            counts.rejected += 1;
                            continue;
                        }
                    };
                    if let WriteOutcome::Created(v) | WriteOutcome::Updated(v) | WriteOutcome::Deleted(v) = outcome {
                        heads.insert(v.id.clone(), new.len());
                        new.push(v);
                    }
                }
                write_versions(&mut tx, new, rendered_by_seq, &inputs, &before).await?;
                rekey_live(&mut tx, &rekeyed).await?;
                for r in &rejections {
                    if !rejected_in_run(&mut tx, r).await? {
                        apply_rejection(&mut tx, r).await?;
                    }
                }
                sqlx::query(
                    "UPDATE harvest_runs SET seen = seen + $1, created = created + $2, \
                     updated = updated + $3, unchanged = unchanged + $4, deleted = deleted + $5, \
                     rejected = rejected + $6, checkpoint = $7, \
                     response_date = COALESCE(response_date, $8) WHERE run_id = $9",
                )
                .bind(counts.seen)
                .bind(counts.created)
                .bind(counts.updated)
                .bind(counts.unchanged)
                .bind(counts.deleted)
                .bind(counts.rejected)
                .bind(checkpoint.map(|c| c.to_string()))
                .bind(response_date)
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
                self.commit_write(tx, clock).await?;
                Ok(counts)
            }

            async fn finish_run(
                &self,
                run_id: i64,
                status: RunStatus,
                message: Option<String>,
            ) -> Result<HarvestRun> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE harvest_runs SET status = $1, finished_at = $2, message = $3 \
                     WHERE run_id = $4 RETURNING {RUN_COLS}"
                )))
                .bind(status.as_str())
                .bind(to_micros(Utc::now()))
                .bind(message)
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("run {run_id}")))?;
                run_from_row(&row)
            }

            async fn get_run(&self, run_id: i64) -> Result<Option<HarvestRun>> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLS} FROM harvest_runs WHERE run_id = $1"
                )))
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await?
                .as_ref()
                .map(run_from_row)
                .transpose()
            }

            async fn list_runs(&self, source: Option<&SourceId>, limit: i64) -> Result<Vec<HarvestRun>> {
                let mut qb = QueryBuilder::<$db>::new(format!(
                    "SELECT {RUN_COLS} FROM harvest_runs WHERE 1 = 1"
                ));
                if let Some(s) = source {
                    qb.push(" AND source_id = ").push_bind(s.as_str());
                }
                qb.push(" ORDER BY run_id DESC LIMIT ").push_bind(limit.max(0));
                qb.build()
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(run_from_row)
                    .collect()
            }

            async fn last_successful_run(&self, source: &SourceId) -> Result<Option<HarvestRun>> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLS} FROM harvest_runs WHERE source_id = $1 \
                     AND status = 'succeeded' ORDER BY run_id DESC LIMIT 1"
                )))
                .bind(source.as_str())
                .fetch_optional(&self.pool)
                .await?
                .as_ref()
                .map(run_from_row)
                .transpose()
            }

            async fn unfinished_run(&self, source: &SourceId) -> Result<Option<HarvestRun>> {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLS} FROM harvest_runs WHERE source_id = $1 \
                     AND status = 'running' ORDER BY run_id DESC LIMIT 1"
                )))
                .bind(source.as_str())
                .fetch_optional(&self.pool)
                .await?
                .as_ref()
                .map(run_from_row)
                .transpose()
            }

            async fn acquire_lease(
                &self,
                source: &SourceId,
                holder: &str,
                ttl: std::time::Duration,
            ) -> Result<bool> {
                let now = to_micros(Utc::now());
                let ttl = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX / 2);
                let done = sqlx::query(
                    "INSERT INTO leases (source_id, holder, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (source_id) DO UPDATE SET holder = excluded.holder, \
                     expires_at = excluded.expires_at \
                     WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
                )
                .bind(source.as_str())
                .bind(holder)
                .bind(now.saturating_add(ttl))
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_lease(&self, source: &SourceId, holder: &str) -> Result<()> {
                sqlx::query("DELETE FROM leases WHERE source_id = $1 AND holder = $2")
                    .bind(source.as_str())
                    .bind(holder)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn add_rejection(&self, rejection: NewRejection) -> Result<i64> {
                let mut conn = self.pool.acquire().await?;
                apply_rejection(&mut conn, &rejection).await
            }

            async fn list_rejections(
                &self,
                source: Option<&SourceId>,
                limit: i64,
            ) -> Result<Vec<Rejection>> {
                let mut qb = QueryBuilder::<$db>::new("SELECT * FROM rejections WHERE 1 = 1");
                if let Some(s) = source {
                    qb.push(" AND source_id = ").push_bind(s.as_str());
                }
                qb.push(" ORDER BY rejection_id DESC LIMIT ").push_bind(limit.max(0));
                let rows = qb.build().fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|row| {
                        let source: Option<String> = row.try_get("source_id")?;
                        let schema: Option<String> = row.try_get("schema_id")?;
                        let corrupt = |e: sheaf_domain::IdError| StoreError::Corrupt(e.to_string());
                        Ok(Rejection {
                            id: row.try_get("rejection_id")?,
                            rejection: NewRejection {
                                origin: row.try_get("origin")?,
                                source_id: source.map(SourceId::parse).transpose().map_err(corrupt)?,
                                run_id: row.try_get("run_id")?,
                                identifier: row.try_get("identifier")?,
                                schema_id: schema.map(SchemaId::parse).transpose().map_err(corrupt)?,
                                schema_version: row.try_get("schema_version")?,
                                message: row.try_get("message")?,
                                document: row.try_get("document")?,
                            },
                            created_at: from_micros(row.try_get("created_at")?)?,
                        })
                    })
                    .collect()
            }
        }
    };
}

pub(crate) use sql_store;
