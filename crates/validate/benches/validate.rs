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

/// CPU time this process has used, from `/proc/self/stat` (Linux; clock
/// ticks of 10 ms). The machine may be shared, so rates are also given per
/// CPU-second actually received, which contention does not skew.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // utime and stime are the 12th and 13th fields after the command name.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn cpu_since(start: Option<Duration>) -> Option<Duration> {
    start.zip(process_cpu()).map(|(a, b)| b.saturating_sub(a))
}

impl Bench {
    fn report(
        &self,
        name: &str,
        threads: usize,
        count: u64,
        elapsed: Duration,
        cpu: Option<Duration>,
    ) {
        let rate = count as f64 / elapsed.as_secs_f64();
        let per_cpu = cpu
            .filter(|c| !c.is_zero())
            .map(|c| format!("{:>6.0}/CPU-second", count as f64 / c.as_secs_f64()))
            .unwrap_or_default();
        println!(
            "{name:<54} {threads} thread(s): {rate:>6.0}/s wall ({:>6.0}/s per thread), {per_cpu}",
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
                    while !stop.load(Ordering::Relaxed) {
                        f();
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // Every thread compiles its schema before the clock starts.
        std::thread::sleep(Duration::from_millis(200));
        let (start, cpu0) = (Instant::now(), process_cpu());
        let before = count.load(Ordering::Relaxed);
        std::thread::sleep(self.window);
        let done = count.load(Ordering::Relaxed) - before;
        let (elapsed, cpu) = (start.elapsed(), cpu_since(cpu0));
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().expect("bench thread");
        }
        self.report(name, threads, done, elapsed, cpu);
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
        let (count, elapsed, cpu) = rt.block_on(async move {
            let db = sheaf_store::testing::TestDb::sqlite().await;
            let registry = Registry::new(db.store.clone(), Limits::default());
            let (version, doc) = setup(&registry, schema).await;
            let batch = vec![doc.to_vec(); BATCH];
            // Warm up: compile once (shared) before the clock starts.
            registry
                .validate_many(&version, batch.clone())
                .await
                .expect("warm-up");
            let (start, cpu0) = (Instant::now(), process_cpu());
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
            (total, start.elapsed(), cpu_since(cpu0))
        });
        self.report(name, tasks, count, elapsed, cpu);
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
