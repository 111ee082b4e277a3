//! Sheaf: an OAI-PMH harvester and publishing bridge in one binary.
//!
//! This crate is the composition root: configuration ([`config`]), the
//! command line ([`cli`]) and the wiring of store, validation, harvester and
//! the HTTP faces into one application ([`startup`]). The model and the
//! faces live in the workspace crates (`crates/*`); only this crate names a
//! concrete store backend.

pub mod cli;
pub mod config;
pub mod health;
pub mod startup;
