//! What a run harvests and where it stands: the date windows (month, day
//! or hour, calendar-aligned, at the provider's granularity) of each set,
//! and the [`Checkpoint`] committed with every page so that a killed run
//! resumes exactly where its last committed page left it.
//!
//! Pure: depends on `sheaf-domain` (datestamps) and [`crate::config`]
//! (the window setting) only.

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sheaf_domain::{Datestamp, Granularity};

use crate::config::Window;

/// The checkpoint format written by this version.
const CHECKPOINT_VERSION: u32 = 1;

/// One `from`/`until` pair sent to the provider (both inclusive; `None`
/// leaves the bound open).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub from: Option<String>,
    pub until: Option<String>,
}

/// Where a run stands, committed with each page in the same transaction.
///
/// The run's plan (bounds, granularity, sets, windowing) is part of it, so
/// a resumed run walks exactly the windows the interrupted one planned,
/// even if the config or the clock moved on in between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version.
    pub v: u32,
    /// The provider's granularity, as Identify reported it at the start.
    pub granularity: Granularity,
    /// The run's whole range (windows cut it up).
    pub range: Span,
    /// The window size.
    pub window: WindowKind,
    /// The sets, in harvest order; empty = the whole repository.
    pub sets: Vec<String>,
    /// Index into `sets` of the chain in progress.
    pub set_index: usize,
    /// The window in progress.
    pub span: Span,
    /// The resumption token to send next; `None` = start the window.
    pub token: Option<String>,
    /// Pages committed in the current chain (for loop guards and logs).
    pub pages: u64,
    /// Every window of every set is harvested: only finishing is left.
    pub done: bool,
}

/// [`Window`] in the serialisable form the checkpoint stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    None,
    Month,
    Day,
    Hour,
}

impl From<Window> for WindowKind {
    fn from(w: Window) -> Self {
        match w {
            Window::None => WindowKind::None,
            Window::Month => WindowKind::Month,
            Window::Day => WindowKind::Day,
            Window::Hour => WindowKind::Hour,
        }
    }
}

/// Why a plan or checkpoint cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{what} {value:?} is not a datestamp (YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ)")]
    BadDate { what: &'static str, value: String },
    #[error("from {from} is after until {until}")]
    Inverted { from: String, until: String },
    #[error("stored checkpoint is unreadable: {0}")]
    Checkpoint(String),
}

impl Checkpoint {
    /// The first position of a new run over `range`.
    ///
    /// With windowing, an open lower bound starts at `earliest` (Identify's
    /// earliestDatestamp) and an open upper bound ends at `now`; without an
    /// earliest datestamp the range is harvested as one chain.
    pub fn start(
        granularity: Granularity,
        range: Span,
        window: Window,
        sets: Vec<String>,
        earliest: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, PlanError> {
        let from = parse_bound("from", range.from.as_deref(), granularity)?;
        let until = parse_bound("until", range.until.as_deref(), granularity)?;
        if let (Some(f), Some(u)) = (from, until)
            && f.start() > u.end_inclusive()
        {
            return Err(PlanError::Inverted {
                from: f.to_string(),
                until: u.to_string(),
            });
        }
        let range = Span {
            from: from.map(|d| d.to_string()),
            until: until.map(|d| d.to_string()),
        };
        let mut window = WindowKind::from(window);
        if window == WindowKind::Hour && granularity == Granularity::Day {
            // A day-granular provider cannot be asked for hours.
            window = WindowKind::Day;
        }
        let earliest = earliest
            .and_then(|e| Datestamp::parse_lenient(e).ok())
            .map(|d| d.at(granularity));
        let lower = from.or(earliest);
        let (window, range) = match (window, lower) {
            (WindowKind::None, _) | (_, None) => (WindowKind::None, range),
            (w, Some(lower)) => {
                let upper = until.unwrap_or_else(|| Datestamp::new(now, granularity));
                (
                    w,
                    Span {
                        from: Some(lower.to_string()),
                        until: Some(upper.to_string()),
                    },
                )
            }
        };
        let mut cp = Checkpoint {
            v: CHECKPOINT_VERSION,
            granularity,
            span: range.clone(),
            range,
            window,
            sets,
            set_index: 0,
            token: None,
            pages: 0,
            done: false,
        };
        cp.span = cp.first_span()?;
        if cp.span_is_empty()? {
            cp.done = true;
        }
        Ok(cp)
    }

    /// Reads a stored checkpoint.
    pub fn from_json(value: &Value) -> Result<Self, PlanError> {
        let cp: Checkpoint = serde_json::from_value(value.clone())
            .map_err(|e| PlanError::Checkpoint(e.to_string()))?;
        if cp.v != CHECKPOINT_VERSION {
            return Err(PlanError::Checkpoint(format!(
                "format version {} (this build reads {CHECKPOINT_VERSION})",
                cp.v
            )));
        }
        Ok(cp)
    }

    /// The form committed to the store.
    pub fn to_json(&self) -> Value {
        // A plain struct of strings and numbers always serialises.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The set of the chain in progress (`None`: no set).
    pub fn set(&self) -> Option<&str> {
        self.sets.get(self.set_index).map(String::as_str)
    }

    /// After a page whose token is `next` (`None` or empty: chain over).
    pub fn after_page(&self, next: Option<&str>) -> Result<Self, PlanError> {
        let mut cp = self.clone();
        match next.filter(|t| !t.trim().is_empty()) {
            Some(t) => {
                cp.token = Some(t.to_owned());
                cp.pages += 1;
            }
            None => cp.advance()?,
        }
        Ok(cp)
    }

    /// The same chain from its start (after a badResumptionToken).
    pub fn restart_chain(&self) -> Self {
        Checkpoint {
            token: None,
            pages: 0,
            ..self.clone()
        }
    }

    /// Moves to the next window, or the next set's first window, or done.
    pub fn advance(&mut self) -> Result<(), PlanError> {
        self.token = None;
        self.pages = 0;
        loop {
            match self.next_span()? {
                Some(span) => self.span = span,
                None => {
                    if self.set_index + 1 < self.sets.len() {
                        self.set_index += 1;
                        self.span = self.first_span()?;
                    } else {
                        self.done = true;
                        return Ok(());
                    }
                }
            }
            if !self.span_is_empty()? {
                return Ok(());
            }
        }
    }

    /// How many windows the current set has in all, and which one is in
    /// progress (1-based), for progress reports.
    pub fn window_position(&self) -> Result<(usize, usize), PlanError> {
        let mut span = self.first_span()?;
        let mut index = 0;
        let mut total = 1;
        let mut probe = self.clone();
        loop {
            if span == self.span {
                index = total;
            }
            probe.span = span.clone();
            match probe.next_span()? {
                Some(s) => {
                    span = s;
                    total += 1;
                }
                None => return Ok((index.max(1), total)),
            }
        }
    }

    fn bounds(&self) -> Result<(Option<Datestamp>, Option<Datestamp>), PlanError> {
        Ok((
            parse_bound("from", self.range.from.as_deref(), self.granularity)?,
            parse_bound("until", self.range.until.as_deref(), self.granularity)?,
        ))
    }

    fn first_span(&self) -> Result<Span, PlanError> {
        let (from, until) = self.bounds()?;
        match (self.window, from, until) {
            (WindowKind::None, _, _) | (_, None, _) | (_, _, None) => Ok(self.range.clone()),
            (w, Some(from), Some(until)) => Ok(self.window_at(w, from, until)),
        }
    }

    fn next_span(&self) -> Result<Option<Span>, PlanError> {
        if self.window == WindowKind::None {
            return Ok(None);
        }
        let (_, until) = self.bounds()?;
        let current = parse_bound("window until", self.span.until.as_deref(), self.granularity)?;
        let (Some(until), Some(current)) = (until, current) else {
            return Ok(None);
        };
        if current.end_inclusive() >= until.end_inclusive() {
            return Ok(None);
        }
        let next = Datestamp::new(
            current.end_inclusive() + TimeDelta::microseconds(1),
            self.granularity,
        );
        Ok(Some(self.window_at(self.window, next, until)))
    }

    /// The window of kind `w` starting at `from`, cut at `until`.
    fn window_at(&self, w: WindowKind, from: Datestamp, until: Datestamp) -> Span {
        let start = from.start();
        let boundary = next_boundary(w, start);
        let last = Datestamp::new(boundary - TimeDelta::microseconds(1), self.granularity);
        let last = if last.start() > until.start() {
            until
        } else {
            last
        };
        Span {
            from: Some(from.to_string()),
            until: Some(last.to_string()),
        }
    }

    fn span_is_empty(&self) -> Result<bool, PlanError> {
        let from = parse_bound("window from", self.span.from.as_deref(), self.granularity)?;
        let until = parse_bound("window until", self.span.until.as_deref(), self.granularity)?;
        Ok(matches!((from, until), (Some(f), Some(u)) if f.start() > u.end_inclusive()))
    }
}

/// The first instant of the calendar unit after the one `t` is in.
fn next_boundary(w: WindowKind, t: DateTime<Utc>) -> DateTime<Utc> {
    let day_start = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|n| n.and_utc());
    let next = match w {
        WindowKind::Month => NaiveDate::from_ymd_opt(t.year(), t.month(), 1)
            .and_then(|d| d.checked_add_months(Months::new(1)))
            .and_then(day_start),
        WindowKind::Day => t.date_naive().succ_opt().and_then(day_start),
        WindowKind::Hour => t
            .with_minute(0)
            .and_then(|h| h.with_second(0))
            .and_then(|h| h.with_nanosecond(0))
            .map(|h| h + TimeDelta::hours(1)),
        WindowKind::None => None,
    };
    next.unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn parse_bound(
    what: &'static str,
    value: Option<&str>,
    granularity: Granularity,
) -> Result<Option<Datestamp>, PlanError> {
    value
        .map(|v| {
            Datestamp::parse_lenient(v)
                .map(|d| {
                    if d.granularity() == Granularity::Seconds && granularity == Granularity::Day {
                        d.at(Granularity::Day)
                    } else {
                        d
                    }
                })
                .map_err(|_| PlanError::BadDate {
                    what,
                    value: v.to_owned(),
                })
        })
        .transpose()
}

/// The next run's `from`: the previous successful run's `responseDate` at
/// the provider's granularity — never the newest record datestamp, which
/// misses records committed upstream out of datestamp order. When that run
/// had an explicit `until` before its responseDate, the `until` is used
/// instead, so the stretch between them is not skipped.
pub fn incremental_from(
    response_date: Option<&str>,
    previous_until: Option<&str>,
    granularity: Granularity,
) -> Option<String> {
    let response = response_date.and_then(|r| Datestamp::parse_lenient(r).ok());
    let until = previous_until.and_then(|u| Datestamp::parse_lenient(u).ok());
    let pick = match (response, until) {
        (Some(r), Some(u)) if u.start() < r.start() => Some(u),
        (Some(r), _) => Some(r),
        (None, u) => u,
    }?;
    Some(pick.at(granularity).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-10T12:34:56Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    fn spans(mut cp: Checkpoint) -> Vec<(Option<String>, Option<String>, Option<String>)> {
        let mut out = Vec::new();
        while !cp.done {
            out.push((
                cp.set().map(str::to_owned),
                cp.span.from.clone(),
                cp.span.until.clone(),
            ));
            cp.advance().expect("advance");
        }
        out
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn month_windows_are_calendar_aligned_and_cut_at_until() {
        let cp = Checkpoint::start(
            Granularity::Day,
            Span {
                from: s("2025-12-15"),
                until: None,
            },
            Window::Month,
            vec![],
            None,
            now(),
        )
        .expect("plan");
        assert_eq!(
            spans(cp),
            vec![
                (None, s("2025-12-15"), s("2025-12-31")),
                (None, s("2026-01-01"), s("2026-01-31")),
                (None, s("2026-02-01"), s("2026-02-28")),
                (None, s("2026-03-01"), s("2026-03-10")),
            ]
        );
    }

    #[test]
    fn hour_windows_at_seconds_granularity_from_earliest() {
        let cp = Checkpoint::start(
            Granularity::Seconds,
            Span {
                from: None,
                until: s("2026-03-10T02:30:00Z"),
            },
            Window::Hour,
            vec!["a".into(), "b".into()],
            Some("2026-03-10T01:15:00Z"),
            now(),
        )
        .expect("plan");
        let all = spans(cp);
        assert_eq!(all.len(), 4);
        assert_eq!(
            all[0],
            (s("a"), s("2026-03-10T01:15:00Z"), s("2026-03-10T01:59:59Z"))
        );
        assert_eq!(
            all[1],
            (s("a"), s("2026-03-10T02:00:00Z"), s("2026-03-10T02:30:00Z"))
        );
        assert_eq!(all[2].0, s("b"));
    }

    #[test]
    fn no_window_is_one_chain_per_set() {
        let cp = Checkpoint::start(
            Granularity::Seconds,
            Span {
                from: s("2026-01-01T00:00:00Z"),
                until: None,
            },
            Window::None,
            vec![],
            None,
            now(),
        )
        .expect("plan");
        assert_eq!(spans(cp), vec![(None, s("2026-01-01T00:00:00Z"), None)]);
    }

    #[test]
    fn hour_windows_fall_back_to_days_for_day_granularity() {
        let cp = Checkpoint::start(
            Granularity::Day,
            Span {
                from: s("2026-03-09"),
                until: s("2026-03-10"),
            },
            Window::Hour,
            vec![],
            None,
            now(),
        )
        .expect("plan");
        assert_eq!(cp.window, WindowKind::Day);
        assert_eq!(spans(cp).len(), 2);
    }

    #[test]
    fn inverted_and_bad_bounds_are_errors() {
        let bad = Checkpoint::start(
            Granularity::Day,
            Span {
                from: s("2026-03-09"),
                until: s("2026-03-01"),
            },
            Window::None,
            vec![],
            None,
            now(),
        );
        assert!(matches!(bad, Err(PlanError::Inverted { .. })));
        let bad = Checkpoint::start(
            Granularity::Day,
            Span {
                from: s("yesterday"),
                until: None,
            },
            Window::None,
            vec![],
            None,
            now(),
        );
        assert!(matches!(bad, Err(PlanError::BadDate { .. })));
    }

    #[test]
    fn checkpoint_round_trips_and_tokens_advance() {
        let cp = Checkpoint::start(
            Granularity::Day,
            Span {
                from: s("2026-02-27"),
                until: s("2026-03-02"),
            },
            Window::Day,
            vec![],
            None,
            now(),
        )
        .expect("plan");
        let next = cp.after_page(Some("tok1")).expect("page");
        assert_eq!(next.token.as_deref(), Some("tok1"));
        assert_eq!(next.span, cp.span);
        let back = Checkpoint::from_json(&next.to_json()).expect("read");
        assert_eq!(back, next);
        let moved = next.after_page(Some("  ")).expect("page");
        assert_eq!(moved.token, None);
        assert_eq!(moved.span.from, s("2026-02-28"));
        assert_eq!(moved.window_position().expect("pos"), (2, 4));
        assert_eq!(next.restart_chain().token, None);
        assert!(Checkpoint::from_json(&serde_json::json!({"v": 99})).is_err());
    }

    #[test]
    fn incremental_from_uses_response_date_at_granularity() {
        assert_eq!(
            incremental_from(Some("2026-03-10T12:34:56Z"), None, Granularity::Day),
            s("2026-03-10")
        );
        assert_eq!(
            incremental_from(Some("2026-03-10T12:34:56Z"), None, Granularity::Seconds),
            s("2026-03-10T12:34:56Z")
        );
        assert_eq!(
            incremental_from(
                Some("2026-03-10T12:34:56Z"),
                Some("2026-01-01"),
                Granularity::Day
            ),
            s("2026-01-01")
        );
        assert_eq!(incremental_from(None, None, Granularity::Day), None);
    }
}
