//! The harvest commands of the `sheaf` binary, as functions returning the
//! process exit code: `sheaf harvest <source>` (with a progress bar and a
//! summary) and `sheaf runs [<source>]`. The binary parses arguments and
//! loads configs; these print and decide the exit code.
//!
//! Exit codes: 0 success, 1 the harvest failed (or the store did), 2 bad
//! arguments, 3 another process is harvesting the source, 130 interrupted
//! by Ctrl-C (after committing its last page; the next run continues).
//!
//! Depends on [`crate::run`], the store trait and indicatif.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sheaf_domain::model::{HarvestRun, RunStatus};
use sheaf_domain::{Datestamp, SourceId};
use sheaf_store::DynStore;
use sheaf_validate::Registry;
use tokio_util::sync::CancellationToken;

use crate::config::SourceConfig;
use crate::run::{self, HarvestError, LeaseSpec, PageUpdate, Progress, RunOptions};

/// Exit code: the harvest failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: bad arguments.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: another process holds the source's lease.
pub const EXIT_BUSY: i32 = 3;
/// Exit code: stopped by Ctrl-C after a clean commit.
pub const EXIT_INTERRUPTED: i32 = 130;

/// How long the CLI's lease lasts between renewals.
const CLI_LEASE_TTL: Duration = Duration::from_secs(300);

/// `sheaf harvest <source> [--from D] [--until D] [--full]`: harvests one
/// source now, holding its lease (so a daemon on the same database waits),
/// with a progress bar on a terminal and a summary of the counts.
pub async fn harvest(
    registry: &Registry,
    config: &SourceConfig,
    from: Option<String>,
    until: Option<String>,
    full: bool,
) -> i32 {
    for (flag, value) in [("--from", &from), ("--until", &until)] {
        if let Some(v) = value
            && Datestamp::parse(v).is_err()
        {
            eprintln!(
                "error: {flag} {v:?} is not a datestamp (YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ)"
            );
            return EXIT_USAGE;
        }
    }
    if full && from.is_some() {
        eprintln!("error: --full harvests from the beginning; it cannot be combined with --from");
        return EXIT_USAGE;
    }
    let options = RunOptions {
        from,
        until,
        full,
        lease: Some(LeaseSpec {
            holder: format!("cli-{}", crate::schedule::default_holder_id()),
            ttl: CLI_LEASE_TTL,
        }),
        only_resume: false,
    };
    let stop = CancellationToken::new();
    let on_ctrl_c = {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nstopping after the current page…");
                stop.cancel();
            }
        })
    };
    let bar = Bar::new(config.id.as_str());
    let result = run::harvest(registry, config, &options, &stop, &bar).await;
    on_ctrl_c.abort();
    bar.finish();
    match result {
        Ok(run) => {
            print_summary(&run);
            if run.status == RunStatus::Interrupted {
                EXIT_INTERRUPTED
            } else {
                0
            }
        }
        Err(e @ HarvestError::Busy { .. }) => {
            eprintln!("error: {e}");
            EXIT_BUSY
        }
        Err(e) => {
            eprintln!("harvest of {} failed: {e}", config.id);
            if let Ok(Some(run)) = registry
                .store()
                .list_runs(Some(&config.id), 1)
                .await
                .map(|r| r.into_iter().next())
            {
                print_summary(&run);
            }
            EXIT_FAILED
        }
    }
}

/// `sheaf runs [<source>]`: the most recent runs, newest first, with their
/// outcome and counts.
pub async fn runs(store: &DynStore, source: Option<&str>) -> i32 {
    let source = match source.map(SourceId::parse).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let runs = match store.list_runs(source.as_ref(), 50).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    if runs.is_empty() {
        println!("no harvest runs yet");
        return 0;
    }
    print!("{}", format_runs(&runs));
    0
}

/// The `sheaf runs` table.
pub fn format_runs(runs: &[HarvestRun]) -> String {
    let mut out = format!(
        "{:>6}  {:<20} {:<11} {:<20} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8}  {}\n",
        "RUN",
        "SOURCE",
        "STATUS",
        "STARTED",
        "SEEN",
        "CREATED",
        "UPDATED",
        "UNCHANGED",
        "DELETED",
        "REJECTED",
        "MESSAGE"
    );
    for r in runs {
        let c = r.counts;
        out.push_str(&format!(
            "{:>6}  {:<20} {:<11} {:<20} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8}  {}\n",
            r.id,
            r.source_id.as_str(),
            r.status.as_str(),
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            c.seen,
            c.created,
            c.updated,
            c.unchanged,
            c.deleted,
            c.rejected,
            r.message.as_deref().unwrap_or("").replace('\n', " "),
        ));
    }
    out
}

fn print_summary(run: &HarvestRun) {
    let c = run.counts;
    let took = run
        .finished_at
        .map(|f| (f - run.started_at).to_std().unwrap_or_default())
        .unwrap_or_default();
    println!(
        "run {} of {}: {} in {:.1}s",
        run.id,
        run.source_id,
        run.status.as_str(),
        took.as_secs_f64()
    );
    println!(
        "  seen {}  created {}  updated {}  unchanged {}  deleted {}  rejected {}",
        c.seen, c.created, c.updated, c.unchanged, c.deleted, c.rejected
    );
    println!(
        "  range {}..{}  responseDate {}",
        run.window_from.as_deref().unwrap_or("(start)"),
        run.window_until.as_deref().unwrap_or("(now)"),
        run.response_date.as_deref().unwrap_or("-")
    );
    if let Some(m) = &run.message {
        println!("  {m}");
    }
}

/// The progress bar: records, records/s and, when the provider sends
/// completeListSize, a length and an ETA. Hidden when stderr is not a
/// terminal (under systemd, in pipes).
struct Bar {
    bar: ProgressBar,
}

impl Bar {
    fn new(source: &str) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_prefix(source.to_owned());
        bar.set_style(Self::open_style());
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar { bar }
    }

    fn open_style() -> ProgressStyle {
        ProgressStyle::with_template("{spinner} {prefix} {pos} records ({per_sec}) {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
    }

    fn sized_style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{spinner} {prefix} [{wide_bar}] {pos}/{len} records ({per_sec}, ETA {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn started(&self, run: &HarvestRun, resumed: bool) {
        if resumed {
            self.bar.set_message(format!("(resuming run {})", run.id));
        }
    }

    fn page(&self, u: &PageUpdate) {
        let seen = u.totals.seen.max(0) as u64;
        match u.complete_list_size {
            Some(size) => {
                if self.bar.length().is_none() {
                    self.bar.set_style(Self::sized_style());
                }
                let before_chain = seen.saturating_sub(u.chain_items);
                self.bar.set_length((before_chain + size).max(seen));
            }
            None => {
                if self.bar.length().is_some() {
                    self.bar.unset_length();
                    self.bar.set_style(Self::open_style());
                }
            }
        }
        self.bar.set_position(seen);
        let mut msg = String::new();
        if let Some(set) = &u.set {
            msg.push_str(&format!("set {set} "));
        }
        if u.span.from.is_some() || u.span.until.is_some() {
            msg.push_str(&format!(
                "{}..{}",
                u.span.from.as_deref().unwrap_or(""),
                u.span.until.as_deref().unwrap_or("")
            ));
        }
        self.bar.set_message(msg);
    }
}
