//! The store's error type. Messages never contain a database password.

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The expected version is not the current one (or the record exists
    /// when it should not, or vice versa).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A page's `Keep` item names a record that changed since the
    /// harvester looked; the page was not written.
    #[error("stale page: {0}")]
    Stale(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// A stored value cannot be read back (a bug or a tampered database).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The database URL or file is unusable.
    #[error("{0}")]
    Config(String),
    /// The database was migrated by a newer Sheaf.
    #[error("{0}")]
    TooNew(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}
