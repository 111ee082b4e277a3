//! Issue 5, item 7, with a transaction that really commits late: a
//! harvester that uses `from` = its previous responseDate never misses a
//! change, even one stamped before that responseDate and committed after it.
//!
//! `late_commits_are_not_missed` in `oai.rs` races writers against a
//! harvester, but every store write is short and writers serialise, so it
//! cannot produce a late commit. Here a second connection to the same
//! database plays a writer that stalls mid-way: it takes the change clock
//! the way the store's writes do (`BEGIN IMMEDIATE` on SQLite, the
//! `change_counter` row lock on PostgreSQL), stamps a new version of a
//! record with its change sequence and time, and holds the transaction open
//! while a ListRecords is requested a wall-clock second later. Only then
//! does it commit.
//!
//! Were the list's snapshot (its horizon, whose time is the responseDate)
//! taken without waiting for that writer, the list would not see the
//! uncommitted version and its responseDate would be a second after the
//! version's change time, so the next harvest `from` that responseDate
//! would not see it either: the change would be lost. The test asserts the
//! precondition of that loss (the change time is before the responseDate
//! of the list requested while it was uncommitted) and that the change is
//! nevertheless harvested.

mod common;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sheaf_store::Backend;
use sheaf_store::testing::TestDb;
use sqlx::Connection;

use common::*;

fn seconds(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A connection of its own to the test's database.
enum Raw {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Raw {
    async fn connect(db: &TestDb) -> Raw {
        match db.store.backend() {
            Backend::Sqlite => {
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(db.url.expose())
                    .expect("sqlite url")
                    .busy_timeout(Duration::from_secs(30));
                Raw::Sqlite(
                    sqlx::SqliteConnection::connect_with(&opts)
                        .await
                        .expect("connect sqlite"),
                )
            }
            Backend::Postgres => Raw::Postgres(
                sqlx::PgConnection::connect(db.url.expose())
                    .await
                    .expect("connect postgres"),
            ),
        }
    }

    async fn exec(&mut self, sql: &str) {
        let q = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()));
        match self {
            Raw::Sqlite(c) => q.execute(c).await.map(drop),
            Raw::Postgres(c) => q.execute(c).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn last_time(&mut self) -> i64 {
        let q = "SELECT last_time FROM change_counter WHERE id = 1";
        match self {
            Raw::Sqlite(c) => sqlx::query_scalar(q).fetch_one(c).await,
            Raw::Postgres(c) => sqlx::query_scalar(q).fetch_one(c).await,
        }
        .expect("change clock")
    }

    /// Begins a write as the store does (the change clock locked first),
    /// writes version `current + 1` of record `id` with `document`, stamped
    /// with the next change sequence and time, and leaves the transaction
    /// open. Returns the change time.
    async fn begin_late_update(&mut self, id: &str, document: &[u8]) -> DateTime<Utc> {
        let text = std::str::from_utf8(document)
            .expect("utf-8")
            .replace('\'', "''");
        let (begin, doc) = match self {
            Raw::Sqlite(_) => ("BEGIN IMMEDIATE", format!("CAST('{text}' AS BLOB)")),
            Raw::Postgres(_) => ("BEGIN", format!("convert_to('{text}', 'UTF8')")),
        };
        self.exec(begin).await;
        let now = Utc::now().timestamp_micros();
        self.exec(&format!(
            "UPDATE change_counter SET seq = seq + 1, \
             last_time = CASE WHEN last_time > {now} THEN last_time ELSE {now} END WHERE id = 1"
        ))
        .await;
        self.exec(&format!(
            "INSERT INTO record_versions (record_id, version, seq, deleted, schema_id, \
             schema_version, document, record, resources, acl, source_id, provenance, \
             content_hash, changed_at) \
             SELECT v.record_id, v.version + 1, c.seq, v.deleted, v.schema_id, v.schema_version, \
             {doc}, v.record, v.resources, v.acl, v.source_id, v.provenance, \
             'late' || v.content_hash, c.last_time \
             FROM records r JOIN record_versions v \
             ON v.record_id = r.record_id AND v.version = r.version \
             CROSS JOIN change_counter c WHERE r.record_id = '{id}' AND c.id = 1"
        ))
        .await;
        self.exec(&format!(
            "UPDATE records SET version = version + 1, \
             seq = (SELECT seq FROM change_counter WHERE id = 1), \
             changed_at = (SELECT last_time FROM change_counter WHERE id = 1), \
             content_hash = 'late' || content_hash, input_hash = NULL \
             WHERE record_id = '{id}'"
        ))
        .await;
        DateTime::from_timestamp_micros(self.last_time().await).expect("change time")
    }
}

/// A whole ListRecords list: its responseDate and each record's title by
/// OAI identifier (in list order; the book format has one title).
struct Listing {
    response_date: String,
    titles: Vec<(String, String)>,
}

async fn list_records(oai: &Oai, query: &str) -> Listing {
    let mut page = oai.get(query).await;
    assert_eq!(page.status, axum::http::StatusCode::OK);
    let response_date = texts(&page.body, "responseDate").remove(0);
    let mut titles = Vec::new();
    if error_code(&page.body).as_deref() == Some("noRecordsMatch") {
        return Listing {
            response_date,
            titles,
        };
    }
    loop {
        assert_eq!(error_code(&page.body), None, "{}", page.body);
        let headers = headers_of(&page.body);
        let page_titles = texts(&page.body, "title");
        assert_eq!(headers.len(), page_titles.len(), "{}", page.body);
        titles.extend(headers.into_iter().map(|h| h.identifier).zip(page_titles));
        match token_of(&page.body) {
            Some((token, ..)) if !token.is_empty() => {
                page = oai
                    .get(&format!("verb=ListRecords&resumptionToken={token}"))
                    .await;
            }
            _ => {
                return Listing {
                    response_date,
                    titles,
                };
            }
        }
    }
}

/// Sleeps until the wall clock is at least one whole second past `t`.
async fn past_the_second_of(t: DateTime<Utc>) {
    let next = DateTime::from_timestamp(t.timestamp() + 1, 0).expect("time");
    let wait = (next - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
}

async fn late_commit_is_not_missed(db: TestDb) {
    let store = db.store.clone();
    put_book_schema(&store).await;
    for (id, title) in [("b1", "Early"), ("b2", "Two"), ("b3", "Three")] {
        put(&store, book(id, title)).await;
    }
    let oai = Arc::new(Oai::new(store.clone(), config(2)).await);

    // The harvester's first, full harvest.
    let first = list_records(&oai, "verb=ListRecords&metadataPrefix=book").await;
    assert_eq!(first.titles.len(), 3);
    let mut latest: BTreeMap<String, String> = first.titles.into_iter().collect();
    assert_eq!(latest[&oai_id("b1")], "Early");

    // A writer stamps a new version of b1 and stalls before committing.
    let mut writer = Raw::connect(&db).await;
    let late = book("b1", "Late");
    let stamped = writer.begin_late_update("b1", &late.document).await;

    // A second later, the harvester asks for what changed since its first
    // harvest.
    past_the_second_of(stamped).await;
    let pending = tokio::spawn({
        let oai = oai.clone();
        let query = format!(
            "verb=ListRecords&metadataPrefix=book&from={}",
            first.response_date
        );
        async move { list_records(&oai, &query).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answered_while_open = pending.is_finished();
    writer.exec("COMMIT").await;
    let second = pending.await.expect("second harvest");
    eprintln!(
        "change stamped {}, committed after the list was requested; the list {} \
         while the writer was open and says responseDate {}",
        seconds(stamped),
        if answered_while_open {
            "was answered"
        } else {
            "waited"
        },
        second.response_date
    );

    // The version really committed late: stamped before the responseDate
    // of a list requested while it was uncommitted.
    let rec = store
        .get_record(&rid("b1"), None)
        .await
        .expect("get")
        .expect("b1");
    assert_eq!(rec.version, 2);
    assert_eq!(rec.changed_at, stamped);
    assert!(
        seconds(rec.changed_at) < second.response_date,
        "the scenario needs a change time before the responseDate"
    );

    // The harvester continues from each responseDate; the late version
    // must turn up.
    latest.extend(second.titles);
    let third = list_records(
        &oai,
        &format!(
            "verb=ListRecords&metadataPrefix=book&from={}",
            second.response_date
        ),
    )
    .await;
    latest.extend(third.titles);
    assert_eq!(
        latest[&oai_id("b1")],
        "Late",
        "the late commit of b1 was missed"
    );
    assert_eq!(latest[&oai_id("b2")], "Two");
    assert_eq!(latest.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_commit_is_not_missed_on_sqlite() {
    late_commit_is_not_missed(TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_commit_is_not_missed_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    late_commit_is_not_missed(db).await;
}
