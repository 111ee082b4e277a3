//! Test support shared by every crate's integration tests: a fresh SQLite
//! file or a throw-away PostgreSQL database per test, removed afterwards.
//!
//! PostgreSQL tests run when `SHEAF_TEST_POSTGRES_URL` names a server. When
//! it is unset they are skipped — unless `CI` is set, where a skipped
//! PostgreSQL test is a failure, so that backend never goes silently
//! untested.

use rand::Rng;

use crate::{DatabaseUrl, DynStore};

/// The environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_URL_VAR: &str = "SHEAF_TEST_POSTGRES_URL";

/// A store on a database that exists only for one test.
pub struct TestDb {
    pub store: DynStore,
    pub url: DatabaseUrl,
    _cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A migrated SQLite database in a fresh temporary directory.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = DatabaseUrl::parse(&format!("sqlite:{}", dir.path().join("sheaf.db").display()))
            .expect("sqlite url");
        let store = crate::connect(&url).await.expect("open sqlite");
        TestDb {
            store,
            url,
            _cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A migrated, freshly created PostgreSQL database, dropped when this
    /// value is. `None` (with a note on stderr) when no server is configured.
    pub async fn postgres() -> Option<TestDb> {
        let url = Self::postgres_url(None)?;
        let name = format!("sheaf_test_{:016x}", rand::rng().random::<u64>());
        admin_exec(&url, &format!("CREATE DATABASE {name}")).await;
        let db_url = with_database(&url, &name);
        let parsed = DatabaseUrl::parse(&db_url).expect("postgres url");
        let store = crate::connect(&parsed).await.expect("open postgres");
        Some(TestDb {
            store,
            url: parsed,
            _cleanup: Cleanup::Postgres {
                admin_url: url,
                name,
            },
        })
    }

    /// The configured server URL, or `None` outside CI when it is unset.
    /// `test` names the caller in the skip note.
    pub fn postgres_url(test: Option<&str>) -> Option<String> {
        match std::env::var(POSTGRES_URL_VAR) {
            Ok(u) if !u.is_empty() => Some(u),
            _ if std::env::var_os("CI").is_some() => {
                panic!("{POSTGRES_URL_VAR} is not set but CI is: PostgreSQL tests must run")
            }
            _ => {
                eprintln!(
                    "skipped {}: {POSTGRES_URL_VAR} not set",
                    test.unwrap_or("a PostgreSQL test")
                );
                None
            }
        }
    }
}

/// Replaces the database name in a PostgreSQL URL.
pub fn with_database(url: &str, name: &str) -> String {
    let mut u = ::url::Url::parse(url).expect("valid postgres url");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

async fn admin_exec(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL for tests: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = self {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let url = admin_url.clone();
            // Drop runs inside the test's runtime; a fresh thread with its
            // own runtime can block on the cleanup without nesting runtimes.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(admin_exec(&url, &sql));
                }
            })
            .join();
        }
    }
}

/// Generates, for each named `async fn(DynStore)` in scope, one test on
/// SQLite and one on PostgreSQL.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = $crate::testing::TestDb::sqlite().await;
                    super::$name(db.store.clone()).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = $crate::testing::TestDb::postgres().await else { return };
                    super::$name(db.store.clone()).await;
                }
            )*
        }
    };
}
