//! The SQLite backend: the embedded default, one file under `data/`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::{DatabaseUrl, migrate};

/// The page size of a new database file (an existing file keeps its own).
/// A harvested version is a row of 2 to 3 KB (document, record fields,
/// provenance): on SQLite's default 4 KiB pages each takes a page of its
/// own and a third of every page written is empty; on 16 KiB pages six
/// fit, and a harvest writes and checkpoints a third fewer bytes (the
/// harvest benchmark's first run went from 14,100 to 19,000 records/s).
const PAGE_SIZE: u32 = 16 * 1024;

/// The SQLite implementation of [`crate::Store`].
#[derive(Clone)]
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
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
            .page_size(PAGE_SIZE);
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
            .connect_with(opts)
            .await
            .map_err(|e| describe(url, e))?;
        migrate::run(&sqlx::migrate!("../../migrations/sqlite"), &pool, url)
            .await
            .map_err(|e| match e {
                StoreError::Database(e) => describe(url, e),
                other => other,
            })?;
        Ok(Self { pool })
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
    "BEGIN IMMEDIATE"
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
