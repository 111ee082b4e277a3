//! `GET /health` through the real app: 200 with the database, 503 without.

use sheaf::config::{Config, Overrides};
use sheaf::startup::App;
use sheaf_store::testing::TestDb;

async fn start(db: &TestDb) -> (String, tokio::task::JoinHandle<()>) {
    let mut config = Config::load_with(&Overrides::default(), |_| None).expect("config");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let app = App::with_store(&config, db.store.clone())
        .await
        .expect("app");
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = tokio::spawn(async move {
        let _ = app.run_until(std::future::pending()).await;
    });
    (base, handle)
}

#[tokio::test]
async fn health_is_ok_on_sqlite() {
    let db = TestDb::sqlite().await;
    let (base, server) = start(&db).await;
    let r = reqwest::get(format!("{base}/health")).await.expect("get");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["database"], "sqlite");
    server.abort();
}

#[tokio::test]
async fn health_is_503_when_postgres_goes_away() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (base, server) = start(&db).await;
    assert_eq!(
        reqwest::get(format!("{base}/health"))
            .await
            .expect("get")
            .status(),
        200
    );
    // Cut the database off: refuse new connections and end the open ones.
    let name = db
        .url
        .expose()
        .rsplit('/')
        .next()
        .expect("db name")
        .to_owned();
    let admin = std::env::var(sheaf_store::testing::POSTGRES_URL_VAR).expect("url");
    let pool = sqlx::PgPool::connect(&admin).await.expect("admin");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
    )))
    .execute(&pool)
    .await
    .expect("cut off");
    let r = reqwest::get(format!("{base}/health")).await.expect("get");
    assert_eq!(r.status(), 503);
    server.abort();
}

#[tokio::test]
async fn every_face_is_mounted() {
    let db = TestDb::sqlite().await;
    let (base, server) = start(&db).await;
    let r = reqwest::get(format!("{base}/api/v2/schemas"))
        .await
        .expect("rest");
    assert_eq!(r.status(), 200);
    let schemas: serde_json::Value = r.json().await.expect("json");
    assert!(
        schemas.to_string().contains("oai_dc"),
        "the built-in schema is listed: {schemas}"
    );
    let r = reqwest::get(format!("{base}/api/v2/openapi.json"))
        .await
        .expect("openapi");
    assert_eq!(r.status(), 200);
    server.abort();
}
