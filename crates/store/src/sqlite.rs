//! The SQLite backend: the embedded default, one file under `data/`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::Notify;

use crate::{DatabaseUrl, migrate};

/// The page size of a new database file (an existing file keeps its own).
/// A harvested version is a row of 2 to 3 KB (document, record fields,
/// provenance): on SQLite's default 4 KiB pages each takes a page of its
/// own and a third of every page written is empty; on 16 KiB pages six
/// fit, and a harvest writes and checkpoints a third fewer bytes (the
/// harvest benchmark's first run went from 14,100 to 19,000 records/s).
const PAGE_SIZE: u32 = 16 * 1024;

/// How many WAL pages a writer lets accumulate before it checkpoints
/// itself (SQLite's default is 1,000). With the [`Checkpointer`] keeping
/// up, this is also when the log starts over from its beginning, so about
/// the size the `-wal` file reaches under a long harvest.
const WRITER_CHECKPOINT_PAGES: u32 = 4_000;

/// How long the [`Checkpointer`] rests after each checkpoint. Under a
/// stream of commits (a harvest commits dozens of pages a second) a
/// checkpoint then takes several at once: fewer syncs, and index pages
/// every commit touches are copied once. In the harvest benchmark this
/// took about 8% off the CPU time, at the same speed.
const CHECKPOINT_REST: Duration = Duration::from_millis(250);

/// The SQLite implementation of [`crate::Store`].
#[derive(Clone)]
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    checkpointer: Arc<Checkpointer>,
}

/// Copies committed WAL frames into the database file on a connection of
/// its own, woken by committed writes: a writer's commit then only
/// appends to the WAL, and the copying (on a large database, the larger
/// part of committing a harvested page) runs beside the next page's
/// writes. A passive checkpoint waits for no reader or writer. Writers
/// still checkpoint themselves past [`WRITER_CHECKPOINT_PAGES`].
struct Checkpointer {
    wake: Arc<Notify>,
    task: tokio::task::AbortHandle,
}

impl Checkpointer {
    async fn start(opts: &SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let mut conn = opts.connect().await?;
        let wake = Arc::new(Notify::new());
        let woken = Arc::clone(&wake);
        let task = tokio::spawn(async move {
            let mut failing = false;
            loop {
                // Commits made while a checkpoint runs or rests leave one
                // wake-up behind, so the next checkpoint takes them all.
                woken.notified().await;
                // A failure (a full disk, say) is reported once; the next
                // commit tries again, and writers still checkpoint at
                // their own threshold meanwhile.
                match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&mut conn)
                    .await
                {
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!("background checkpoints work again");
                    }
                    Ok(_) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "background checkpoint failed");
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(CHECKPOINT_REST).await;
            }
        })
        .abort_handle();
        Ok(Self { wake, task })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SqliteStore {
    const BACKEND: crate::Backend = crate::Backend::Sqlite;

    /// Opens (creating if missing, with its directory) and migrates the file.
    /// An existing file that is not an SQLite database is reported, never
    /// overwritten.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url.expose())
            .map_err(|e| StoreError::Config(format!("database URL {url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            .page_size(PAGE_SIZE)
            .pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES.to_string());
        let path = opts.get_filename().to_owned();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Config(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            // A file in this process cannot hang up; pinging it on every
            // acquire is a round trip to its worker thread per query.
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await
            .map_err(|e| describe(url, e))?;
        migrate::run(&sqlx::migrate!("../../migrations/sqlite"), &pool, url)
            .await
            .map_err(|e| match e {
                StoreError::Database(e) => describe(url, e),
                other => other,
            })?;
        let checkpointer = Checkpointer::start(&opts)
            .await
            .map_err(|e| describe(url, e))?;
        Ok(Self {
            pool,
            checkpointer: Arc::new(checkpointer),
        })
    }

    /// After a write transaction commits: wakes the checkpointer.
    fn committed(&self) {
        self.checkpointer.wake.notify_one();
    }

    /// The underlying pool, for tests and admin tooling.
    pub fn pool(&self) -> &sqlx::SqlitePool {
        &self.pool
    }
}

/// Names the file and, for a file that is not a database, says so plainly.
fn describe(url: &DatabaseUrl, e: sqlx::Error) -> StoreError {
    let text = e.to_string();
    if text.contains("not a database") || text.contains("malformed") {
        StoreError::Config(format!(
            "{url} is not a readable SQLite database ({text}); left untouched"
        ))
    } else {
        StoreError::Config(format!("cannot open {url}: {text}"))
    }
}

crate::sql::sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    // A write transaction takes the database's write lock at once.
    "BEGIN IMMEDIATE",
    // Rows aggregated into one JSON array of arrays.
    "json_group_array(json_array"
);

#[cfg(test)]
mod tests {
    use sqlx::{ConnectOptions, Row};

    use super::*;

    async fn page_size(store: &SqliteStore) -> i64 {
        sqlx::query("PRAGMA page_size")
            .fetch_one(store.pool())
            .await
            .expect("page size")
            .get(0)
    }

    #[tokio::test]
    async fn committed_writes_are_checkpointed_in_the_background() {
        use crate::Store;
        use sheaf_domain::model::{Expect, NewSchema, RecordWrite, SchemaKind};
        use sheaf_domain::{RecordId, SchemaId};

        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("sheaf.db");
        let url = DatabaseUrl::parse(&format!("sqlite:{}", file.display())).expect("url");
        let store = SqliteStore::connect(&url).await.expect("store");
        let size = || std::fs::metadata(&file).map_or(0, |m| m.len());
        let empty = size();
        let schema = SchemaId::parse("s").expect("schema id");
        store
            .put_schema(
                NewSchema {
                    schema_id: schema.clone(),
                    kind: SchemaKind::Xsd,
                    namespace: None,
                    metadata_prefix: "s".into(),
                    document: b"<xs:schema/>".to_vec(),
                    record: serde_json::json!({}),
                },
                Expect::Any,
            )
            .await
            .expect("schema");
        // 40 versions of 20 KB: a few hundred WAL pages, far below the
        // writers' own checkpoint threshold.
        for i in 0..40 {
            let write = RecordWrite {
                id: RecordId::parse(format!("r{i}")).expect("id"),
                schema_id: schema.clone(),
                schema_version: 1,
                document: format!("<d n=\"{i}\">{}</d>", "x".repeat(20_000)).into_bytes(),
                record: serde_json::json!({}),
                resources: Vec::new(),
                acl: Vec::new(),
                source_id: None,
                provenance: None,
            };
            store.put_record(write, Expect::Any).await.expect("put");
        }
        // The checkpointer, not a writer, copies them into the file.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while size() < empty + 800_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes",
                size()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn new_files_get_large_pages_and_old_files_keep_theirs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = |name: &str| {
            DatabaseUrl::parse(&format!("sqlite:{}", dir.path().join(name).display())).expect("url")
        };

        let fresh = SqliteStore::connect(&url("fresh.db")).await.expect("fresh");
        assert_eq!(page_size(&fresh).await, i64::from(PAGE_SIZE));

        // A file an earlier Sheaf made with SQLite's default pages.
        let old = dir.path().join("old.db");
        let mut conn = SqliteConnectOptions::new()
            .filename(&old)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .connect()
            .await
            .expect("old file");
        sqlx::query("CREATE TABLE earlier (x INTEGER)")
            .execute(&mut conn)
            .await
            .expect("table");
        drop(conn);
        let reopened = SqliteStore::connect(&url("old.db")).await.expect("old");
        assert_eq!(page_size(&reopened).await, 4096);
        let tables: i64 = sqlx::query(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('earlier', 'record_versions')",
        )
        .fetch_one(reopened.pool())
        .await
        .expect("tables")
        .get(0);
        assert_eq!(tables, 2, "migrated beside what was there");
    }
}
