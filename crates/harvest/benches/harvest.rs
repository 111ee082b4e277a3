//! End-to-end harvest throughput: an in-process provider (axum on
//! 127.0.0.1) serves pages of 500 oai_dc records rendered from a
//! pre-rendered page template; Sheaf harvests N records (default
//! 1 000 000) into a fresh SQLite file with validation on, then harvests
//! the same, unchanged records again. Prints records/s of both runs, the
//! second run's speed-up and the process's peak RSS (VmHWM, provider
//! included).
//!
//! `cargo bench -p sheaf-harvest --bench harvest`; environment:
//! `SHEAF_BENCH_RECORDS` (record count, a multiple of 500 is exact).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use sheaf_domain::SourceId;
use sheaf_domain::model::{HarvestRun, RunStatus};
use sheaf_harvest::config::{ResourceIdRule, SourceConfig};
use sheaf_harvest::run::{NoProgress, RunOptions, harvest};
use sheaf_store::DatabaseUrl;
use sheaf_validate::{Limits, Registry};
use tokio_util::sync::CancellationToken;
use url::Url;

const PAGE: usize = 500;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // The daemon's runtime, so that memory is measured as it runs.
    let rt = sheaf_harvest::run::runtime().expect("runtime");
    rt.block_on(run());
}

/// A page as fixed text with holes for the record number: rendering a
/// page is copying the pieces and writing numbers, so the provider costs
/// next to nothing and holds no pages in memory.
struct Template {
    head: String,
    /// Pieces of one record, between which its number goes.
    record: Vec<&'static str>,
    tail: &'static str,
}

const RECORD: &str = "<record><header><identifier>oai:bench.example.org:#</identifier>\
    <datestamp>2026-01-01T00:00:00Z</datestamp><setSpec>bench</setSpec></header><metadata>\
    <oai_dc:dc xmlns:oai_dc=\"http://www.openarchives.org/OAI/2.0/oai_dc/\" \
    xmlns:dc=\"http://purl.org/dc/elements/1.1/\" \
    xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
    xsi:schemaLocation=\"http://www.openarchives.org/OAI/2.0/oai_dc/ http://www.openarchives.org/OAI/2.0/oai_dc.xsd\">\
    <dc:title>A study of harvested record number #</dc:title>\
    <dc:creator>Doe, Jane</dc:creator><dc:creator>Roe, Richard</dc:creator>\
    <dc:subject>Metadata</dc:subject><dc:subject>Benchmarks</dc:subject>\
    <dc:description>Record # of the harvest benchmark: a paragraph of description text \
    of typical length, so that documents weigh what real Dublin Core records weigh.</dc:description>\
    <dc:publisher>Bench University Press</dc:publisher><dc:date>2026-01-01</dc:date>\
    <dc:type>Text</dc:type><dc:format>application/pdf</dc:format>\
    <dc:identifier>https://bench.example.org/item/#</dc:identifier>\
    <dc:identifier>urn:nbn:bench:#</dc:identifier><dc:language>en</dc:language>\
    <dc:rights>CC BY 4.0</dc:rights></oai_dc:dc></metadata></record>";

struct Provider {
    template: Template,
    records: usize,
}

impl Provider {
    fn page(&self, offset: usize) -> String {
        let end = (offset + PAGE).min(self.records);
        let mut body = String::with_capacity(PAGE * (RECORD.len() + 64) + 512);
        body.push_str(&self.template.head);
        let mut n = itoa_buf();
        for i in offset..end {
            let num = fmt_num(&mut n, i);
            let mut pieces = self.template.record.iter();
            if let Some(first) = pieces.next() {
                body.push_str(first);
            }
            for p in pieces {
                body.push_str(num);
                body.push_str(p);
            }
        }
        if end < self.records {
            body.push_str(&format!(
                "<resumptionToken completeListSize=\"{}\" cursor=\"{offset}\">{end}</resumptionToken>",
                self.records
            ));
        } else {
            body.push_str(&format!(
                "<resumptionToken completeListSize=\"{}\" cursor=\"{offset}\"/>",
                self.records
            ));
        }
        body.push_str(self.template.tail);
        body
    }
}

fn itoa_buf() -> String {
    String::with_capacity(20)
}

fn fmt_num(buf: &mut String, n: usize) -> &str {
    use std::fmt::Write;
    buf.clear();
    let _ = write!(buf, "{n}");
    buf.as_str()
}

const IDENTIFY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
    <OAI-PMH xmlns=\"http://www.openarchives.org/OAI/2.0/\"><responseDate>2026-06-01T12:00:00Z</responseDate>\
    <request verb=\"Identify\">http://127.0.0.1/oai</request><Identify><repositoryName>Bench</repositoryName>\
    <baseURL>http://127.0.0.1/oai</baseURL><protocolVersion>2.0</protocolVersion>\
    <adminEmail>bench@example.org</adminEmail><earliestDatestamp>2026-01-01T00:00:00Z</earliestDatestamp>\
    <deletedRecord>persistent</deletedRecord><granularity>YYYY-MM-DDThh:mm:ssZ</granularity></Identify></OAI-PMH>";

async fn handle(
    State(p): State<Arc<Provider>>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let body = match q.get("verb").map(String::as_str) {
        Some("Identify") => IDENTIFY.to_owned(),
        _ => {
            let offset = q
                .get("resumptionToken")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            p.page(offset)
        }
    };
    ([("content-type", "text/xml; charset=utf-8")], body)
}

async fn start_provider(records: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/oai", listener.local_addr().expect("addr"));
    let head = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
        <OAI-PMH xmlns=\"http://www.openarchives.org/OAI/2.0/\">\
        <responseDate>2026-06-01T12:00:00Z</responseDate>\
        <request verb=\"ListRecords\">http://127.0.0.1/oai</request><ListRecords>"
        .to_owned();
    let provider = Provider {
        template: Template {
            head,
            record: RECORD.split('#').collect(),
            tail: "</ListRecords></OAI-PMH>",
        },
        records,
    };
    let app = Router::new()
        .route("/oai", get(handle))
        .with_state(Arc::new(provider));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn report(label: &str, run: &HarvestRun, secs: f64) {
    let c = run.counts;
    println!(
        "{label}: {} records in {secs:.1} s = {:.0} records/s (created {}, updated {}, unchanged {}, rejected {}); peak RSS so far {:.1} MB",
        c.seen,
        c.seen as f64 / secs,
        c.created,
        c.updated,
        c.unchanged,
        c.rejected,
        peak_rss_mb().unwrap_or(f64::NAN)
    );
}

async fn run() {
    let records: usize = env_or("SHEAF_BENCH_RECORDS", 1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = DatabaseUrl::parse(&format!("sqlite:{}", dir.path().join("bench.db").display()))
        .expect("database URL");
    let store = sheaf_store::connect(&db).await.expect("connect");
    let registry = Registry::new(store.clone(), Limits::default());
    registry.ensure_builtins().await.expect("oai_dc schema");
    let url = start_provider(records).await;
    let mut cfg = SourceConfig::new(
        SourceId::parse("bench").expect("id"),
        Url::parse(&url).expect("url"),
        "oai_dc",
    );
    cfg.resource_id = ResourceIdRule::XPath("//dc:identifier[url]".into());
    println!(
        "harvesting {records} oai_dc records in pages of {PAGE} into SQLite, validation on (peak RSS at start {:.1} MB)",
        peak_rss_mb().unwrap_or(f64::NAN)
    );
    let stop = CancellationToken::new();

    let t = Instant::now();
    let first = harvest(&registry, &cfg, &RunOptions::default(), &stop, &NoProgress)
        .await
        .expect("first harvest");
    let first_secs = t.elapsed().as_secs_f64();
    assert_eq!(first.status, RunStatus::Succeeded);
    assert_eq!(first.counts.created as usize, records);
    report("first harvest ", &first, first_secs);

    let t = Instant::now();
    let full = RunOptions::full();
    let second = harvest(&registry, &cfg, &full, &stop, &NoProgress)
        .await
        .expect("second harvest");
    let second_secs = t.elapsed().as_secs_f64();
    assert_eq!(second.counts.unchanged as usize, records);
    report("second harvest", &second, second_secs);
    println!(
        "summary: {:.0} records/s first, {:.0} records/s unchanged, second run {:.1}x faster, peak RSS {:.1} MB",
        records as f64 / first_secs,
        records as f64 / second_secs,
        first_secs / second_secs,
        peak_rss_mb().unwrap_or(f64::NAN)
    );
}
