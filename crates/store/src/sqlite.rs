//! The SQLite backend: the embedded default, one file under `data/`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::{DatabaseUrl, migrate};

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
            .busy_timeout(Duration::from_secs(30));
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
