//! The harvest daemon's scheduler: every enabled source on its cron
//! schedule, at most one run per source at a time, a global limit on
//! concurrent runs, one run per provider host at a time (politeness; the
//! client paces requests within a run), and the source's lease around each
//! run so that several daemons on one database never harvest one source at
//! once. Runs left unfinished by a crashed daemon (or interrupted by a
//! shutdown) are picked up by a sweep every lease period, once the crashed
//! holder's lease has expired, and resume from their checkpoint.
//!
//! Depends on [`crate::run`] (a run), the store trait (runs, leases) and
//! croner (via [`crate::config::SourceConfig::cron`]).
//!
//! Time: wall-clock instants for cron are derived from tokio's clock,
//! anchored once at start, so tests drive the scheduler with
//! `tokio::time::pause` and a daemon is immune to wall-clock jumps
//! between two fires.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sheaf_domain::SourceId;
use sheaf_domain::model::{HarvestRun, RunStatus};
use sheaf_validate::Registry;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::SourceConfig;
use crate::run::{self, HarvestError, LeaseSpec, Progress, RunOptions};

/// How long a shutdown waits for runs to commit their current page before
/// aborting them (leaving them resumable): under the 10 s systemd and
/// container runtimes usually allow.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// How the daemon runs harvests.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Runs in flight at once, over all sources (at least 1).
    pub max_concurrent: usize,
    /// This daemon's lease holder id: unique per process (host and pid).
    pub holder_id: String,
    /// How long a lease lasts without renewal; a crashed daemon's sources
    /// are taken over after it, and the unfinished-run sweep runs this often.
    pub lease_ttl: Duration,
    /// Where to report what the daemon does (metrics, health, tests).
    pub events: Option<mpsc::UnboundedSender<DaemonEvent>>,
}

impl Default for DaemonSettings {
    /// Four concurrent runs, a one-minute lease held as `<host>-<pid>`.
    fn default() -> Self {
        DaemonSettings {
            max_concurrent: 4,
            holder_id: default_holder_id(),
            lease_ttl: Duration::from_secs(60),
            events: None,
        }
    }
}

/// A lease holder id unique to this process: `<host>-<pid>`.
pub fn default_holder_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}", std::process::id())
}

/// What the daemon did, as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonEvent {
    /// A run began (new, continued or resumed).
    Started {
        source: SourceId,
        run_id: i64,
        resumed: bool,
    },
    /// Another holder has the source's lease; this turn was skipped.
    Busy { source: SourceId },
    /// A run ended (succeeded, or interrupted by shutdown).
    Finished {
        source: SourceId,
        run: Box<HarvestRun>,
    },
    /// A run (or its start) failed.
    Failed { source: SourceId, error: String },
}

/// Runs every enabled source on its schedule until `shutdown` fires, then
/// lets each run commit its current page and returns (within
/// [`SHUTDOWN_GRACE`]; runs still busy after it are aborted, to be resumed
/// from their checkpoint).
pub async fn run_daemon(
    registry: Registry,
    sources: Vec<SourceConfig>,
    settings: DaemonSettings,
    shutdown: CancellationToken,
) {
    let job = Arc::new(HarvestJob {
        registry,
        events: settings.events.clone(),
        lease: LeaseSpec {
            holder: settings.holder_id.clone(),
            ttl: settings.lease_ttl,
        },
    });
    schedule(
        job,
        sources,
        settings.max_concurrent,
        settings.lease_ttl,
        shutdown,
    )
    .await;
}

/// The daemon's unit of work, abstract so the scheduling rules are tested
/// without a provider or a database.
pub(crate) trait Job: Send + Sync + 'static {
    /// Runs the source once (returning early when `stop` fires); with
    /// `only_resume`, only if it has a run to continue.
    fn run(
        &self,
        source: Arc<SourceConfig>,
        stop: CancellationToken,
        only_resume: bool,
    ) -> BoxFuture<'static, ()>;
    /// Whether the source has a run to resume now, whatever its schedule.
    fn pending(&self, source: Arc<SourceConfig>) -> BoxFuture<'static, bool>;
}

/// The real job: a leased harvest.
struct HarvestJob {
    registry: Registry,
    lease: LeaseSpec,
    events: Option<mpsc::UnboundedSender<DaemonEvent>>,
}

/// Reports a run's start as a [`DaemonEvent`].
struct StartReporter<'a> {
    source: &'a SourceId,
    events: &'a Option<mpsc::UnboundedSender<DaemonEvent>>,
}

impl Progress for StartReporter<'_> {
    fn started(&self, run: &HarvestRun, resumed: bool) {
        emit(
            self.events,
            DaemonEvent::Started {
                source: self.source.clone(),
                run_id: run.id,
                resumed,
            },
        );
    }
}

fn emit(events: &Option<mpsc::UnboundedSender<DaemonEvent>>, event: DaemonEvent) {
    if let Some(tx) = events {
        // A dropped receiver only means nobody listens any more.
        let _ = tx.send(event);
    }
}

impl Job for HarvestJob {
    fn run(
        &self,
        source: Arc<SourceConfig>,
        stop: CancellationToken,
        only_resume: bool,
    ) -> BoxFuture<'static, ()> {
        let registry = self.registry.clone();
        let events = self.events.clone();
        let options = RunOptions {
            lease: Some(self.lease.clone()),
            only_resume,
            ..RunOptions::default()
        };
        Box::pin(async move {
            let id = &source.id;
            let reporter = StartReporter {
                source: id,
                events: &events,
            };
            match run::harvest(&registry, &source, &options, &stop, &reporter).await {
                Ok(run) => {
                    let c = run.counts;
                    tracing::info!(
                        source = %id, run = run.id, status = run.status.as_str(),
                        seen = c.seen, created = c.created, updated = c.updated,
                        unchanged = c.unchanged, deleted = c.deleted, rejected = c.rejected,
                        "harvest finished"
                    );
                    emit(
                        &events,
                        DaemonEvent::Finished {
                            source: id.clone(),
                            run: Box::new(run),
                        },
                    );
                }
                Err(HarvestError::NothingToResume { .. }) => {
                    tracing::debug!(source = %id, "the run was finished elsewhere");
                }
                Err(HarvestError::Busy { .. }) => {
                    tracing::debug!(source = %id, "another process holds the lease; skipped");
                    emit(&events, DaemonEvent::Busy { source: id.clone() });
                }
                Err(e) => {
                    tracing::warn!(source = %id, error = %e, "harvest failed");
                    emit(
                        &events,
                        DaemonEvent::Failed {
                            source: id.clone(),
                            error: e.to_string(),
                        },
                    );
                }
            }
        })
    }

    fn pending(&self, source: Arc<SourceConfig>) -> BoxFuture<'static, bool> {
        let store = self.registry.store().clone();
        Box::pin(async move {
            let found =
                async {
                    if store.unfinished_run(&source.id).await?.is_some() {
                        return Ok(true);
                    }
                    let newest = store.list_runs(Some(&source.id), 1).await?;
                    Ok::<_, sheaf_store::StoreError>(newest.first().is_some_and(|r| {
                        r.status == RunStatus::Interrupted && r.checkpoint.is_some()
                    }))
                }
                .await;
            found.unwrap_or_else(|e| {
                tracing::warn!(source = %source.id, error = %e, "cannot check for unfinished runs");
                false
            })
        })
    }
}

/// Wall-clock time derived from tokio's clock (see the module docs).
struct Clock {
    wall: DateTime<Utc>,
    mono: Instant,
}

impl Clock {
    fn new() -> Self {
        Clock {
            wall: Utc::now(),
            mono: Instant::now(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.at(Instant::now())
    }

    fn at(&self, i: Instant) -> DateTime<Utc> {
        let elapsed = i.saturating_duration_since(self.mono);
        self.wall + chrono::TimeDelta::from_std(elapsed).unwrap_or(chrono::TimeDelta::MAX)
    }

    fn instant(&self, t: DateTime<Utc>) -> Instant {
        let ahead = (t - self.wall).to_std().unwrap_or(Duration::ZERO);
        self.mono + ahead
    }
}

struct Entry {
    config: Arc<SourceConfig>,
    cron: Option<croner::Cron>,
    next: Option<DateTime<Utc>>,
    running: bool,
    host: Arc<Semaphore>,
}

fn next_fire(entry: &Entry, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron = entry.cron.as_ref()?;
    match cron.find_next_occurrence(&after, false) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(source = %entry.config.id, error = %e, "schedule has no next time");
            None
        }
    }
}

/// The scheduling loop behind [`run_daemon`].
pub(crate) async fn schedule<J: Job>(
    job: Arc<J>,
    sources: Vec<SourceConfig>,
    max_concurrent: usize,
    sweep_every: Duration,
    shutdown: CancellationToken,
) {
    let clock = Clock::new();
    let global = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let mut hosts: HashMap<String, Arc<Semaphore>> = HashMap::new();
    let mut entries: Vec<Entry> = Vec::new();
    for config in sources.into_iter().filter(|s| s.enabled) {
        let host = config
            .base_url
            .host_str()
            .unwrap_or("")
            .to_ascii_lowercase();
        let host = Arc::clone(
            hosts
                .entry(host)
                .or_insert_with(|| Arc::new(Semaphore::new(1))),
        );
        let cron = config.cron();
        if config.schedule.is_some() && cron.is_none() {
            tracing::warn!(source = %config.id, "invalid schedule; the source only resumes unfinished runs");
        }
        let mut entry = Entry {
            config: Arc::new(config),
            cron,
            next: None,
            running: false,
            host,
        };
        entry.next = next_fire(&entry, clock.now());
        entries.push(entry);
    }
    tracing::info!(
        sources = entries.len(),
        max_concurrent,
        "harvest scheduler started"
    );

    let stop = shutdown.child_token();
    let mut jobs: JoinSet<usize> = JoinSet::new();
    // Which entry each task runs, to clear its flag even if it panicked.
    let mut tasks: HashMap<tokio::task::Id, usize> = HashMap::new();
    let sweep_every = sweep_every.max(Duration::from_millis(50));
    let mut next_sweep = Instant::now();
    let spawn = |jobs: &mut JoinSet<usize>,
                 tasks: &mut HashMap<tokio::task::Id, usize>,
                 i: usize,
                 entry: &mut Entry,
                 only_resume: bool| {
        entry.running = true;
        let job = Arc::clone(&job);
        let config = Arc::clone(&entry.config);
        let host = Arc::clone(&entry.host);
        let global = Arc::clone(&global);
        let stop = stop.clone();
        let handle = jobs.spawn(async move {
            let permits = async {
                let h = host.acquire_owned().await;
                let g = global.acquire_owned().await;
                (h, g)
            };
            let _permits = tokio::select! {
                p = permits => p,
                _ = stop.cancelled() => return i,
            };
            if stop.is_cancelled() {
                return i;
            }
            job.run(config, stop, only_resume).await;
            i
        });
        tasks.insert(handle.id(), i);
    };

    loop {
        let now = clock.now();
        for (i, entry) in entries.iter_mut().enumerate() {
            let Some(due) = entry.next else { continue };
            if due > now {
                continue;
            }
            if entry.running {
                tracing::info!(source = %entry.config.id, "previous run still in progress; this fire is skipped");
            } else {
                spawn(&mut jobs, &mut tasks, i, entry, false);
            }
            entry.next = next_fire(entry, now);
        }
        if Instant::now() >= next_sweep {
            for (i, entry) in entries.iter_mut().enumerate() {
                if !entry.running && job.pending(Arc::clone(&entry.config)).await {
                    tracing::info!(source = %entry.config.id, "resuming an unfinished run");
                    spawn(&mut jobs, &mut tasks, i, entry, true);
                }
            }
            next_sweep = Instant::now() + sweep_every;
        }
        let wake = entries
            .iter()
            .filter_map(|e| e.next)
            .map(|t| clock.instant(t))
            .fold(next_sweep, Instant::min);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(done) = jobs.join_next_with_id() => {
                let id = match done {
                    Ok((id, _)) => id,
                    Err(e) => {
                        tracing::error!(error = %e, "a harvest task failed");
                        e.id()
                    }
                };
                if let Some(e) = tasks.remove(&id).and_then(|i| entries.get_mut(i)) {
                    e.running = false;
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }

    stop.cancel();
    tracing::info!(
        running = jobs.len(),
        "scheduler stopping; waiting for runs to commit"
    );
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while jobs.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            running = jobs.len(),
            "runs still busy at shutdown; aborted (they resume from their checkpoint)"
        );
        jobs.abort_all();
        while jobs.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use sheaf_domain::SourceId;
    use url::Url;

    use super::*;

    /// One run as the fake job saw it: source, start and end (seconds
    /// since the test began, tokio time).
    type Span = (String, f64, f64);

    /// A job that takes `duration` (or until stopped, plus `finish` to
    /// "commit its page" when it honours stop).
    struct Fake {
        started: Instant,
        duration: Duration,
        finish: Duration,
        honours_stop: bool,
        pending: Mutex<HashSet<String>>,
        runs: Mutex<Vec<Span>>,
        active: Mutex<(usize, usize)>,
    }

    impl Fake {
        fn new(duration: Duration) -> Arc<Self> {
            Arc::new(Fake {
                started: Instant::now(),
                duration,
                finish: Duration::ZERO,
                honours_stop: true,
                pending: Mutex::new(HashSet::new()),
                runs: Mutex::new(Vec::new()),
                active: Mutex::new((0, 0)),
            })
        }

        fn runs(&self) -> Vec<Span> {
            self.runs.lock().expect("lock").clone()
        }

        fn max_active(&self) -> usize {
            self.active.lock().expect("lock").1
        }
    }

    struct FakeJob(Arc<Fake>);

    impl Job for FakeJob {
        fn run(
            &self,
            source: Arc<SourceConfig>,
            stop: CancellationToken,
            _only_resume: bool,
        ) -> BoxFuture<'static, ()> {
            let fake = Arc::clone(&self.0);
            Box::pin(async move {
                let t0 = fake.started.elapsed().as_secs_f64();
                {
                    let mut a = fake.active.lock().expect("lock");
                    a.0 += 1;
                    a.1 = a.1.max(a.0);
                }
                fake.pending
                    .lock()
                    .expect("lock")
                    .remove(source.id.as_str());
                if fake.honours_stop {
                    tokio::select! {
                        _ = tokio::time::sleep(fake.duration) => {}
                        _ = stop.cancelled() => tokio::time::sleep(fake.finish).await,
                    }
                } else {
                    tokio::time::sleep(fake.duration).await;
                }
                fake.active.lock().expect("lock").0 -= 1;
                let t1 = fake.started.elapsed().as_secs_f64();
                fake.runs
                    .lock()
                    .expect("lock")
                    .push((source.id.to_string(), t0, t1));
            })
        }

        fn pending(&self, source: Arc<SourceConfig>) -> BoxFuture<'static, bool> {
            let pending = self
                .0
                .pending
                .lock()
                .expect("lock")
                .contains(source.id.as_str());
            Box::pin(async move { pending })
        }
    }

    fn source(id: &str, host: &str, schedule: Option<&str>) -> SourceConfig {
        let mut c = SourceConfig::new(
            SourceId::parse(id).expect("id"),
            Url::parse(&format!("http://{host}/oai")).expect("url"),
            "oai_dc",
        );
        c.schedule = schedule.map(str::to_owned);
        c
    }

    /// Runs the scheduler for `secs` of tokio time, then shuts it down;
    /// returns how long the shutdown took.
    async fn drive(
        fake: &Arc<Fake>,
        sources: Vec<SourceConfig>,
        max: usize,
        secs: u64,
    ) -> Duration {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(schedule(
            Arc::new(FakeJob(Arc::clone(fake))),
            sources,
            max,
            Duration::from_secs(30),
            shutdown.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let t = Instant::now();
        shutdown.cancel();
        task.await.expect("scheduler task");
        t.elapsed()
    }

    fn starts_of(runs: &[Span], id: &str) -> Vec<f64> {
        runs.iter().filter(|r| r.0 == id).map(|r| r.1).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn six_field_schedule_fires_every_ten_seconds() {
        let fake = Fake::new(Duration::from_secs(1));
        drive(
            &fake,
            vec![source("a", "h1", Some("*/10 * * * * *"))],
            4,
            65,
        )
        .await;
        let starts = starts_of(&fake.runs(), "a");
        assert!((6..=7).contains(&starts.len()), "{starts:?}");
        for w in starts.windows(2) {
            assert!((w[1] - w[0] - 10.0).abs() < 0.01, "{starts:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn five_field_schedule_fires_every_minute() {
        let fake = Fake::new(Duration::from_secs(5));
        drive(&fake, vec![source("a", "h1", Some("* * * * *"))], 4, 300).await;
        let starts = starts_of(&fake.runs(), "a");
        assert!((5..=6).contains(&starts.len()), "{starts:?}");
        for w in starts.windows(2) {
            assert!((w[1] - w[0] - 60.0).abs() < 0.01, "{starts:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_never_runs_twice_at_once() {
        let fake = Fake::new(Duration::from_secs(25));
        drive(
            &fake,
            vec![source("slow", "h1", Some("*/10 * * * * *"))],
            4,
            120,
        )
        .await;
        let mut runs = fake.runs();
        runs.sort_by(|a, b| a.1.total_cmp(&b.1));
        assert!(runs.len() >= 3, "{runs:?}");
        for w in runs.windows(2) {
            assert!(w[1].1 >= w[0].2, "overlap: {runs:?}");
        }
        assert_eq!(fake.max_active(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn global_limit_and_one_run_per_host() {
        let fake = Fake::new(Duration::from_secs(8));
        let every = Some("*/10 * * * * *");
        let sources = vec![
            source("a", "h1", every),
            source("b", "h2", every),
            source("c", "h3", every),
            source("d", "h4", every),
            source("same1", "shared", every),
            source("same2", "SHARED", every),
        ];
        drive(&fake, sources, 3, 60).await;
        assert_eq!(fake.max_active(), 3);
        let runs = fake.runs();
        let shared: Vec<&Span> = runs.iter().filter(|r| r.0.starts_with("same")).collect();
        assert!(shared.len() >= 2, "{runs:?}");
        for a in &shared {
            for b in &shared {
                if a != b {
                    assert!(
                        a.2 <= b.1 || b.2 <= a.1,
                        "same host overlapped: {a:?} {b:?}"
                    );
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_sources_never_run() {
        let fake = Fake::new(Duration::from_secs(1));
        let mut off = source("off", "h1", Some("*/10 * * * * *"));
        off.enabled = false;
        drive(&fake, vec![off], 2, 30).await;
        assert!(fake.runs().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn unfinished_runs_resume_at_start_without_a_schedule() {
        let fake = Fake::new(Duration::from_secs(3));
        fake.pending.lock().expect("lock").insert("crashed".into());
        drive(
            &fake,
            vec![source("crashed", "h1", None), source("idle", "h2", None)],
            2,
            100,
        )
        .await;
        let runs = fake.runs();
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0].0, "crashed");
        assert!(runs[0].1 < 0.01);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_the_current_page_commit() {
        let mut fake = Fake::new(Duration::from_secs(3600));
        if let Some(f) = Arc::get_mut(&mut fake) {
            f.finish = Duration::from_secs(2);
        }
        let took = drive(
            &fake,
            vec![source("a", "h1", Some("*/10 * * * * *"))],
            2,
            15,
        )
        .await;
        assert_eq!(took, Duration::from_secs(2));
        assert_eq!(fake.runs().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_aborts_runs_that_ignore_it_within_ten_seconds() {
        let mut fake = Fake::new(Duration::from_secs(3600));
        if let Some(f) = Arc::get_mut(&mut fake) {
            f.honours_stop = false;
        }
        let took = drive(
            &fake,
            vec![source("a", "h1", Some("*/10 * * * * *"))],
            2,
            15,
        )
        .await;
        assert_eq!(took, SHUTDOWN_GRACE);
        assert!(took < Duration::from_secs(10));
        assert!(fake.runs().is_empty(), "the aborted run never finished");
    }
}
