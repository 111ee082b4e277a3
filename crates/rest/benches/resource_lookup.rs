//! Benchmark: lookups by `resourceId` over HTTP against a store of many
//! records — the most frequent call in production.
//!
//! 1. Loads `SHEAF_BENCH_RECORDS` records (default 1 000 000), each
//!    describing its own resource, through the store's bulk path (harvest
//!    pages committed with their checkpoint, 5 000 records a transaction).
//! 2. Serves the REST face on a real listener on 127.0.0.1.
//! 3. Drives `GET /api/v2/metadata?resourceId=…` for random resources with
//!    `wrk` when it is installed (`SHEAF_BENCH_LOADGEN=builtin` forces the
//!    built-in generator: tokio tasks with reqwest, one connection each).
//!
//! Run: `cargo bench -p sheaf-rest --bench resource_lookup`. Environment:
//! `SHEAF_BENCH_RECORDS`, `SHEAF_BENCH_CONNECTIONS` (default 16; on 2 cores throughput
//! peaks between 8 and 16 and falls at 32, where wrk and the server's
//! threads crowd the cores),
//! `SHEAF_BENCH_SECONDS` (default 20), `SHEAF_BENCH_POSTGRES=1` to use the
//! server in `SHEAF_TEST_POSTGRES_URL` instead of SQLite. Targets: at least
//! 20 000 requests/s with p99 under 10 ms on 2 cores, generator included.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use sheaf_domain::model::{Expect, PageItem, RecordWrite, RunStatus, SchemaKind, Source};
use sheaf_domain::{RecordId, SchemaId, SourceId};
use sheaf_store::DynStore;
use sheaf_store::testing::TestDb;
use sheaf_validate::{Limits, Registry, SchemaRequest};

const SCHEMA: &str = r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:bench" elementFormDefault="qualified">
  <xs:element name="metadata"><xs:complexType><xs:sequence>
    <xs:element name="title" type="xs:string"/>
  </xs:sequence></xs:complexType></xs:element>
</xs:schema>"#;

const PAGE: usize = 5_000;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn resource(i: u64) -> String {
    format!("https://repo.example.org/resource/{i}")
}

async fn load(store: &DynStore, registry: &Registry, records: u64) {
    registry
        .register(
            SchemaRequest {
                schema_id: SchemaId::parse("bench").expect("schema id"),
                kind: SchemaKind::Xsd,
                document: SCHEMA.as_bytes().to_vec(),
                metadata_prefix: None,
                record: json!({"titles": [{"value": "Bench schema"}]}),
            },
            Expect::Absent,
        )
        .await
        .expect("schema");
    let source = SourceId::parse("bench").expect("source id");
    store
        .upsert_source(&Source {
            id: source.clone(),
            base_url: "http://provider.test/oai".into(),
            enabled: true,
            config: json!({}),
            updated_at: chrono::Utc::now(),
        })
        .await
        .expect("source");
    let run = store.start_run(&source, None, None).await.expect("run");
    let started = Instant::now();
    let mut i = 0u64;
    while i < records {
        let end = (i + PAGE as u64).min(records);
        let items: Vec<PageItem> = (i..end)
            .map(|n| {
                PageItem::put(RecordWrite {
                    id: RecordId::parse(format!("bench:oai:repo:{n}")).expect("id"),
                    schema_id: SchemaId::parse("bench").expect("schema id"),
                    schema_version: 1,
                    document: format!(
                        "<metadata xmlns=\"urn:bench\"><title>Record {n}</title></metadata>"
                    )
                    .into_bytes(),
                    record: json!({"titles": [{"value": format!("Record {n}")}]}),
                    resources: vec![resource(n)],
                    acl: Vec::new(),
                    source_id: Some(source.clone()),
                    provenance: None,
                })
            })
            .collect();
        store
            .commit_page(run.id, items, Some(json!({"next": end})), None)
            .await
            .expect("page");
        i = end;
        if i.is_multiple_of(100_000) || i == records {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "loaded {i} records in {secs:.1} s ({:.0} records/s)",
                i as f64 / secs
            );
        }
    }
    store
        .finish_run(run.id, RunStatus::Succeeded, None)
        .await
        .expect("finish");
}

/// One request, checked: 200 and exactly the one record.
async fn check(client: &reqwest::Client, base: &str, i: u64) {
    let url = format!(
        "{base}/api/v2/metadata?resourceId={}",
        url::form_urlencoded::byte_serialize(resource(i).as_bytes()).collect::<String>()
    );
    let res = client.get(&url).send().await.expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok()),
        Some("0-0/1")
    );
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body[0]["id"], format!("bench:oai:repo:{i}"));
}

struct Figures {
    requests: u64,
    errors: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn wrk(base: &str, records: u64, connections: u64, seconds: u64) -> Option<Figures> {
    let script = tempfile_script(records)?;
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
            script.to_str()?,
            base,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}");
    let number = |line_start: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    let ms = |v: &str| -> Option<f64> {
        if let Some(us) = v.strip_suffix("us") {
            us.parse::<f64>().ok().map(|x| x / 1000.0)
        } else if let Some(ms) = v.strip_suffix("ms") {
            ms.parse().ok()
        } else {
            v.strip_suffix('s')?.parse::<f64>().ok().map(|x| x * 1000.0)
        }
    };
    let requests: u64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())?;
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let rps: f64 = number("Requests/sec:")?.parse().ok()?;
    let _ = std::fs::remove_file(&script);
    Some(Figures {
        requests,
        errors,
        seconds: requests as f64 / rps,
        p50_ms: ms(number("50%")?)?,
        p99_ms: ms(number("99%")?)?,
    })
}

fn tempfile_script(records: u64) -> Option<std::path::PathBuf> {
    let path = std::env::temp_dir().join(format!("sheaf-bench-{}.lua", std::process::id()));
    let mut f = std::fs::File::create(&path).ok()?;
    write!(
        f,
        "math.randomseed(os.time())\n\
         request = function()\n\
           local i = math.random(0, {})\n\
           return wrk.format(\"GET\", \"/api/v2/metadata?resourceId=https%3A%2F%2Frepo.example.org%2Fresource%2F\" .. i)\n\
         end\n",
        records - 1
    )
    .ok()?;
    Some(path)
}

async fn builtin(base: &str, records: u64, connections: u64, seconds: u64) -> Figures {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut latencies: Vec<u32> = Vec::new();
            let mut errors = 0u64;
            let mut x = c.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            while Instant::now() < deadline {
                // xorshift: cheap, good enough to spread the lookups.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let url = format!(
                    "{base}/api/v2/metadata?resourceId=https%3A%2F%2Frepo.example.org%2Fresource%2F{}",
                    x % records
                );
                let t = Instant::now();
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                    }
                    _ => errors += 1,
                }
                latencies.push(t.elapsed().as_micros() as u32);
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("task");
        all.extend(l);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Figures {
        requests: all.len() as u64,
        errors,
        seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

fn main() {
    let records = env_number("SHEAF_BENCH_RECORDS", 1_000_000).max(1);
    let connections = env_number("SHEAF_BENCH_CONNECTIONS", 16).max(1);
    let seconds = env_number("SHEAF_BENCH_SECONDS", 20).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let db = if std::env::var_os("SHEAF_BENCH_POSTGRES").is_some() {
            TestDb::postgres().await.expect("SHEAF_TEST_POSTGRES_URL must name a server")
        } else {
            TestDb::sqlite().await
        };
        let store = db.store.clone();
        eprintln!("backend: {}", store.backend().name());
        let registry = Registry::new(store.clone(), Limits::default());
        load(&store, &registry, records).await;

        let app = sheaf_rest::router(registry, sheaf_rest::RestConfig::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let client = reqwest::Client::new();
        for i in [0, records / 2, records - 1] {
            check(&client, &base, i).await;
        }
        let use_wrk = std::env::var("SHEAF_BENCH_LOADGEN").as_deref() != Ok("builtin")
            && Command::new("wrk").arg("--version").output().is_ok();
        // A short warm-up fills the page cache and the statement caches.
        let _ = builtin(&base, records, connections, 2).await;
        let (generator, figures) = if use_wrk {
            let base = base.clone();
            let f = tokio::task::spawn_blocking(move || wrk(&base, records, connections, seconds))
                .await
                .expect("wrk task")
                .expect("wrk output");
            ("wrk -t1", f)
        } else {
            ("built-in (reqwest)", builtin(&base, records, connections, seconds).await)
        };
        server.abort();
        let rps = figures.requests as f64 / figures.seconds;
        println!(
            "resourceId lookups: {records} records on {}, {generator}, {connections} connections, {:.1} s: \
             {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            store.backend().name(),
            figures.seconds,
            rps,
            figures.p50_ms,
            figures.p99_ms,
            figures.errors
        );
        let ok = rps >= 20_000.0 && figures.p99_ms < 10.0 && figures.errors == 0;
        println!(
            "target (>= 20000 requests/s, p99 < 10 ms, no errors): {}",
            if ok { "met" } else { "NOT met" }
        );
        drop(db);
    });
}
