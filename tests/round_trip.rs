//! Round trip (issue 5): Sheaf harvests the `/oai` of a second Sheaf
//! instance and ends with the same records, versions' content and
//! tombstones; an incremental harvest after changes picks up exactly them.
//!
//! Instance A is a store with records written through the store, served by
//! `sheaf_oai::router` on a real TCP listener; instance B is a fresh store
//! harvesting it with `sheaf_harvest::run::harvest`. Both run on SQLite, and
//! both on PostgreSQL.
//!
//! What "the same content" means, byte for byte: B stores the document A
//! serves inside `<metadata>`, made standalone by the harvester — an XML
//! declaration in front, and every namespace binding in scope in A's
//! envelope re-declared on the root (for an `oai_dc` document that declares
//! its own `xsi`, that is only the envelope's default namespace). A's
//! endpoint drops a stored document's prolog and trailing whitespace.
//! [`as_harvested`] spells that mapping out and B's documents must equal it
//! exactly.
//!
//! Tombstones: a record B held and A then deleted is a tombstone on B. A
//! record A deleted before B ever saw it live has no tombstone on B — the
//! harvest counts the deletion, but a tombstone is a version of a stored
//! record (it keeps the record's schema and last document), and B has none.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use sheaf_domain::model::{
    Expect, HarvestRun, Provenance, RecordVersion, RecordWrite, RunCounts, RunStatus, Source,
};
use sheaf_domain::{RecordId, SchemaId, SourceId};
use sheaf_harvest::config::{ResourceIdRule, SourceConfig};
use sheaf_harvest::register::record_id;
use sheaf_harvest::run::{NoProgress, RunOptions, harvest};
use sheaf_oai::OaiConfig;
use sheaf_store::testing::TestDb;
use sheaf_store::{DynStore, RecordFilter};
use sheaf_validate::{Limits, Registry};
use tokio_util::sync::CancellationToken;

/// A's repository identifier: its OAI identifiers are `oai:{REPO}:{id}`.
const REPO: &str = "a.example.org";
const OAI_NS: &str = "http://www.openarchives.org/OAI/2.0/";
const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

fn rid(s: &str) -> RecordId {
    RecordId::parse(s).expect("record id")
}

fn oai_dc() -> SchemaId {
    SchemaId::parse("oai_dc").expect("schema id")
}

/// An `oai_dc` document as a depositor would send it: declaration,
/// trailing newline, escaped and non-ASCII text.
fn dc_document(id: &str, title: &str) -> Vec<u8> {
    format!(
        "{XML_DECL}<oai_dc:dc xmlns:oai_dc=\"http://www.openarchives.org/OAI/2.0/oai_dc/\" \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xsi:schemaLocation=\"http://www.openarchives.org/OAI/2.0/oai_dc/ http://www.openarchives.org/OAI/2.0/oai_dc.xsd\">\n  \
         <dc:title>{}</dc:title>\n  <dc:creator>Doe, Jane</dc:creator>\n  \
         <dc:identifier>https://data.example.org/{id}</dc:identifier>\n  \
         <dc:identifier>urn:sheaf:test:{id}</dc:identifier>\n</oai_dc:dc>\n",
        quick_escape(title)
    )
    .into_bytes()
}

fn quick_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A record deposited on A (no source).
fn deposit(id: &str, title: &str) -> RecordWrite {
    RecordWrite {
        id: rid(id),
        schema_id: oai_dc(),
        schema_version: 1,
        document: dc_document(id, title),
        record: json!({"titles": [{"value": title}]}),
        resources: vec![format!("https://data.example.org/{id}")],
        acl: Vec::new(),
        source_id: None,
        provenance: None,
    }
}

/// A record A harvested itself from source `up`, in upstream `sets`.
fn harvested_by_a(id: &str, title: &str, sets: &[&str]) -> RecordWrite {
    let provenance: Provenance = serde_json::from_value(json!({
        "harvestTime": "2024-05-06T07:08:09Z",
        "baseUrl": "https://upstream.example.org/oai",
        "oaiIdentifier": format!("oai:upstream.example.org:{id}"),
        "datestamp": "2024-05-01T00:00:00Z",
        "metadataNamespace": "http://www.openarchives.org/OAI/2.0/oai_dc/",
        "setSpecs": sets,
    }))
    .expect("provenance");
    RecordWrite {
        source_id: Some(SourceId::parse("up").expect("source id")),
        provenance: Some(provenance),
        ..deposit(id, title)
    }
}

/// The document B must hold for a document A stores (see the module docs).
fn as_harvested(stored: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(stored).expect("utf-8");
    let body = text
        .strip_prefix(XML_DECL)
        .expect("A's documents start with the declaration")
        .trim_end();
    let root_end = body.find('>').expect("root start tag");
    format!(
        "{XML_DECL}{} xmlns=\"{OAI_NS}\"{}",
        &body[..root_end],
        &body[root_end..]
    )
    .into_bytes()
}

/// A's `/oai` on 127.0.0.1; small pages so lists are split.
async fn serve(store: DynStore) -> (String, tokio::task::JoinHandle<()>) {
    let config = OaiConfig {
        repository_name: "Instance A".into(),
        admin_email: "a@example.org".into(),
        repository_identifier: REPO.into(),
        public_base_url: None,
        page_size: 3,
        ..OaiConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/oai", listener.local_addr().expect("addr"));
    let app = sheaf_oai::router(store, config).expect("valid [oai] config");
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (url, server)
}

/// Every record of a store, current version, tombstones included, by id.
async fn all_records(store: &DynStore) -> BTreeMap<String, RecordVersion> {
    let filter = RecordFilter {
        include_deleted: true,
        ..RecordFilter::default()
    };
    let (records, total) = store
        .list_records(&filter, 0, 10_000)
        .await
        .expect("list records");
    assert_eq!(records.len() as i64, total);
    records
        .into_iter()
        .map(|r| (r.id.as_str().to_owned(), r))
        .collect()
}

/// B's id of one of A's records.
fn b_id(source: &SourceId, a_id: &str) -> String {
    record_id(source, &format!("oai:{REPO}:{a_id}"))
        .expect("record id")
        .as_str()
        .to_owned()
}

/// Asserts that B holds exactly A's records: every live one with the
/// harvested form of its document, its resources and its upstream sets,
/// every tombstone as a tombstone — except the tombstones of `never_held`,
/// records deleted on A before B ever saw them live: the harvest counts
/// their deletion but B has no version of them to delete (a tombstone
/// carries its record's schema and last document), so B holds nothing.
async fn assert_mirrors(a: &DynStore, b: &DynStore, source: &SourceId, never_held: &[&str]) {
    let a_all = all_records(a).await;
    let b_all = all_records(b).await;
    for id in never_held {
        assert!(a_all[*id].deleted, "{id} is a tombstone on A");
    }
    let mut expected: Vec<String> = a_all
        .keys()
        .filter(|id| !never_held.contains(&id.as_str()))
        .map(|id| b_id(source, id))
        .collect();
    expected.sort();
    let got: Vec<String> = b_all.keys().cloned().collect();
    assert_eq!(got, expected, "B holds A's records, no more");
    for (id, ra) in a_all
        .iter()
        .filter(|(id, _)| !never_held.contains(&id.as_str()))
    {
        let rb = &b_all[&b_id(source, id)];
        assert_eq!(rb.deleted, ra.deleted, "{id}: deleted");
        assert_eq!(rb.source_id.as_ref(), Some(source), "{id}: source");
        if ra.deleted {
            continue;
        }
        assert_eq!(rb.schema_id, oai_dc(), "{id}: schema");
        assert_eq!(
            String::from_utf8_lossy(&rb.document),
            String::from_utf8_lossy(&as_harvested(&ra.document)),
            "{id}: document"
        );
        assert_eq!(rb.resources, ra.resources, "{id}: resources");
        let p = rb.provenance.as_ref().expect("provenance");
        assert_eq!(p.oai_identifier, format!("oai:{REPO}:{id}"));
        assert_eq!(
            p.datestamp,
            ra.changed_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "{id}: upstream datestamp is A's change time"
        );
        let mut sets = vec!["schema:oai_dc".to_owned()];
        if let Some(src) = &ra.source_id {
            sets.push(format!("source:{src}"));
            for s in &ra.provenance.as_ref().expect("A's provenance").set_specs {
                sets.push(format!("source:{src}:{s}"));
            }
        }
        let mut got_sets = p.set_specs.clone();
        got_sets.sort();
        sets.sort();
        assert_eq!(got_sets, sets, "{id}: sets");
    }
}

/// Waits until the wall clock is in a later second than now, so that a
/// harvest's responseDate (whole seconds) lies after every change so far
/// and the next incremental harvest's `from` re-lists none of them.
async fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let wait = Duration::from_micros(1_000_000 - u64::from(now.subsec_micros()));
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
}

fn assert_counts(run: &HarvestRun, expected: RunCounts) {
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert!(run.counts.balanced(), "{:?}", run.counts);
    assert_eq!(run.counts, expected);
}

async fn round_trip(a_db: TestDb, b_db: TestDb) {
    let a = a_db.store.clone();
    let b = b_db.store.clone();
    for store in [&a, &b] {
        Registry::new(store.clone(), Limits::default())
            .ensure_builtins()
            .await
            .expect("oai_dc schema");
    }
    a.upsert_source(&Source {
        id: SourceId::parse("up").expect("source id"),
        base_url: "https://upstream.example.org/oai".into(),
        enabled: true,
        config: json!({"name": "Upstream"}),
        updated_at: "2024-05-06T07:08:09Z".parse().expect("time"),
    })
    .await
    .expect("source");

    // A: seven records, two of them at version 2 and 3, two deleted.
    let put = |w: RecordWrite| {
        let a = a.clone();
        async move { a.put_record(w, Expect::Any).await.expect("put") }
    };
    put(deposit("r1", "One")).await;
    put(deposit("r2", "Two")).await;
    put(deposit("r2", "Two, revised")).await;
    put(deposit("r3", "Three & more <things>")).await;
    put(deposit("r4", "Four — fünf")).await;
    put(harvested_by_a("h1", "Harvested one", &["physics"])).await;
    put(harvested_by_a(
        "h1",
        "Harvested one, again",
        &["physics", "math"],
    ))
    .await;
    put(harvested_by_a(
        "h1",
        "Harvested one, thrice",
        &["physics", "math"],
    ))
    .await;
    put(harvested_by_a("h2", "Harvested two", &["math"])).await;
    put(deposit("gone", "Deleted before any harvest")).await;
    for id in ["r4", "gone"] {
        a.delete_record(&rid(id), Expect::Any, None)
            .await
            .expect("delete");
    }
    let h1 = a.get_record(&rid("h1"), None).await.expect("get");
    assert_eq!(h1.expect("h1").version, 3);
    let (url, server) = serve(a.clone()).await;

    // B: a source on A's /oai.
    let source = SourceId::parse("a").expect("source id");
    let mut cfg = SourceConfig::new(
        source.clone(),
        url::Url::parse(&url).expect("url"),
        "oai_dc",
    );
    cfg.resource_id = ResourceIdRule::XPath("//dc:identifier[url]".into());
    cfg.retry.max_attempts = 1;
    let registry = Registry::new(b.clone(), Limits::default());
    let stop = CancellationToken::new();
    let run = async |options: RunOptions, what: &str| {
        harvest(&registry, &cfg, &options, &stop, &NoProgress)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    };

    next_second().await;
    let first = run(RunOptions::default(), "first harvest").await;
    assert_counts(
        &first,
        RunCounts {
            seen: 7,
            created: 5,
            deleted: 2,
            ..RunCounts::default()
        },
    );
    assert_mirrors(&a, &b, &source, &["r4", "gone"]).await;

    // Changes on A: one update, one deletion, one new record, one
    // resurrection, and a write that changes nothing. (Each harvest starts
    // in a later wall-clock second than the changes before it, so the
    // next one's `from`, a whole second, re-lists none of them and the
    // counts are exact; within one second a re-listing is allowed.)
    put(deposit("r1", "One, revised")).await;
    a.delete_record(&rid("h2"), Expect::Any, None)
        .await
        .expect("delete");
    put(deposit("r5", "Five")).await;
    a.resurrect_record(&rid("r4"), Expect::Any)
        .await
        .expect("resurrect");
    put(deposit("r3", "Three & more <things>")).await;

    next_second().await;
    let second = run(RunOptions::default(), "incremental harvest").await;
    assert_counts(
        &second,
        RunCounts {
            seen: 4,
            // r5, and r4, which B never held live.
            created: 2,
            updated: 1,
            deleted: 1,
            ..RunCounts::default()
        },
    );
    assert_eq!(
        second.window_from.as_deref(),
        first.response_date.as_deref(),
        "the incremental harvest starts at the previous responseDate"
    );
    assert_mirrors(&a, &b, &source, &["gone"]).await;
    let r1 = b
        .record_versions(&rid(&b_id(&source, "r1")))
        .await
        .expect("versions");
    assert_eq!(r1.len(), 2, "r1: one version per change seen");

    // Nothing changed: the next incremental harvest finds nothing.
    let third = run(RunOptions::default(), "empty harvest").await;
    assert_counts(&third, RunCounts::default());

    // A full re-harvest finds every live record unchanged and writes
    // nothing; each upstream deletion still counts as one.
    let fourth = run(RunOptions::full(), "full harvest").await;
    assert_counts(
        &fourth,
        RunCounts {
            seen: 8,
            unchanged: 6,
            deleted: 2,
            ..RunCounts::default()
        },
    );
    let h2 = b
        .record_versions(&rid(&b_id(&source, "h2")))
        .await
        .expect("versions");
    assert_eq!(h2.len(), 2, "h2: live, then one tombstone");
    assert_mirrors(&a, &b, &source, &["gone"]).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_trip_on_sqlite() {
    round_trip(TestDb::sqlite().await, TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_trip_on_postgres() {
    let (Some(a), Some(b)) = (TestDb::postgres().await, TestDb::postgres().await) else {
        return;
    };
    round_trip(a, b).await;
}
