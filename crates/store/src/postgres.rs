//! The PostgreSQL backend: several daemons and API replicas on one database.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use crate::{DatabaseUrl, migrate};

/// The PostgreSQL implementation of [`crate::Store`].
#[derive(Clone)]
pub struct PgStore {
    pool: sqlx::PgPool,
}

impl PgStore {
    const BACKEND: crate::Backend = crate::Backend::Postgres;

    /// Connects and migrates.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url.expose())
            .await
            .map_err(|e| StoreError::Config(format!("cannot connect to {url}: {e}")))?;
        migrate::run(&sqlx::migrate!("../../migrations/postgres"), &pool, url).await?;
        Ok(Self { pool })
    }

    /// The underlying pool, for tests and admin tooling.
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }

    /// After a write transaction commits: nothing to do here.
    fn committed(&self) {}
}

crate::sql::sql_store!(
    PgStore,
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    // A write transaction locks the change clock's row first.
    "BEGIN",
    // Rows aggregated into one JSON array of arrays.
    "json_agg(json_build_array"
);
