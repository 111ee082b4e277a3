//! Sheaf's OAI-PMH harvester.
//!
//! Protocol half: source configs ([`config`]), the HTTP client with its
//! resilience ([`client`], [`retry`], [`guard`]), response parsing and
//! repair ([`parse`]) and the resource-id path subset ([`resource`]).
//! Registration half (store writes, exactly-once runs, scheduling, CLI)
//! builds on these.
//!
//! Depends on `sheaf-domain`, `sheaf-store` (trait only) and
//! `sheaf-validate`; never on a concrete store backend.

pub mod cli;
pub mod client;
pub mod config;
pub mod describe;
pub mod guard;
pub mod parse;
pub mod plan;
pub mod register;
mod repair;
pub mod resource;
pub mod retry;
pub mod run;
pub mod schedule;

pub use client::{Client, ClientError, ClientStats, ListRequest, ListVerb};
pub use config::{
    ConfigError, ListMethod, ResourceIdRule, SourceConfig, Window, check_dir, load_dir, load_file,
};
pub use guard::{LoopError, TokenLoopGuard};
pub use parse::{
    Header, Identify, OaiErrorCode, Page, PageError, ParsedRecord, ResumptionToken, parse_identify,
    parse_page,
};
pub use retry::{RecordingSleeper, RetryPolicy, Sleeper, TokioSleeper};
