//! Validation throughput: a typical 2 KB oai_dc record against oai_dc.xsd
//! and a JSON record against a 2020-12 schema, on one thread and on all
//! cores. Plain `std::time` measurement: `cargo bench -p sheaf-validate`.
//! Under `cargo test` (no `--bench` argument) each measurement runs only
//! briefly, as a smoke test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sheaf_domain::SchemaId;
use sheaf_domain::model::{Expect, SchemaKind, SchemaVersion};
use sheaf_validate::{Limits, Registry, SchemaRequest, validate_against_bundled};

const DC_RECORD: &[u8] = include_bytes!("../../../fixtures/validate/oai_dc-record.xml");
const JSON_SCHEMA: &[u8] = include_bytes!("../../../fixtures/validate/record-schema.json");
const JSON_RECORD: &[u8] = include_bytes!("../../../fixtures/validate/record.json");
/// Documents per `validate_many` call, about one harvested page.
const BATCH: usize = 100;

struct Bench {
    window: Duration,
    cores: usize,
}

impl Bench {
    fn report(&self, name: &str, threads: usize, count: u64, elapsed: Duration) {
        let rate = count as f64 / elapsed.as_secs_f64();
        println!(
            "{name:<58} {threads:>2} thread(s): {rate:>9.0} validations/s ({:>7.0}/s per thread)",
            rate / threads as f64
        );
    }

    /// Runs `f` in a loop on `threads` OS threads for the window.
    fn threads(&self, name: &str, threads: usize, f: impl Fn() + Send + Sync + 'static) {
        let f = Arc::new(f);
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (f, stop, count) = (f.clone(), stop.clone(), count.clone());
                std::thread::spawn(move || {
                    f(); // compiles the schema on this thread
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        f();
                        n += 1;
                    }
                    count.fetch_add(n, Ordering::Relaxed);
                })
            })
            .collect();
        let start = Instant::now();
        std::thread::sleep(self.window);
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().expect("bench thread");
        }
        self.report(
            name,
            threads,
            count.load(Ordering::Relaxed),
            start.elapsed(),
        );
    }

    /// Runs `tasks` concurrent loops of `validate_many` on a runtime with as
    /// many workers.
    fn registry(&self, name: &str, tasks: usize, schema: SchemaKind) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(tasks)
            .max_blocking_threads(tasks)
            .enable_all()
            .build()
            .expect("runtime");
        let window = self.window;
        let (count, elapsed) = rt.block_on(async move {
            let db = sheaf_store::testing::TestDb::sqlite().await;
            let registry = Registry::new(db.store.clone(), Limits::default());
            let (version, doc) = setup(&registry, schema).await;
            let batch = vec![doc.to_vec(); BATCH];
            // Warm up: compile once (shared) before the clock starts.
            registry
                .validate_many(&version, batch.clone())
                .await
                .expect("warm-up");
            let start = Instant::now();
            let deadline = start + window;
            let handles: Vec<_> = (0..tasks)
                .map(|_| {
                    let (registry, version, batch) =
                        (registry.clone(), version.clone(), batch.clone());
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while Instant::now() < deadline {
                            let verdicts = registry
                                .validate_many(&version, batch.clone())
                                .await
                                .expect("batch");
                            assert!(verdicts.iter().all(Result::is_ok));
                            n += BATCH as u64;
                        }
                        n
                    })
                })
                .collect();
            let mut total = 0;
            for h in handles {
                total += h.await.expect("bench task");
            }
            (total, start.elapsed())
        });
        self.report(name, tasks, count, elapsed);
    }
}

async fn setup(registry: &Registry, kind: SchemaKind) -> (SchemaVersion, &'static [u8]) {
    match kind {
        SchemaKind::Xsd => {
            registry.ensure_builtins().await.expect("builtins");
            let id = SchemaId::parse("oai_dc").expect("id");
            (registry.schema(&id, None).await.expect("oai_dc"), DC_RECORD)
        }
        SchemaKind::Json => {
            let req = SchemaRequest {
                schema_id: SchemaId::parse("dataset").expect("id"),
                kind: SchemaKind::Json,
                document: JSON_SCHEMA.to_vec(),
                metadata_prefix: None,
                record: json!({}),
            };
            let version = registry
                .register(req, Expect::Absent)
                .await
                .expect("register")
                .into_version();
            (version, JSON_RECORD)
        }
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let bench = Bench {
        window: Duration::from_millis(if full { 3000 } else { 50 }),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
    };
    println!(
        "oai_dc record: {} bytes; JSON record: {} bytes; {} core(s)",
        DC_RECORD.len(),
        JSON_RECORD.len(),
        bench.cores
    );
    validate_against_bundled("oai_dc.xsd", DC_RECORD).expect("the record is valid");
    for threads in [1, bench.cores] {
        bench.threads(
            "oai_dc vs oai_dc.xsd, validate_against_bundled",
            threads,
            || {
                validate_against_bundled("oai_dc.xsd", DC_RECORD).expect("valid");
            },
        );
    }
    for tasks in [1, bench.cores] {
        bench.registry(
            "oai_dc vs oai_dc.xsd, Registry::validate_many",
            tasks,
            SchemaKind::Xsd,
        );
    }
    for tasks in [1, bench.cores] {
        bench.registry(
            "JSON record vs 2020-12 schema, Registry::validate_many",
            tasks,
            SchemaKind::Json,
        );
    }
}
