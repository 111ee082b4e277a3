//! One harvest run of one source, exactly once: Identify, pick up where
//! the source left off (an unfinished run's checkpoint, or a failed or
//! interrupted run's), else plan a new run incrementally from the previous
//! successful run's responseDate; then walk every set and window, one
//! resumption chain at a time, committing each page's items together with
//! the checkpoint that follows it in one store transaction.
//!
//! Depends on the store trait, the validation registry, [`crate::client`]
//! (requests), [`crate::register`] (page items) and [`crate::plan`]
//! (windows, checkpoints).
//!
//! ## Why a killed run loses and duplicates nothing
//!
//! The only durable effect of a page is its `commit_page` transaction,
//! which stores the page's versions and the checkpoint naming the request
//! after that page. A run killed anywhere either committed a page or did
//! not; on restart it resends the request its last committed checkpoint
//! names. Records of a page fetched again are the same documents, so the
//! store finds them unchanged (content hash) and writes nothing.
//!
//! ## Pipeline
//!
//! Fetching (HTTP and parsing), registration (extraction and validation)
//! and committing run as three stages joined by one-page channels, so the
//! provider, the validator and the database work at the same time while at
//! most a few pages are in memory. Only the last stage writes.
//!
//! ## Runs that end early
//!
//! A run stopped on request drops its request in flight, commits the
//! pages it already fetched (a handful at most: one per stage and
//! channel) and is marked `interrupted`; one that fails is marked `failed` with the reason. Either keeps its
//! checkpoint, and the next run of the source (unless given explicit
//! bounds) continues from it, inheriting its range and responseDate — so a
//! shutdown or a provider outage costs no work and no incremental gap. A
//! run killed outright stays `running` and is resumed in place.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use sheaf_domain::SourceId;
use sheaf_domain::model::{HarvestRun, RunCounts, RunStatus, Source};
use sheaf_store::{DynStore, StoreError};
use sheaf_validate::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, ClientError, ListRequest, ListVerb};
use crate::config::{ListMethod, SourceConfig};
use crate::guard::{LoopError, TokenLoopGuard};
use crate::parse::{Identify, ParsedRecord};
use crate::plan::{Checkpoint, PlanError, Span, incremental_from};
use crate::register::{RegisterError, RegisteredPage, Registrar};

/// How often one chain may be restarted after badResumptionToken before
/// the run gives up.
const MAX_CHAIN_RESTARTS: u32 = 3;

/// How far back a new run looks for a failed or interrupted run to continue.
const INHERIT_LOOKBACK: i64 = 20;

/// What the caller asks of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Harvest from this datestamp instead of incrementally.
    pub from: Option<String>,
    /// Harvest up to this datestamp (inclusive).
    pub until: Option<String>,
    /// Harvest everything, ignoring the previous runs.
    pub full: bool,
    /// Hold the source's lease for the run (daemons, and the CLI beside
    /// them): taken first, renewed before every commit and in the
    /// background, given up at the end.
    pub lease: Option<LeaseSpec>,
    /// Only continue an unfinished, interrupted or failed run; when there
    /// is none, end with [`HarvestError::NothingToResume`].
    pub only_resume: bool,
}

impl RunOptions {
    /// A full harvest (`sheaf harvest --full`): everything, whatever the
    /// previous runs did.
    pub fn full() -> Self {
        Self {
            full: true,
            ..Self::default()
        }
    }

    /// Whether the caller fixed the range (then no earlier run is continued).
    fn explicit(&self) -> bool {
        self.full || self.from.is_some() || self.until.is_some()
    }
}

/// A lease holder and how long each renewal lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSpec {
    pub holder: String,
    pub ttl: Duration,
}

/// What a run reports after each committed page.
#[derive(Debug, Clone, PartialEq)]
pub struct PageUpdate {
    pub run_id: i64,
    /// The run's counts so far (this process's share when resumed).
    pub totals: RunCounts,
    /// Records (and deletions, rejections) on the page just committed.
    pub page_items: usize,
    /// The set of the chain in progress.
    pub set: Option<String>,
    /// The window in progress.
    pub span: Span,
    /// Items committed in the current chain so far.
    pub chain_items: u64,
    /// The provider's completeListSize for the current chain, if sent.
    pub complete_list_size: Option<u64>,
}

/// Observes a run (the CLI's progress bar; tests).
pub trait Progress: Send + Sync {
    /// The run was started or resumed.
    fn started(&self, _run: &HarvestRun, _resumed: bool) {}
    /// A page was committed.
    fn page(&self, _update: &PageUpdate) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Why a harvest failed.
#[derive(Debug, thiserror::Error)]
pub enum HarvestError {
    /// Another holder has the source's lease (a daemon is harvesting it).
    #[error("source {source_id} is being harvested by another process (lease held)")]
    Busy { source_id: SourceId },
    /// The lease was taken over (it expired while this run stalled); the
    /// new holder continues the run, so this one stopped without writing.
    #[error("lost the lease on source {source_id}; another process continues the run")]
    LeaseLost { source_id: SourceId },
    #[error("protocol client: {0}")]
    Client(#[from] ClientError),
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error("invalid range: {0}")]
    Plan(#[from] PlanError),
    /// The resumption chain loops or makes no progress.
    #[error("{error}{}", set_note(.set))]
    Loop {
        error: LoopError,
        set: Option<String>,
    },
    /// badResumptionToken kept coming back after restarting the chain.
    #[error("badResumptionToken persists after {restarts} restarts of the window: {message}")]
    TokenRejected { restarts: u32, message: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// `only_resume` was asked and there is no run to continue (another
    /// process finished it first): nothing was done.
    #[error("source {source_id} has no run to resume")]
    NothingToResume { source_id: SourceId },
    /// A pipeline stage ended unexpectedly (a bug; logged).
    #[error("internal error: {0}")]
    Internal(String),
}

fn set_note(set: &Option<String>) -> String {
    set.as_ref()
        .map(|s| format!(" (set {s:?})"))
        .unwrap_or_default()
}

impl HarvestError {
    /// Whether the run this error ended must be left alone (it belongs to
    /// another lease holder, or none was touched).
    fn leaves_run_alone(&self) -> bool {
        matches!(
            self,
            HarvestError::Busy { .. }
                | HarvestError::LeaseLost { .. }
                | HarvestError::NothingToResume { .. }
        )
    }
}

/// Harvests one source: see the module docs. Returns the finished run
/// (`succeeded`, or `interrupted` when `stop` fired); on failure the run
/// is marked `failed` with the error's text and the error returned.
pub async fn harvest(
    registry: &Registry,
    config: &SourceConfig,
    options: &RunOptions,
    stop: &CancellationToken,
    progress: &dyn Progress,
) -> Result<HarvestRun, HarvestError> {
    let store = registry.store().clone();
    let Some(lease) = &options.lease else {
        return harvest_unleased(registry, config, options, stop, progress, None).await;
    };
    if !store
        .acquire_lease(&config.id, &lease.holder, lease.ttl)
        .await?
    {
        return Err(HarvestError::Busy {
            source_id: config.id.clone(),
        });
    }
    // Renews in the background so a long wait for the provider does not
    // let the lease lapse; a lost lease stops the run before its next commit.
    let lost = CancellationToken::new();
    let done = CancellationToken::new();
    let mut renewer = AbortOnDrop(tokio::spawn(renew_lease(
        store.clone(),
        config.id.clone(),
        lease.clone(),
        lost.clone(),
        done.clone(),
    )));
    let result = harvest_unleased(
        registry,
        config,
        options,
        stop,
        progress,
        Some((lease, &lost)),
    )
    .await;
    // A renewal already sent must land before the release, or it would
    // take the lease again after it.
    done.cancel();
    let _ = (&mut renewer.0).await;
    if !matches!(result, Err(HarvestError::LeaseLost { .. }))
        && let Err(e) = store.release_lease(&config.id, &lease.holder).await
    {
        tracing::warn!(source = %config.id, error = %e, "could not release the lease");
    }
    result
}

async fn renew_lease(
    store: DynStore,
    source: SourceId,
    lease: LeaseSpec,
    lost: CancellationToken,
    done: CancellationToken,
) {
    let period = (lease.ttl / 3).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        match store.acquire_lease(&source, &lease.holder, lease.ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(%source, holder = %lease.holder, "lease taken over");
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!(%source, error = %e, "lease renewal failed; retrying"),
        }
    }
}

type Lease<'a> = Option<(&'a LeaseSpec, &'a CancellationToken)>;

async fn harvest_unleased(
    registry: &Registry,
    config: &SourceConfig,
    options: &RunOptions,
    stop: &CancellationToken,
    progress: &dyn Progress,
    lease: Lease<'_>,
) -> Result<HarvestRun, HarvestError> {
    let store = registry.store().clone();
    store
        .upsert_source(&Source {
            id: config.id.clone(),
            base_url: config.base_url.to_string(),
            enabled: config.enabled,
            config: config.to_json(),
            updated_at: Utc::now(),
        })
        .await?;

    if options.only_resume
        && store.unfinished_run(&config.id).await?.is_none()
        && (options.explicit() || inheritable(&store, &config.id, None).await?.is_none())
    {
        return Err(HarvestError::NothingToResume {
            source_id: config.id.clone(),
        });
    }

    let prepared = async {
        let registrar = Registrar::new(registry, config).await?;
        let client = Client::new(config)?;
        let identify = client.identify().await?;
        Ok::<_, HarvestError>((registrar, client, identify))
    }
    .await;
    let (registrar, client, identify) = match prepared {
        Ok(p) => p,
        Err(e) => {
            record_failure(&store, &config.id, &e).await;
            return Err(e);
        }
    };

    let selected = select_run(&store, config, options, &identify).await?;
    let run_id = selected.run.id;
    tracing::info!(
        source = %config.id, run = run_id, resumed = selected.resumed,
        from = ?selected.checkpoint.range.from, until = ?selected.checkpoint.range.until,
        "harvest started"
    );
    progress.started(&selected.run, selected.resumed);

    let walk = Walk {
        store: store.clone(),
        run_id,
        config: Arc::new(config.clone()),
        client: Arc::new(client),
        registrar,
        fallback_date: identify.response_date.clone(),
        lease,
    };
    let outcome = match selected.commit_first {
        Some(response_date) => store
            .commit_page(
                run_id,
                Vec::new(),
                Some(selected.checkpoint.to_json()),
                response_date,
            )
            .await
            .map_err(HarvestError::from)
            .map(|_| ()),
        None => Ok(()),
    };
    let outcome = match outcome {
        Ok(()) => walk.run(selected.checkpoint, stop, progress).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(Ended::Done) => Ok(store.finish_run(run_id, RunStatus::Succeeded, None).await?),
        Ok(Ended::Stopped) => {
            tracing::info!(source = %config.id, run = run_id, "harvest interrupted on request");
            Ok(store
                .finish_run(
                    run_id,
                    RunStatus::Interrupted,
                    Some("stopped on request after committing its last page".into()),
                )
                .await?)
        }
        Err(e) if e.leaves_run_alone() => Err(e),
        Err(e) => {
            tracing::warn!(source = %config.id, run = run_id, error = %e, "harvest failed");
            if let Err(se) = store
                .finish_run(run_id, RunStatus::Failed, Some(e.to_string()))
                .await
            {
                tracing::error!(run = run_id, error = %se, "could not mark the run failed");
            }
            Err(e)
        }
    }
}

/// Records a failure that happened before a run was chosen: an unfinished
/// run is marked failed (its checkpoint stays usable), else a failed run
/// is added so the failure shows in the source's history.
async fn record_failure(store: &DynStore, source: &SourceId, error: &HarvestError) {
    let message = Some(error.to_string());
    let result = async {
        let run = match store.unfinished_run(source).await? {
            Some(run) => run,
            None => store.start_run(source, None, None).await?,
        };
        store.finish_run(run.id, RunStatus::Failed, message).await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(%source, error = %e, "could not record the failed harvest");
    }
}

/// The run to work on and where it starts.
struct Selected {
    run: HarvestRun,
    checkpoint: Checkpoint,
    resumed: bool,
    /// `Some(responseDate)`: commit the starting checkpoint at once (an
    /// inherited or freshly planned position must survive a crash before
    /// the first page).
    commit_first: Option<Option<String>>,
}

async fn select_run(
    store: &DynStore,
    config: &SourceConfig,
    options: &RunOptions,
    identify: &Identify,
) -> Result<Selected, HarvestError> {
    let source = &config.id;
    if let Some(run) = store.unfinished_run(source).await? {
        if options.explicit() {
            store
                .finish_run(
                    run.id,
                    RunStatus::Failed,
                    Some("abandoned for a new harvest with explicit bounds".into()),
                )
                .await?;
        } else {
            if let Some(cp) = run
                .checkpoint
                .as_ref()
                .map(Checkpoint::from_json)
                .transpose()?
            {
                return Ok(Selected {
                    run,
                    checkpoint: cp,
                    resumed: true,
                    commit_first: None,
                });
            }
            // Killed before its first commit: plan it again as it was
            // planned (continuing the same predecessor, or afresh).
            if let Some((prev, cp)) = inheritable(store, source, Some(run.id)).await? {
                return Ok(Selected {
                    run,
                    checkpoint: cp,
                    resumed: true,
                    commit_first: Some(prev.response_date),
                });
            }
            let cp = plan(
                config,
                identify,
                Span {
                    from: run.window_from.clone(),
                    until: run.window_until.clone(),
                },
            )?;
            return Ok(Selected {
                run,
                checkpoint: cp,
                resumed: true,
                commit_first: Some(None),
            });
        }
    }
    if !options.explicit()
        && let Some((prev, cp)) = inheritable(store, source, None).await?
    {
        let run = start(
            store,
            source,
            prev.window_from.clone(),
            prev.window_until.clone(),
        )
        .await?;
        tracing::info!(%source, run = run.id, previous = prev.id, "continuing the previous run's checkpoint");
        return Ok(Selected {
            run,
            checkpoint: cp,
            resumed: true,
            commit_first: Some(prev.response_date),
        });
    }
    let from = if options.full {
        None
    } else if options.from.is_some() {
        options.from.clone()
    } else {
        store.last_successful_run(source).await?.and_then(|r| {
            incremental_from(
                r.response_date.as_deref(),
                r.window_until.as_deref(),
                identify.granularity,
            )
        })
    };
    let cp = plan(
        config,
        identify,
        Span {
            from,
            until: options.until.clone(),
        },
    )?;
    let run = start(store, source, cp.range.from.clone(), cp.range.until.clone()).await?;
    Ok(Selected {
        run,
        checkpoint: cp,
        resumed: false,
        commit_first: Some(None),
    })
}

fn plan(config: &SourceConfig, identify: &Identify, range: Span) -> Result<Checkpoint, PlanError> {
    Checkpoint::start(
        identify.granularity,
        range,
        config.window,
        config.sets.clone(),
        identify.earliest_datestamp.as_deref(),
        Utc::now(),
    )
}

async fn start(
    store: &DynStore,
    source: &SourceId,
    from: Option<String>,
    until: Option<String>,
) -> Result<HarvestRun, HarvestError> {
    match store.start_run(source, from, until).await {
        Ok(run) => Ok(run),
        // Someone started a run between our check and now.
        Err(StoreError::Conflict(_)) => Err(HarvestError::Busy {
            source_id: source.clone(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The newest failed or interrupted run with a usable checkpoint, unless
/// a successful run came after it. Runs that failed before their first
/// commit (no checkpoint) are skipped.
async fn inheritable(
    store: &DynStore,
    source: &SourceId,
    exclude: Option<i64>,
) -> Result<Option<(HarvestRun, Checkpoint)>, HarvestError> {
    for run in store.list_runs(Some(source), INHERIT_LOOKBACK).await? {
        if Some(run.id) == exclude {
            continue;
        }
        match run.status {
            RunStatus::Succeeded => return Ok(None),
            RunStatus::Running => continue,
            RunStatus::Failed | RunStatus::Interrupted => {
                let Some(value) = &run.checkpoint else {
                    continue;
                };
                return Ok(match Checkpoint::from_json(value) {
                    Ok(cp) if !cp.done => Some((run, cp)),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(%source, run = run.id, error = %e, "ignoring an unreadable checkpoint");
                        None
                    }
                });
            }
        }
    }
    Ok(None)
}

/// How a walk ended without error.
enum Ended {
    Done,
    Stopped,
}

/// A fetched page, with the checkpoint that follows it.
struct Fetched {
    records: Vec<ParsedRecord>,
    response_date: Option<String>,
    next: Checkpoint,
    complete_list_size: Option<u64>,
    /// The page is the first of its chain.
    chain_start: bool,
}

/// A registered page, ready to commit.
struct Registered {
    page: RegisteredPage,
    response_date: Option<String>,
    next: Checkpoint,
    complete_list_size: Option<u64>,
    chain_start: bool,
}

struct Walk<'a> {
    store: DynStore,
    run_id: i64,
    config: Arc<SourceConfig>,
    client: Arc<Client>,
    registrar: Registrar,
    /// Identify's responseDate, stored when a page carries none.
    fallback_date: Option<String>,
    lease: Lease<'a>,
}

impl Walk<'_> {
    async fn run(
        self,
        start: Checkpoint,
        stop: &CancellationToken,
        progress: &dyn Progress,
    ) -> Result<Ended, HarvestError> {
        if start.done {
            return Ok(Ended::Done);
        }
        let (fetch_tx, mut fetch_rx) = mpsc::channel::<Result<Fetched, HarvestError>>(1);
        let (reg_tx, mut reg_rx) = mpsc::channel::<Result<Registered, HarvestError>>(1);
        let fetcher = Fetcher {
            client: Arc::clone(&self.client),
            config: Arc::clone(&self.config),
            guard: guard_from(&self.config, &start),
            position: start.clone(),
            restarts: 0,
        };
        // On stop, fetching ends at once (an in-flight request is dropped)
        // while pages already fetched are still registered and committed.
        let stop_fetching = CancellationToken::new();
        let _fetch_task = AbortOnDrop(tokio::spawn(fetcher.feed(fetch_tx, stop_fetching.clone())));
        let registrar = self.registrar.clone();
        let _register_task = AbortOnDrop(tokio::spawn(async move {
            while let Some(fetched) = fetch_rx.recv().await {
                let registered = match fetched {
                    Ok(f) => registrar
                        .register_page(f.records, Utc::now())
                        .await
                        .map(|page| Registered {
                            page,
                            response_date: f.response_date,
                            next: f.next,
                            complete_list_size: f.complete_list_size,
                            chain_start: f.chain_start,
                        })
                        .map_err(HarvestError::from),
                    Err(e) => Err(e),
                };
                let failed = registered.is_err();
                if reg_tx.send(registered).await.is_err() || failed {
                    return;
                }
            }
        }));

        let mut totals = RunCounts::default();
        let mut chain_items: u64 = 0;
        let mut list_size = None;
        loop {
            let stopping = stop_fetching.is_cancelled();
            let next = tokio::select! {
                biased;
                _ = lost(self.lease) => return Err(self.lease_lost()),
                _ = stop.cancelled(), if !stopping => {
                    stop_fetching.cancel();
                    continue;
                }
                next = reg_rx.recv() => next,
            };
            let page = match next {
                Some(Ok(page)) => page,
                Some(Err(e)) => return Err(e),
                None if stopping => return Ok(Ended::Stopped),
                None => return Err(HarvestError::Internal("the fetch stage ended early".into())),
            };
            if let Some((spec, lost)) = self.lease
                && (lost.is_cancelled()
                    || !self
                        .store
                        .acquire_lease(&self.config.id, &spec.holder, spec.ttl)
                        .await?)
            {
                return Err(self.lease_lost());
            }
            let page_items = page.page.items.len();
            let counts = self
                .commit(page.page, page.next.to_json(), page.response_date)
                .await?;
            totals.add(&counts);
            if page.chain_start {
                chain_items = 0;
                list_size = None;
            }
            chain_items += page_items as u64;
            list_size = page.complete_list_size.or(list_size);
            progress.page(&PageUpdate {
                run_id: self.run_id,
                totals,
                page_items,
                set: page.next.set().map(str::to_owned),
                span: page.next.span.clone(),
                chain_items,
                complete_list_size: list_size,
            });
            if page.next.done {
                return Ok(Ended::Done);
            }
        }
    }

    /// Commits a registered page with its checkpoint. A page the store
    /// refuses as stale (a record kept as unchanged changed meanwhile) is
    /// prepared in full and committed again.
    async fn commit(
        &self,
        mut page: RegisteredPage,
        checkpoint: Value,
        response_date: Option<String>,
    ) -> Result<RunCounts, HarvestError> {
        let response_date = response_date.or_else(|| self.fallback_date.clone());
        // Only a page with Keep items can be stale; only then are its items
        // (small, mostly keeps) copied for a second attempt.
        let items = if page.has_kept() {
            page.items.clone()
        } else {
            std::mem::take(&mut page.items)
        };
        let committed = self
            .store
            .commit_page(
                self.run_id,
                items,
                Some(checkpoint.clone()),
                response_date.clone(),
            )
            .await;
        match committed {
            Err(StoreError::Stale(why)) => {
                tracing::info!(source = %self.config.id, %why, "page changed while registering; preparing it in full");
                let items = self.registrar.expand(page, Utc::now()).await?;
                Ok(self
                    .store
                    .commit_page(self.run_id, items, Some(checkpoint), response_date)
                    .await?)
            }
            other => Ok(other?),
        }
    }

    fn lease_lost(&self) -> HarvestError {
        HarvestError::LeaseLost {
            source_id: self.config.id.clone(),
        }
    }
}

/// Resolves when the lease is lost; never without a lease.
async fn lost(lease: Lease<'_>) {
    match lease {
        Some((_, lost)) => lost.cancelled().await,
        None => std::future::pending().await,
    }
}

/// The fetch stage: walks the chains from a position, guarding against
/// token loops and stalls, recovering from badResumptionToken.
struct Fetcher {
    client: Arc<Client>,
    config: Arc<SourceConfig>,
    /// The request to send next.
    position: Checkpoint,
    /// Watches the current chain.
    guard: TokenLoopGuard,
    restarts: u32,
}

/// A loop guard for the chain `position` is in; a resumed chain's token
/// counts as already used.
fn guard_from(config: &SourceConfig, position: &Checkpoint) -> TokenLoopGuard {
    let mut guard = TokenLoopGuard::new(config.max_empty_pages);
    if let Some(t) = &position.token {
        guard.seed_token(t);
    }
    guard
}

impl Fetcher {
    async fn feed(
        mut self,
        tx: mpsc::Sender<Result<Fetched, HarvestError>>,
        stop: CancellationToken,
    ) {
        while !self.position.done {
            let fetched = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                fetched = self.next_page() => fetched,
            };
            let failed = fetched.is_err();
            if tx.send(fetched).await.is_err() || failed {
                return;
            }
        }
    }

    fn verb(&self) -> ListVerb {
        match self.config.list_method {
            ListMethod::ListRecords => ListVerb::ListRecords,
            ListMethod::IdentifiersThenGetRecord => ListVerb::ListIdentifiers,
        }
    }

    fn request(&self) -> ListRequest {
        let verb = self.verb();
        match &self.position.token {
            Some(token) => ListRequest::Resume {
                verb,
                token: token.clone(),
            },
            None => ListRequest::Start {
                verb,
                prefix: self.config.metadata_prefix.clone(),
                set: self.position.set().map(str::to_owned),
                from: self.position.span.from.clone(),
                until: self.position.span.until.clone(),
            },
        }
    }

    async fn next_page(&mut self) -> Result<Fetched, HarvestError> {
        let mut bad_token_retried = false;
        loop {
            let chain_start = self.position.token.is_none();
            let request = self.request();
            let page = match self.client.list(&request).await {
                Ok(page) => page,
                Err(ClientError::BadResumptionToken { message }) if !chain_start => {
                    if !bad_token_retried {
                        tracing::info!(source = %self.config.id, %message, "badResumptionToken; retrying once");
                        bad_token_retried = true;
                        continue;
                    }
                    self.restarts += 1;
                    if self.restarts > MAX_CHAIN_RESTARTS {
                        return Err(HarvestError::TokenRejected {
                            restarts: MAX_CHAIN_RESTARTS,
                            message,
                        });
                    }
                    tracing::warn!(
                        source = %self.config.id, set = ?self.position.set(),
                        from = ?self.position.span.from, until = ?self.position.span.until,
                        %message, "badResumptionToken again; restarting the window"
                    );
                    self.position = self.position.restart_chain();
                    self.guard = guard_from(&self.config, &self.position);
                    bad_token_retried = false;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for w in &page.warnings {
                tracing::debug!(source = %self.config.id, warning = %w, "page repaired");
            }
            self.guard
                .check(&page)
                .map_err(|error| HarvestError::Loop {
                    error,
                    set: self.position.set().map(str::to_owned),
                })?;
            let token = if page.no_records_match {
                None
            } else {
                page.next_token().map(str::to_owned)
            };
            let complete_list_size = page.token.as_ref().and_then(|t| t.complete_list_size);
            let records = match self.config.list_method {
                ListMethod::ListRecords => page.records,
                ListMethod::IdentifiersThenGetRecord => {
                    self.client
                        .expand_identifiers(&page.identifiers, &self.config.metadata_prefix)
                        .await?
                }
            };
            let next = self.position.after_page(token.as_deref())?;
            if next.token.is_none() {
                // A new chain starts: its guards start afresh.
                self.guard = guard_from(&self.config, &next);
                self.restarts = 0;
            }
            self.position = next.clone();
            return Ok(Fetched {
                records,
                response_date: page.response_date,
                next,
                complete_list_size,
                chain_start,
            });
        }
    }
}

/// The cores the harvest spreads its work over (2 when unknown).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The runtime Sheaf runs on (daemon and commands alike): tokio's
/// multi-thread runtime with blocking threads (record preparation,
/// validation, page parsing, DNS) capped at twice the cores, at least 4.
/// With tokio's default cap of 512, a harvest left about seven blocking
/// threads, each with a malloc arena of freed pages: the 1M-record
/// harvest benchmark peaked at 97 to 100 MB that way and at 84 to 87 MB
/// with 4 threads on 2 cores, at the same speed.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads((2 * cores()).max(4))
        .enable_all()
        .build()
}

/// Aborts a spawned task when dropped, so a cancelled or killed run leaves
/// no stage running.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads a run's checkpoint for display: set, window and whether a token
/// is pending.
pub fn describe_checkpoint(checkpoint: &Value) -> Option<String> {
    let cp = Checkpoint::from_json(checkpoint).ok()?;
    if cp.done {
        return Some("complete".into());
    }
    let mut s = String::new();
    if let Some(set) = cp.set() {
        s.push_str(&format!("set {set}, "));
    }
    s.push_str(&format!(
        "window {}..{}",
        cp.span.from.as_deref().unwrap_or(""),
        cp.span.until.as_deref().unwrap_or("")
    ));
    if cp.token.is_some() {
        s.push_str(&format!(", after page {}", cp.pages));
    }
    Some(s)
}
