//! The daemon against the scripted provider, on SQLite and PostgreSQL: two
//! daemons on one database never harvest one source at once, a crashed
//! holder's source is taken over once its lease expires and resumed from
//! the checkpoint, and a shutdown commits, stops promptly and leaves a run
//! the next daemon continues.

mod support;

use std::time::Duration;

use sheaf_domain::SourceId;
use sheaf_domain::model::RunStatus;
use sheaf_harvest::config::SourceConfig;
use sheaf_harvest::run::{LeaseSpec, NoProgress, RunOptions, harvest};
use sheaf_harvest::schedule::{DaemonEvent, DaemonSettings, run_daemon};
use sheaf_store::{DynStore, RecordFilter};
use sheaf_validate::{Limits, Registry};
use support::{Provider, records};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Every wait in these tests ends well before this.
const PATIENCE: Duration = Duration::from_secs(10);

struct Daemon {
    events: mpsc::UnboundedReceiver<DaemonEvent>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

fn start_daemon(reg: &Registry, sources: Vec<SourceConfig>, holder: &str) -> Daemon {
    let (tx, events) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let settings = DaemonSettings {
        max_concurrent: 2,
        holder_id: holder.to_owned(),
        lease_ttl: Duration::from_millis(200),
        events: Some(tx),
    };
    let task = tokio::spawn(run_daemon(reg.clone(), sources, settings, shutdown.clone()));
    Daemon {
        events,
        shutdown,
        task,
    }
}

impl Daemon {
    /// The next event matching `want`, skipping others.
    async fn wait_for(&mut self, want: impl Fn(&DaemonEvent) -> bool) -> DaemonEvent {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let e = self.events.recv().await.expect("daemon alive");
                if want(&e) {
                    return e;
                }
            }
        })
        .await
        .expect("event in time")
    }

    async fn stop(self) -> Duration {
        let t = std::time::Instant::now();
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("daemon stops in time")
            .expect("daemon task");
        t.elapsed()
    }
}

/// Waits until the source's running run has committed `pages` pages.
async fn committed(store: &DynStore, source: &SourceId, pages: u64) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let run = store.unfinished_run(source).await.expect("runs");
            let done = run
                .and_then(|r| r.checkpoint)
                .and_then(|c| c.get("pages").and_then(|p| p.as_u64()))
                .unwrap_or(0);
            if done >= pages {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("page committed in time");
}

fn busy(e: &DaemonEvent) -> bool {
    matches!(e, DaemonEvent::Busy { .. })
}

async fn created(store: &DynStore, source: &SourceId) -> usize {
    let filter = RecordFilter {
        source_id: Some(source.clone()),
        ..RecordFilter::default()
    };
    let (all, total) = store.list_records(&filter, 0, 10_000).await.expect("list");
    assert!(all.iter().all(|v| v.version == 1));
    total as usize
}

async fn two_daemons_take_over_a_crashed_run_once(store: DynStore) {
    let p = Provider::start(records(200), 50).await;
    let reg = Registry::new(store.clone(), Limits::default());
    let cfg = p.source("shared");

    // A daemon dies holding the lease, after committing page 1.
    p.hold(2);
    let crashed = {
        let (reg, cfg) = (reg.clone(), cfg.clone());
        tokio::spawn(async move {
            let options = RunOptions {
                lease: Some(LeaseSpec {
                    holder: "crashed".into(),
                    ttl: Duration::from_secs(3600),
                }),
                ..RunOptions::default()
            };
            harvest(&reg, &cfg, &options, &CancellationToken::new(), &NoProgress).await
        })
    };
    p.wait_held().await;
    committed(&store, &cfg.id, 1).await;
    crashed.abort();
    let _ = crashed.await;
    let orphan = store
        .unfinished_run(&cfg.id)
        .await
        .expect("runs")
        .expect("left running");
    p.release();
    p.clear_log();
    // Whoever takes over is held at its first request.
    p.hold(1);

    let mut a = start_daemon(&reg, vec![cfg.clone()], "daemon-a");
    let mut b = start_daemon(&reg, vec![cfg.clone()], "daemon-b");
    // Both see the orphan, neither may touch it while the lease lives.
    a.wait_for(busy).await;
    b.wait_for(busy).await;
    assert_eq!(p.log().len(), 0, "nobody talked to the provider");

    // The crashed holder's lease expires.
    assert!(
        store
            .acquire_lease(&cfg.id, "crashed", Duration::ZERO)
            .await
            .expect("lease")
    );
    let started = |e: &DaemonEvent| matches!(e, DaemonEvent::Started { .. });
    let (a_won, first) = tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            e = a.wait_for(started) => (true, e),
            e = b.wait_for(started) => (false, e),
        }
    })
    .await
    .expect("a daemon resumes");
    let (winner, mut loser) = if a_won { (a, b) } else { (b, a) };
    let DaemonEvent::Started {
        run_id, resumed, ..
    } = first
    else {
        unreachable!("filtered on Started")
    };
    assert_eq!((run_id, resumed), (orphan.id, true));
    p.wait_held().await;
    // While the winner works, the loser keeps finding the lease taken.
    loser.wait_for(busy).await;
    p.release();

    let finished = tokio::time::timeout(PATIENCE, async {
        loop {
            let r = store
                .get_run(orphan.id)
                .await
                .expect("run")
                .expect("exists");
            if r.status != RunStatus::Running {
                return r;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("run finishes");
    assert_eq!(finished.status, RunStatus::Succeeded, "{finished:?}");
    assert_eq!(finished.counts.seen, 200);

    let log = p.log();
    assert_eq!(
        log.iter().filter(|q| q.contains("verb=Identify")).count(),
        1,
        "{log:?}"
    );
    let lists: Vec<&String> = log.iter().filter(|q| q.contains("verb=List")).collect();
    assert_eq!(lists.len(), 3, "pages 2..4 only: {lists:?}");
    assert!(lists[0].contains("resumptionToken"), "{lists:?}");
    assert_eq!(created(&store, &cfg.id).await, 200);
    let runs = store.list_runs(Some(&cfg.id), 10).await.expect("runs");
    assert_eq!(runs.len(), 1, "{runs:?}");

    assert!(loser.stop().await < PATIENCE);
    assert!(winner.stop().await < PATIENCE);
    // Nothing is left running or leased.
    assert!(store.unfinished_run(&cfg.id).await.expect("runs").is_none());
    assert!(
        store
            .acquire_lease(&cfg.id, "probe", Duration::ZERO)
            .await
            .expect("lease")
    );
}

async fn shutdown_commits_and_the_next_daemon_continues(store: DynStore) {
    let p = Provider::start(records(200), 50).await;
    let reg = Registry::new(store.clone(), Limits::default());
    let cfg = p.source("restarted");
    // A run a crash left before its first page: the sweep starts it.
    store
        .start_run(&cfg.id, None, None)
        .await
        .expect("orphan run");
    p.hold(2);
    let mut a = start_daemon(&reg, vec![cfg.clone()], "daemon-a");
    a.wait_for(|e| matches!(e, DaemonEvent::Started { .. }))
        .await;
    p.wait_held().await;

    // Shutdown while a page is pending: the run stops at once, its last
    // commit kept.
    let t = std::time::Instant::now();
    a.shutdown.cancel();
    let stopped = a
        .wait_for(|e| matches!(e, DaemonEvent::Finished { .. }))
        .await;
    assert!(t.elapsed() < PATIENCE);
    let DaemonEvent::Finished { run, .. } = stopped else {
        unreachable!("filtered on Finished")
    };
    assert_eq!(run.status, RunStatus::Interrupted);
    assert_eq!(run.counts.seen, 50);
    assert!(a.stop().await < PATIENCE);

    p.release();
    p.clear_log();
    let mut b = start_daemon(&reg, vec![cfg.clone()], "daemon-b");
    let e = b
        .wait_for(|e| matches!(e, DaemonEvent::Finished { .. }))
        .await;
    let DaemonEvent::Finished { run: second, .. } = e else {
        unreachable!("filtered on Finished")
    };
    assert_eq!(second.status, RunStatus::Succeeded);
    assert_eq!(second.counts.created, 150);
    assert_eq!(second.response_date, run.response_date);
    let lists = p.list_log();
    assert!(lists[0].contains("resumptionToken"), "{lists:?}");
    assert_eq!(created(&store, &cfg.id).await, 200);
    b.stop().await;
}

sheaf_store::backend_tests!(
    two_daemons_take_over_a_crashed_run_once,
    shutdown_commits_and_the_next_daemon_continues,
);
