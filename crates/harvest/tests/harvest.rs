//! Harvest runs against the scripted provider, on SQLite and PostgreSQL:
//! registration, incremental harvesting, windows and sets, protocol
//! faults, continuation of interrupted and failed runs, leases, and
//! exactly-once under kills at any point.

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::Utc;
use sheaf_domain::model::{Expect, HarvestRun, PageItem, RecordWrite, RunCounts, RunStatus};
use sheaf_domain::{Granularity, RecordId, SourceId};
use sheaf_harvest::config::{ListMethod, SourceConfig, Window};
use sheaf_harvest::parse::parse_page;
use sheaf_harvest::register::{Registrar, record_id};
use sheaf_harvest::run::{
    HarvestError, LeaseSpec, NoProgress, PageUpdate, Progress, RunOptions, harvest,
};
use sheaf_store::{DynStore, RecordFilter, StoreError};
use sheaf_validate::{Limits, Registry};
use support::{Body, Provider, Rec, records};
use tokio_util::sync::CancellationToken;

const OAI_DC_NS: &str = "http://www.openarchives.org/OAI/2.0/oai_dc/";

fn registry(store: &DynStore) -> Registry {
    Registry::new(store.clone(), Limits::default())
}

async fn run(
    reg: &Registry,
    cfg: &SourceConfig,
    options: RunOptions,
) -> Result<HarvestRun, HarvestError> {
    harvest(reg, cfg, &options, &CancellationToken::new(), &NoProgress).await
}

async fn run_ok(reg: &Registry, cfg: &SourceConfig) -> HarvestRun {
    let r = run(reg, cfg, RunOptions::default()).await.expect("harvest");
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert!(r.counts.balanced(), "{:?}", r.counts);
    r
}

fn id(source: &str, oai: &str) -> RecordId {
    record_id(&SourceId::parse(source).expect("source"), oai).expect("record id")
}

/// What must be equal between two harvests of the same upstream: every
/// record's versions (number, tombstone, document, links, record fields),
/// keyed by OAI identifier. (Content hashes differ between sources: the
/// source is part of them.)
type Snapshot = BTreeMap<String, Vec<(i64, bool, String, Vec<String>, String)>>;

/// Asserts two snapshots are equal, naming the first record that differs.
fn assert_same(a: &Snapshot, b: &Snapshot, what: &str) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        assert_eq!(a.get(k), b.get(k), "{what}: record {k} differs");
    }
}

async fn snapshot(store: &DynStore, source: &str) -> (Snapshot, Vec<String>) {
    let sid = SourceId::parse(source).expect("source");
    let filter = RecordFilter {
        source_id: Some(sid.clone()),
        include_deleted: true,
        ..RecordFilter::default()
    };
    let (current, _) = store.list_records(&filter, 0, 100_000).await.expect("list");
    let prefix = format!("{source}:");
    let mut snap = Snapshot::new();
    for v in current {
        let versions = store.record_versions(&v.id).await.expect("versions");
        let key = v.id.as_str().trim_start_matches(&prefix).to_owned();
        snap.insert(
            key,
            versions
                .into_iter()
                .map(|x| {
                    (
                        x.version,
                        x.deleted,
                        String::from_utf8_lossy(&x.document).into_owned(),
                        x.resources,
                        x.record.to_string(),
                    )
                })
                .collect(),
        );
    }
    let mut rejected: Vec<String> = store
        .list_rejections(Some(&sid), 10_000)
        .await
        .expect("rejections")
        .into_iter()
        .map(|r| r.rejection.identifier.unwrap_or_default())
        .collect();
    rejected.sort();
    (snap, rejected)
}

async fn sum_counts(store: &DynStore, source: &str) -> RunCounts {
    let sid = SourceId::parse(source).expect("source");
    let mut total = RunCounts::default();
    for r in store.list_runs(Some(&sid), 1000).await.expect("runs") {
        total.add(&r.counts);
    }
    total
}

fn start_requests(p: &Provider) -> Vec<String> {
    p.log()
        .into_iter()
        .filter(|q| q.contains("metadataPrefix=") && q.contains("verb=List"))
        .collect()
}

async fn registers_versions_tombstones_and_rejections(store: DynStore) {
    let mut repo = records(250);
    repo[3].body = Body::Invalid;
    repo[7].body = Body::Malformed;
    repo[11].deleted = true;
    repo[13].deleted = true;
    // A datestamp far ahead must never become the next run's `from`.
    repo[20].datestamp = "2030-01-01T00:00:00Z".into();
    let p = Provider::start(repo, 100).await;
    let reg = registry(&store);
    let cfg = p.source("fake-a");

    let first = run_ok(&reg, &cfg).await;
    let c = first.counts;
    assert_eq!(
        (c.seen, c.created, c.deleted, c.rejected),
        (250, 246, 2, 2),
        "{c:?}"
    );
    assert_eq!(first.response_date.as_deref(), Some("2026-06-01T12:00:00Z"));

    let v = store
        .get_record(&id("fake-a", "oai:fake:0"), None)
        .await
        .expect("get")
        .expect("record 0");
    assert_eq!(v.id.as_str(), "fake-a:oai:fake:0");
    assert_eq!(v.schema_id.as_str(), "oai_dc");
    assert_eq!(v.resources, vec!["https://example.org/item/0".to_owned()]);
    assert_eq!(v.source_id.as_ref().map(|s| s.as_str()), Some("fake-a"));
    let prov = v.provenance.as_ref().expect("provenance");
    assert_eq!(prov.base_url, p.url);
    assert_eq!(prov.oai_identifier, "oai:fake:0");
    assert_eq!(prov.datestamp, "2026-01-01T00:00:00Z");
    assert_eq!(prov.metadata_namespace.as_deref(), Some(OAI_DC_NS));
    assert_eq!(prov.set_specs, vec!["even".to_owned()]);
    assert_eq!(v.record["titles"][0]["value"], "Record 0 revision 1");
    assert_eq!(v.record["creators"][0]["familyName"], "Doe");
    let doc = String::from_utf8(v.document.clone()).expect("utf-8");
    assert!(
        doc.contains("xmlns:dc=\"http://purl.org/dc/elements/1.1/\""),
        "{doc}"
    );

    let rejections = store
        .list_rejections(Some(&cfg.id), 10)
        .await
        .expect("rejections");
    assert_eq!(rejections.len(), 2);
    for r in &rejections {
        let r = &r.rejection;
        assert_eq!(r.origin, "harvest");
        assert_eq!(r.schema_id.as_ref().map(|s| s.as_str()), Some("oai_dc"));
        assert!(!r.document.is_empty() && !r.message.is_empty());
        assert_eq!(r.run_id, Some(first.id));
    }
    let malformed = rejections
        .iter()
        .find(|r| r.rejection.identifier.as_deref() == Some("oai:fake:7"))
        .expect("malformed rejected");
    assert!(
        malformed.rejection.message.contains("malformed"),
        "{}",
        malformed.rejection.message
    );
    assert!(
        rejections
            .iter()
            .any(|r| r.rejection.identifier.as_deref() == Some("oai:fake:3"))
    );

    // Unchanged re-harvest: nothing written.
    let second = run(&reg, &cfg, RunOptions::full()).await.expect("second");
    let c = second.counts;
    assert_eq!(
        (c.seen, c.created, c.updated, c.unchanged),
        (250, 0, 0, 246),
        "{c:?}"
    );
    assert_eq!(
        store.record_versions(&v.id).await.expect("versions").len(),
        1
    );

    // Upstream changes after the provider's responseDate.
    p.clear_log();
    p.set_response_date("2026-06-05T00:00:00Z");
    p.update_repo(|r| {
        r[0].body = Body::Valid { revision: 2 };
        r[0].datestamp = "2026-06-02T00:00:00Z".into();
        r[1].deleted = true;
        r[1].datestamp = "2026-06-02T00:00:00Z".into();
        r[11].deleted = false;
        r[11].datestamp = "2026-06-02T00:00:00Z".into();
        r[20].datestamp = "2025-01-01T00:00:00Z".into();
    });
    let third = run_ok(&reg, &cfg).await;
    let starts = start_requests(&p);
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert!(
        starts[0].contains("from=2026-06-01T12:00:00Z"),
        "{starts:?}"
    );
    let c = third.counts;
    assert_eq!(
        (c.seen, c.created, c.updated, c.deleted),
        (3, 1, 1, 1),
        "{c:?}"
    );
    let v0 = store.record_versions(&v.id).await.expect("versions");
    assert_eq!(v0.len(), 2);
    assert_eq!(v0[0].record["titles"][0]["value"], "Record 0 revision 2");
    let v1 = store
        .record_versions(&id("fake-a", "oai:fake:1"))
        .await
        .expect("versions");
    assert_eq!((v1.len(), v1[0].deleted), (2, true));
}

async fn windows_sets_and_day_granularity(store: DynStore) {
    let repo: Vec<Rec> = (0..60)
        .map(|n| Rec::valid(n, &format!("2026-0{}-{:02}", 1 + n % 3, 1 + n % 28)))
        .collect();
    let p = Provider::start(repo, 7).await;
    p.set_granularity(Granularity::Day);
    p.set_earliest("2026-01-01");
    let reg = registry(&store);
    let mut cfg = p.source("windowed");
    cfg.window = Window::Month;
    cfg.sets = vec!["even".into(), "odd".into()];
    let r = run(
        &reg,
        &cfg,
        RunOptions {
            until: Some("2026-04-10".into()),
            ..RunOptions::default()
        },
    )
    .await
    .expect("harvest");
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(
        (r.counts.seen, r.counts.created),
        (60, 60),
        "{:?}",
        r.counts
    );
    let starts = start_requests(&p);
    // 4 monthly windows (Jan..Apr 10) for each of the 2 sets.
    assert_eq!(starts.len(), 8, "{starts:?}");
    assert!(starts[0].contains("from=2026-01-01") && starts[0].contains("until=2026-01-31"));
    assert!(starts[0].contains("set=even"));
    assert!(starts[3].contains("from=2026-04-01") && starts[3].contains("until=2026-04-10"));
    assert!(starts[4].contains("set=odd"));
    assert_eq!(r.window_from.as_deref(), Some("2026-01-01"));

    // Next run: from the explicit until, which came before the
    // responseDate (the stretch between them was never asked for).
    p.clear_log();
    run_ok(&reg, &cfg).await;
    let starts = start_requests(&p);
    assert!(starts[0].contains("from=2026-04-10&"), "{starts:?}");
    // And then from the responseDate, at day granularity.
    p.clear_log();
    run_ok(&reg, &cfg).await;
    let starts = start_requests(&p);
    assert!(starts[0].contains("from=2026-06-01&"), "{starts:?}");
}

async fn protocol_faults(store: DynStore) {
    let p = Provider::start(records(300), 100).await;
    let reg = registry(&store);

    // badResumptionToken twice: retried once, then the window restarts.
    p.script(|s| s.bad_tokens = 2);
    let r = run_ok(&reg, &p.source("bad-token")).await;
    assert_eq!(
        (r.counts.created, r.counts.unchanged),
        (300, 100),
        "{:?}",
        r.counts
    );
    let log = p.log();
    let lists: Vec<&String> = log
        .iter()
        .filter(|q| q.contains("verb=ListRecords"))
        .collect();
    assert!(
        lists[1].contains("resumptionToken") && lists[1] == lists[2],
        "{lists:?}"
    );
    assert!(lists[3].contains("metadataPrefix=oai_dc"), "{lists:?}");

    // badResumptionToken forever: a clear failure.
    p.script(|s| s.bad_tokens = 1000);
    let e = run(&reg, &p.source("bad-forever"), RunOptions::default())
        .await
        .expect_err("fails");
    assert!(e.to_string().contains("badResumptionToken"), "{e}");
    p.script(|s| s.bad_tokens = 0);

    // A token loop: stopped with a clear error, recorded on the run.
    p.script(|s| s.loop_token = true);
    let e = run(&reg, &p.source("looping"), RunOptions::default())
        .await
        .expect_err("loop");
    assert!(matches!(e, HarvestError::Loop { .. }), "{e}");
    let runs = store
        .list_runs(Some(&SourceId::parse("looping").expect("id")), 5)
        .await
        .expect("runs");
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert!(
        runs[0]
            .message
            .as_deref()
            .unwrap_or("")
            .contains("progress"),
        "{runs:?}"
    );
    p.script(|s| s.loop_token = false);

    // noRecordsMatch: success with zero records.
    p.set_repo(Vec::new());
    let r = run_ok(&reg, &p.source("empty")).await;
    assert_eq!(r.counts, RunCounts::default());
    assert_eq!(r.response_date.as_deref(), Some("2026-06-01T12:00:00Z"));

    // An unknown prefix without a registered schema: a failed run saying so.
    let mut cfg = p.source("no-schema");
    cfg.metadata_prefix = "marcxml".into();
    let e = run(&reg, &cfg, RunOptions::default())
        .await
        .expect_err("no schema");
    assert!(e.to_string().contains("marcxml"), "{e}");
    let runs = store.list_runs(Some(&cfg.id), 5).await.expect("runs");
    assert_eq!(runs[0].status, RunStatus::Failed);
}

/// Cancels the run's stop token after `after` committed pages.
struct StopAfter {
    after: usize,
    seen: Mutex<usize>,
    stop: CancellationToken,
}

impl Progress for StopAfter {
    fn page(&self, _u: &PageUpdate) {
        let mut n = self.seen.lock().expect("lock");
        *n += 1;
        if *n >= self.after {
            self.stop.cancel();
        }
    }
}

async fn interrupted_and_failed_runs_are_continued(store: DynStore) {
    let p = Provider::start(records(1000), 100).await;
    let reg = registry(&store);
    let cfg = p.source("stopped");

    // Stopped after its first page: interrupted, checkpoint kept.
    let stop = CancellationToken::new();
    let progress = StopAfter {
        after: 1,
        seen: Mutex::new(0),
        stop: stop.clone(),
    };
    let first = harvest(&reg, &cfg, &RunOptions::default(), &stop, &progress)
        .await
        .expect("interrupted");
    // Pages already fetched when the stop came are committed too.
    assert_eq!(first.status, RunStatus::Interrupted);
    let done = first.counts.seen;
    assert!(
        [100, 200, 300, 400, 500].contains(&done),
        "{:?}",
        first.counts
    );

    // The next run continues it, keeping the first responseDate.
    p.set_response_date("2026-07-01T00:00:00Z");
    p.clear_log();
    let second = run_ok(&reg, &cfg).await;
    assert_ne!(second.id, first.id);
    assert_eq!(second.response_date, first.response_date);
    assert_eq!(second.counts.created, 1000 - done);
    let lists = p.list_log();
    assert!(lists[0].contains("resumptionToken"), "{lists:?}");

    // A provider outage fails the run; the next one continues from it.
    let cfg = p.source("outage");
    let base = p.list_requests();
    p.script(|s| s.fail_from = Some(base + 3));
    let e = run(&reg, &cfg, RunOptions::default())
        .await
        .expect_err("outage");
    assert!(e.to_string().contains("500"), "{e}");
    p.script(|s| s.fail_from = None);
    p.clear_log();
    run_ok(&reg, &cfg).await;
    let lists = p.list_log();
    assert_eq!(lists.len(), 8, "pages 3..10: {lists:?}");
    assert!(lists[0].contains("resumptionToken"), "{lists:?}");
    let total = sum_counts(&store, "outage").await;
    assert_eq!((total.seen, total.created), (1000, 1000), "{total:?}");

    // Explicit bounds start afresh instead.
    p.clear_log();
    let r = run(&reg, &cfg, RunOptions::full()).await.expect("full");
    assert_eq!(r.counts.unchanged, 1000);
}

async fn identifiers_then_get_record(store: DynStore) {
    let mut repo = records(30);
    repo[4].deleted = true;
    let p = Provider::start(repo, 10).await;
    let reg = registry(&store);
    let listed = run_ok(&reg, &p.source("by-list")).await;
    let mut cfg = p.source("by-get");
    cfg.list_method = ListMethod::IdentifiersThenGetRecord;
    let got = run_ok(&reg, &cfg).await;
    assert_eq!(listed.counts, got.counts);
    let (a, ra) = snapshot(&store, "by-list").await;
    let (b, rb) = snapshot(&store, "by-get").await;
    assert_same(&a, &b, "ListIdentifiers+GetRecord");
    assert_eq!(ra, rb);
    assert!(p.log().iter().any(|q| q.contains("verb=GetRecord")));
}

async fn a_leased_source_is_not_harvested_twice(store: DynStore) {
    let p = Provider::start(records(200), 50).await;
    let reg = registry(&store);
    let cfg = p.source("leased");
    let lease = |holder: &str| RunOptions {
        lease: Some(LeaseSpec {
            holder: holder.into(),
            ttl: std::time::Duration::from_secs(600),
        }),
        ..RunOptions::default()
    };
    p.hold(2);
    let first = {
        let (reg, cfg, opts) = (reg.clone(), cfg.clone(), lease("first"));
        tokio::spawn(async move { run(&reg, &cfg, opts).await })
    };
    p.wait_held().await;
    let requests = p.log().len();
    let e = run(&reg, &cfg, lease("second")).await.expect_err("busy");
    assert!(matches!(e, HarvestError::Busy { .. }), "{e}");
    assert_eq!(p.log().len(), requests, "the second harvester sent nothing");
    p.release();
    let done = first.await.expect("task").expect("first harvest");
    assert_eq!(done.counts.created, 200);
    // Released at the end: the second holder may harvest now.
    let again = run(&reg, &cfg, lease("second")).await.expect("second");
    assert_eq!(again.status, RunStatus::Succeeded);
}

/// Kills harvests between pages, within pages (at varying points of
/// fetching, registering and committing) and by a provider failing
/// mid-page; each resumed harvest must leave exactly the versions, links
/// and rejections of an uninterrupted one.
async fn exactly_once_when_killed_anywhere(store: DynStore) {
    let mut repo = records(230);
    repo[5].body = Body::Invalid;
    repo[9].body = Body::Malformed;
    repo[17].deleted = true;
    let p = Provider::start(repo, 40).await;
    let reg = registry(&store);

    // An earlier state everyone starts from, so resumed pages also update.
    let old: Vec<Rec> = records(230)
        .into_iter()
        .map(|mut r| {
            r.body = Body::Valid { revision: 0 };
            r
        })
        .collect();
    let current = {
        let mut r = records(230);
        r[5].body = Body::Invalid;
        r[9].body = Body::Malformed;
        r[17].deleted = true;
        r
    };
    let prepare = |name: String| {
        let (p, reg, old, current) = (p.clone(), reg.clone(), old.clone(), current.clone());
        async move {
            p.set_repo(old);
            let cfg = p.source(&name);
            run_ok(&reg, &cfg).await;
            p.set_repo(current);
            cfg
        }
    };

    let clean_cfg = prepare("clean".into()).await;
    let clean = run(&reg, &clean_cfg, RunOptions::full())
        .await
        .expect("clean");
    let reference = snapshot(&store, "clean").await;
    assert_eq!(reference.0.len(), 230);
    assert_eq!(reference.1.len(), 2);

    // `strict`: no window was restarted, so nothing was seen twice.
    let check = |name: String, clean: HarvestRun, strict: bool| {
        let (store, reference) = (store.clone(), reference.clone());
        async move {
            let (versions, rejected) = snapshot(&store, &name).await;
            assert_same(&versions, &reference.0, &name);
            // A restarted window sees its invalid records again but keeps
            // each rejection once.
            assert_eq!(rejected, reference.1, "{name}");
            let total = sum_counts(&store, &name).await;
            let mut want = clean.counts;
            // The preparing run's counts.
            want.seen += 230;
            want.created += 230;
            assert_eq!(
                (total.created, total.updated),
                (want.created, want.updated),
                "{name}: {total:?}"
            );
            if strict {
                assert_eq!(total, want, "{name}");
            }
            assert!(total.balanced(), "{name}: {total:?}");
        }
    };

    // Between pages: the k-th request never answers; the process dies.
    for k in 1..=6 {
        let name = format!("between-{k}");
        let cfg = prepare(name.clone()).await;
        p.hold(k);
        let task = {
            let (reg, cfg) = (reg.clone(), cfg.clone());
            tokio::spawn(async move { run(&reg, &cfg, RunOptions::full()).await })
        };
        p.wait_held().await;
        task.abort();
        let _ = task.await;
        p.release();
        let killed = store
            .unfinished_run(&cfg.id)
            .await
            .expect("runs")
            .expect("left running");
        if k % 2 == 0 {
            // The provider forgot its tokens meanwhile.
            p.expire_tokens();
        }
        let resumed = run_ok(&reg, &cfg).await;
        assert_eq!(resumed.id, killed.id, "{name}: resumed in place");
        check(name, clean.clone(), k % 2 == 1).await;
    }

    // Within pages: killed while fetching, registering or committing.
    for (k, spins) in [(1, 0), (2, 1), (3, 3), (4, 20), (5, 200), (6, 2000)] {
        let name = format!("within-{k}-{spins}");
        let cfg = prepare(name.clone()).await;
        let served = p.served();
        let task = {
            let (reg, cfg) = (reg.clone(), cfg.clone());
            tokio::spawn(async move { run(&reg, &cfg, RunOptions::full()).await })
        };
        p.wait_served(served + k).await;
        for _ in 0..spins {
            tokio::task::yield_now().await;
        }
        task.abort();
        let _ = task.await;
        run_ok(&reg, &cfg).await;
        check(name, clean.clone(), true).await;
    }

    // The provider cuts a page short: the run fails, the next continues.
    let name = "cut".to_owned();
    let cfg = prepare(name.clone()).await;
    let base = p.list_requests();
    p.script(|s| s.cut_at = Some(base + 3));
    let e = run(&reg, &cfg, RunOptions::full())
        .await
        .expect_err("cut page");
    assert!(!e.to_string().is_empty());
    run_ok(&reg, &cfg).await;
    check(name, clean, true).await;
}

/// An unchanged re-harvest keeps records by their input keys; a kept
/// record that changes before its page commits makes the store refuse the
/// page, and the kept records are then prepared and committed in full.
async fn a_stale_page_is_prepared_in_full(store: DynStore) {
    let p = Provider::start(records(10), 100).await;
    let reg = registry(&store);
    let cfg = p.source("fake-s");
    assert_eq!(run_ok(&reg, &cfg).await.counts.created, 10);
    let again = run(&reg, &cfg, RunOptions::full()).await.expect("again");
    assert_eq!((again.counts.seen, again.counts.unchanged), (10, 10));

    let body = reqwest::get(format!("{}?verb=ListRecords&metadataPrefix=oai_dc", p.url))
        .await
        .expect("request")
        .bytes()
        .await
        .expect("body");
    let page = parse_page(&body).expect("page");
    let registrar = Registrar::new(&reg, &cfg).await.expect("registrar");
    let registered = registrar
        .register_page(page.records, Utc::now())
        .await
        .expect("registered");
    assert!(registered.has_kept());
    assert_eq!(registered.items.len(), 10);
    assert!(
        registered
            .items
            .iter()
            .all(|i| matches!(i, PageItem::Keep { .. })),
        "{:?}",
        registered.items
    );

    // A deposit changes record 4 between registration and commit.
    let four = id("fake-s", "oai:fake:4");
    let harvested = store
        .get_record(&four, None)
        .await
        .expect("get")
        .expect("4");
    store
        .put_record(
            RecordWrite {
                id: four.clone(),
                schema_id: harvested.schema_id.clone(),
                schema_version: harvested.schema_version,
                document: b"<deposited/>".to_vec(),
                record: serde_json::json!({}),
                resources: Vec::new(),
                acl: Vec::new(),
                source_id: None,
                provenance: None,
            },
            Expect::Any,
        )
        .await
        .expect("deposit");

    let source = SourceId::parse("fake-s").expect("source");
    let run_id = store.start_run(&source, None, None).await.expect("run").id;
    let refused = store
        .commit_page(run_id, registered.items.clone(), None, None)
        .await;
    assert!(matches!(refused, Err(StoreError::Stale(_))), "{refused:?}");
    let items = registrar
        .expand(registered, Utc::now())
        .await
        .expect("expanded");
    assert!(items.iter().all(|i| matches!(i, PageItem::Put { .. })));
    let c = store
        .commit_page(run_id, items, None, None)
        .await
        .expect("committed");
    assert_eq!((c.seen, c.updated, c.unchanged), (10, 1, 9), "{c:?}");
    let back = store
        .get_record(&four, None)
        .await
        .expect("get")
        .expect("4");
    assert_eq!((back.version, &back.document), (3, &harvested.document));
    let live = store.live_hashes(&[four]).await.expect("hashes");
    assert!(live.values().all(|l| l.input.is_some()), "{live:?}");

    // A record also deleted in its page is prepared, never kept: the
    // deletion changes it first.
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    let deleted = "<record><header status=\"deleted\"><identifier>oai:fake:1</identifier>\
                   <datestamp>2026-01-01T00:00:00Z</datestamp></header></record>";
    let text = text.replacen("<ListRecords>", &format!("<ListRecords>{deleted}"), 1);
    let page = parse_page(text.as_bytes()).expect("page");
    let registered = registrar
        .register_page(page.records, Utc::now())
        .await
        .expect("registered");
    let one = id("fake-s", "oai:fake:1");
    let kinds: Vec<&str> = registered
        .items
        .iter()
        .filter_map(|i| match i {
            PageItem::Delete { id, .. } if *id == one => Some("delete"),
            PageItem::Put { write, .. } if write.id == one => Some("put"),
            PageItem::Keep { id, .. } if *id == one => Some("keep"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["delete", "put"]);
    let c = store
        .commit_page(run_id, registered.items, None, None)
        .await
        .expect("committed");
    assert_eq!(
        (c.seen, c.deleted, c.created, c.unchanged),
        (11, 1, 0, 9),
        "{c:?}"
    );
}

sheaf_store::backend_tests!(
    registers_versions_tombstones_and_rejections,
    windows_sets_and_day_granularity,
    protocol_faults,
    interrupted_and_failed_runs_are_continued,
    identifiers_then_get_record,
    a_leased_source_is_not_harvested_twice,
    exactly_once_when_killed_anywhere,
    a_stale_page_is_prepared_in_full,
);
