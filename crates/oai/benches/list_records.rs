//! ListRecords over a large repository: loads N records (default
//! 1 000 000) into a fresh SQLite file — or into the empty PostgreSQL
//! database named by `SHEAF_BENCH_POSTGRES_URL` — then follows one full
//! ListRecords list with pages of 500 and prints records/s and what page 1
//! (the list start, which counts the list once), page 2, page 1 000 and
//! page 2 000 cost.
//!
//! `cargo bench -p sheaf-oai --bench list_records`; environment:
//! `SHEAF_BENCH_RECORDS` (record count), `SHEAF_BENCH_PREFIX` (`book`, the
//! stored documents, or `oai_dc`, the crosswalk), `SHEAF_BENCH_POSTGRES_URL`,
//! `SHEAF_BENCH_SQLITE` (a database file kept between runs: loaded once,
//! reused while it has records).

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use chrono::Utc;
use futures_util::StreamExt;
use serde_json::json;
use sheaf_domain::model::{
    Expect, NewSchema, PageItem, Provenance, RecordWrite, RunStatus, SchemaKind, Source,
};
use sheaf_domain::{RecordId, SchemaId, SourceId};
use sheaf_oai::OaiConfig;
use sheaf_store::{ChangeQuery, DatabaseUrl, DynStore};
use tower::ServiceExt;

const PAGE: usize = 500;
const BATCH: usize = 5_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let records: usize = env_or("SHEAF_BENCH_RECORDS", 1_000_000);
    let prefix: String = env_or("SHEAF_BENCH_PREFIX", "book".to_owned());
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match (
        std::env::var("SHEAF_BENCH_POSTGRES_URL"),
        std::env::var("SHEAF_BENCH_SQLITE"),
    ) {
        (Ok(u), _) => u,
        (_, Ok(path)) => format!("sqlite:{path}"),
        _ => format!("sqlite:{}", dir.path().join("bench.db").display()),
    };
    let url = DatabaseUrl::parse(&url).expect("database URL");
    let store = sheaf_store::connect(&url).await.expect("connect");
    let h = store.horizon().await.expect("horizon");
    let records = if h.seq == 0 {
        let t = Instant::now();
        load(&store, records).await;
        let load = t.elapsed();
        println!(
            "loaded {records} records in {:.1} s ({:.0} records/s)",
            load.as_secs_f64(),
            records as f64 / load.as_secs_f64()
        );
        records
    } else {
        let all = ChangeQuery {
            horizon_seq: h.seq,
            ..ChangeQuery::default()
        };
        store.count_changes(&all).await.expect("count") as usize
    };
    println!(
        "backend: {:?}, records: {records}, prefix: {prefix}",
        store.backend()
    );
    store_only(&store).await;

    let app = sheaf_oai::router(
        store.clone(),
        OaiConfig {
            repository_identifier: "bench.example.org".into(),
            public_base_url: Some("https://bench.example.org".into()),
            page_size: PAGE,
            ..OaiConfig::default()
        },
    )
    .expect("valid [oai] config");
    let first_query = format!("verb=ListRecords&metadataPrefix={prefix}");
    let mut query = first_query.clone();
    let mut times: Vec<Duration> = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut served = 0usize;
    let mut bytes = 0usize;
    let all = Instant::now();
    loop {
        let t = Instant::now();
        let body = get(&app, &query).await;
        times.push(t.elapsed());
        bytes += body.len();
        served += body.matches("<record>").count();
        let token = token(&body);
        match token {
            Some(tok) if !tok.is_empty() => {
                query = format!("verb=ListRecords&resumptionToken={tok}");
                tokens.push(query.clone());
            }
            _ => break,
        }
    }
    let total = all.elapsed();
    assert_eq!(served, records, "the list serves every record once");
    println!(
        "full traversal: {served} records in {} pages, {:.1} s, {:.0} records/s, {:.0} MB/s",
        times.len(),
        total.as_secs_f64(),
        served as f64 / total.as_secs_f64(),
        bytes as f64 / 1e6 / total.as_secs_f64()
    );
    let mut sorted = times.clone();
    sorted.sort();
    println!("page median: {:.1} ms", ms(sorted[sorted.len() / 2]));

    // Page costs, best of five (pages are idempotent, so re-request them).
    let best = |q: String| {
        let app = app.clone();
        async move {
            let mut best = Duration::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                get(&app, &q).await;
                best = best.min(t.elapsed());
            }
            best
        }
    };
    let p1 = best(first_query).await;
    println!(
        "page 1 (list start, with completeListSize count): {:.1} ms",
        ms(p1)
    );
    for n in [2usize, 1000, 2000] {
        if let Some(q) = tokens.get(n - 2) {
            let p = best(q.clone()).await;
            println!(
                "page {n}: {:.1} ms ({:.2}x page 1)",
                ms(p),
                p.as_secs_f64() / p1.as_secs_f64()
            );
        }
    }
}

/// The store's share: the same keyset pages read and decoded, not rendered.
async fn store_only(store: &DynStore) {
    let h = store.horizon().await.expect("horizon");
    let t = Instant::now();
    let (mut after, mut n) = (0, 0usize);
    loop {
        let mut rows = store.changes_stream(ChangeQuery {
            after_seq: after,
            horizon_seq: h.seq,
            metadata_prefix: Some("book".into()),
            limit: PAGE as i64,
            ..ChangeQuery::default()
        });
        let mut got = 0;
        while let Some(r) = rows.next().await {
            after = r.expect("row").seq;
            got += 1;
        }
        n += got;
        if got < PAGE {
            break;
        }
    }
    let d = t.elapsed();
    println!(
        "store only (change stream, decoded rows): {n} records in {:.1} s, {:.0} records/s",
        d.as_secs_f64(),
        n as f64 / d.as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn get(app: &Router, query: &str) -> String {
    let resp = app
        .clone()
        .oneshot(
            Request::get(format!("/oai?{query}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    String::from_utf8(body.to_vec()).expect("UTF-8")
}

/// The text of the resumptionToken element; `Some("")` when empty.
fn token(body: &str) -> Option<String> {
    let at = body.find("<resumptionToken")?;
    let rest = &body[at..];
    let close = rest.find('>')?;
    if rest[..close].ends_with('/') {
        return Some(String::new());
    }
    let end = rest.find("</resumptionToken>")?;
    Some(rest[close + 1..end].to_owned())
}

/// Loads records as the harvester does: pages committed with their run.
async fn load(store: &DynStore, records: usize) {
    let schema = SchemaId::parse("book").expect("id");
    store
        .put_schema(
            NewSchema {
                schema_id: schema.clone(),
                kind: SchemaKind::Xsd,
                namespace: Some("urn:sheaf:bench:book".into()),
                metadata_prefix: "book".into(),
                document: b"<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\"/>".to_vec(),
                record: json!({"titles": [{"value": "Books"}]}),
            },
            Expect::Any,
        )
        .await
        .expect("schema");
    let source = SourceId::parse("upstream").expect("id");
    store
        .upsert_source(&Source {
            id: source.clone(),
            base_url: "https://upstream.example.org/oai".into(),
            enabled: true,
            config: json!({}),
            updated_at: Utc::now(),
        })
        .await
        .expect("source");
    let run = store.start_run(&source, None, None).await.expect("run");
    let mut i = 0;
    while i < records {
        let n = BATCH.min(records - i);
        let items = (i..i + n)
            .map(|k| PageItem::put(record(k, &schema, &source)))
            .collect();
        store
            .commit_page(run.id, items, None, None)
            .await
            .expect("commit");
        i += n;
    }
    store
        .finish_run(run.id, RunStatus::Succeeded, None)
        .await
        .expect("finish");
}

/// A harvested record of about 1 KB: document, DataCite-style record and
/// provenance.
fn record(k: usize, schema: &SchemaId, source: &SourceId) -> RecordWrite {
    let id = format!("upstream:oai:upstream.example.org:{k:08}");
    RecordWrite {
        id: RecordId::parse(id).expect("id"),
        schema_id: schema.clone(),
        schema_version: 1,
        document: format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<book xmlns=\"urn:sheaf:bench:book\">\
             <title>Observations of sediment transport, series {k}</title>\
             <title>Beobachtungen zum Sedimenttransport, Reihe {k}</title>\
             <creator>Andersson, Maria</creator><creator>Okafor, Chinedu</creator>\
             <subject>hydrology</subject><subject>geomorphology</subject>\
             <description>Discharge, turbidity and grain-size distributions of sampling \
             campaign {k}, with the processing scripts used for the published figures.</description>\
             <identifier>https://data.example.org/{k}</identifier><year>2024</year></book>\n"
        )
        .into_bytes(),
        record: json!({
            "titles": [{"value": format!("Observations of sediment transport, series {k}")}],
            "creators": [{"familyName": "Andersson", "givenName": "Maria"}],
            "publisher": "Example University Press",
            "publicationYear": "2024",
            "subjects": [{"value": "hydrology"}],
        }),
        resources: Vec::new(),
        acl: Vec::new(),
        source_id: Some(source.clone()),
        provenance: Some(Provenance {
            harvest_time: Utc::now(),
            base_url: "https://upstream.example.org/oai".into(),
            oai_identifier: format!("oai:upstream.example.org:{k:08}"),
            datestamp: "2024-05-06T07:08:09Z".into(),
            metadata_namespace: Some("urn:sheaf:bench:book".into()),
            set_specs: Vec::new(),
        }),
    }
}
