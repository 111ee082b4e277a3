//! Running the embedded migrations, refusing databases from a newer Sheaf.

use sqlx::migrate::{MigrateError, Migrator};

use crate::{DatabaseUrl, StoreError};

/// Applies pending migrations. Applying twice is a no-op. A database that
/// has a migration this binary does not know was migrated by a newer Sheaf:
/// refuse it rather than run old code against a new schema.
pub(crate) async fn run<'a, A>(
    migrator: &Migrator,
    pool: A,
    url: &DatabaseUrl,
) -> Result<(), StoreError>
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    match migrator.run(pool).await {
        Ok(()) => Ok(()),
        Err(MigrateError::VersionMissing(v)) => Err(StoreError::TooNew(format!(
            "{url} was migrated by a newer Sheaf (migration {v} is unknown to this binary); \
             refusing to start — upgrade Sheaf"
        ))),
        Err(MigrateError::Execute(e)) => Err(StoreError::Database(e)),
        Err(e) => Err(StoreError::Migrate(e)),
    }
}
