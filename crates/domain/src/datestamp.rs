//! OAI-PMH datestamps: UTC, at day (`YYYY-MM-DD`) or seconds
//! (`YYYY-MM-DDThh:mm:ssZ`) granularity.

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// The two granularities OAI-PMH 2.0 allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Granularity {
    /// `YYYY-MM-DD`
    Day,
    /// `YYYY-MM-DDThh:mm:ssZ`
    Seconds,
}

impl Granularity {
    /// The spelling used in Identify's `<granularity>`.
    pub fn as_oai(self) -> &'static str {
        match self {
            Granularity::Day => "YYYY-MM-DD",
            Granularity::Seconds => "YYYY-MM-DDThh:mm:ssZ",
        }
    }

    /// Reads Identify's `<granularity>`; anything unknown is taken as day,
    /// the only granularity every provider must accept.
    pub fn from_oai(s: &str) -> Granularity {
        if s.trim() == "YYYY-MM-DDThh:mm:ssZ" {
            Granularity::Seconds
        } else {
            Granularity::Day
        }
    }
}

/// Why a string is not an OAI datestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a datestamp of the form YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ")]
pub struct DatestampError(pub String);

/// A UTC instant together with the granularity it was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Datestamp {
    time: DateTime<Utc>,
    granularity: Granularity,
}

impl Datestamp {
    /// Parses either granularity, strictly (no offsets other than `Z`, no
    /// fractional seconds), as OAI-PMH arguments require.
    pub fn parse(s: &str) -> Result<Self, DatestampError> {
        let err = || DatestampError(s.to_owned());
        match s.len() {
            10 => {
                let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| err())?;
                Ok(Self {
                    time: NaiveDateTime::new(d, NaiveTime::MIN).and_utc(),
                    granularity: Granularity::Day,
                })
            }
            20 => {
                let t =
                    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ").map_err(|_| err())?;
                Ok(Self {
                    time: t.and_utc(),
                    granularity: Granularity::Seconds,
                })
            }
            _ => Err(err()),
        }
    }

    /// Parses what providers actually send in headers and responseDate:
    /// strict forms first, then RFC 3339 with offsets or fractions, which
    /// some providers emit although the protocol forbids it.
    pub fn parse_lenient(s: &str) -> Result<Self, DatestampError> {
        let s = s.trim();
        Self::parse(s).or_else(|_| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| Self::new(t.with_timezone(&Utc), Granularity::Seconds))
                .map_err(|_| DatestampError(s.to_owned()))
        })
    }

    /// Truncates `time` to `granularity`.
    pub fn new(time: DateTime<Utc>, granularity: Granularity) -> Self {
        let secs = time.timestamp();
        let truncated = match granularity {
            Granularity::Seconds => secs,
            Granularity::Day => secs - secs.rem_euclid(86_400),
        };
        Self {
            time: DateTime::from_timestamp(truncated, 0).unwrap_or(time),
            granularity,
        }
    }

    /// The first instant this datestamp covers.
    pub fn start(&self) -> DateTime<Utc> {
        self.time
    }

    /// The last instant this datestamp covers (inclusive), as used for
    /// `until`: a day covers up to 23:59:59.999999, a second to .999999.
    pub fn end_inclusive(&self) -> DateTime<Utc> {
        let span = match self.granularity {
            Granularity::Day => TimeDelta::days(1),
            Granularity::Seconds => TimeDelta::seconds(1),
        };
        self.time + span - TimeDelta::microseconds(1)
    }

    /// The granularity it was written in.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// The same instant at another granularity (truncating).
    pub fn at(&self, granularity: Granularity) -> Self {
        Self::new(self.time, granularity)
    }
}

impl fmt::Display for Datestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.granularity {
            Granularity::Day => write!(f, "{}", self.time.format("%Y-%m-%d")),
            Granularity::Seconds => {
                f.write_str(&self.time.to_rfc3339_opts(SecondsFormat::Secs, true))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_both_granularities() {
        let d = Datestamp::parse("2026-11-23").expect("day");
        assert_eq!(d.granularity(), Granularity::Day);
        assert_eq!(d.to_string(), "2026-11-23");
        let s = Datestamp::parse("2026-11-23T10:00:05Z").expect("seconds");
        assert_eq!(s.granularity(), Granularity::Seconds);
        assert_eq!(s.to_string(), "2026-11-23T10:00:05Z");
        assert!(d.start() < s.start() && s.start() < d.end_inclusive());
    }

    #[test]
    fn rejects_non_oai_forms() {
        for bad in [
            "2026-11-23T10:00:05+01:00",
            "2026-11-23T10:00:05.5Z",
            "2026-11-23 10:00:05",
            "2026-13-01",
            "23.11.2026",
            "",
        ] {
            assert!(Datestamp::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn lenient_accepts_offsets() {
        let d = Datestamp::parse_lenient(" 2026-11-23T11:00:05+01:00 ").expect("rfc3339");
        assert_eq!(d.to_string(), "2026-11-23T10:00:05Z");
    }

    proptest! {
        #[test]
        fn seconds_round_trip(secs in 0i64..253_402_300_799) {
            let t = DateTime::from_timestamp(secs, 0).expect("in range");
            let d = Datestamp::new(t, Granularity::Seconds);
            prop_assert_eq!(Datestamp::parse(&d.to_string()).expect("parses"), d);
        }

        #[test]
        fn day_round_trip(secs in 0i64..253_402_300_799) {
            let t = DateTime::from_timestamp(secs, 0).expect("in range");
            let d = Datestamp::new(t, Granularity::Day);
            prop_assert_eq!(Datestamp::parse(&d.to_string()).expect("parses"), d);
            prop_assert!(d.start() <= t && t <= d.end_inclusive());
        }
    }
}
