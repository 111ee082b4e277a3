//! Sheaf's OAI-PMH 2.0 data provider, served at `/oai` (GET and POST).
//!
//! Owns the protocol face only: requests are parsed into a typed request
//! ([`request`]), answered from the [`sheaf_store::Store`] trait
//! ([`service`]) and written as streamed XML ([`xml`], [`dc`]). Lists are
//! consistent snapshots paged by stateless, signed keyset tokens
//! ([`token`]). Depends on `sheaf-domain` and the store trait, never on a
//! concrete backend.

mod config;
mod dc;
mod error;
mod request;
mod service;
mod token;
mod xml;
mod xslt;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use sheaf_store::DynStore;
use tower_http::compression::CompressionLayer;

pub use config::{ConfigError, CrosswalkConfig, OaiConfig};

use service::Oai;

/// The `/oai` routes (GET and POST), with gzip/deflate response compression.
///
/// Fails when the `[oai]` section is unusable (an identifier or address
/// OAI-PMH forbids, a crosswalk stylesheet that is unsafe or does not
/// compile): the endpoint is not served with a config whose responses
/// would not validate.
pub fn router(store: DynStore, config: OaiConfig) -> Result<Router, ConfigError> {
    config.check()?;
    let crosswalks = xslt::Crosswalks::load(&config.crosswalks)?;
    let oai = Arc::new(Oai::new(store, config, crosswalks));
    Ok(Router::new()
        .route("/oai", get(get_oai).post(post_oai))
        .with_state(oai)
        .layer(CompressionLayer::new()))
}

/// Checks an `[oai]` section completely, as the endpoint would at
/// startup: its values and every crosswalk stylesheet (read, audited and
/// compiled). For `sheaf config check`.
pub fn check_config(config: &OaiConfig) -> Result<(), ConfigError> {
    config.check()?;
    xslt::Crosswalks::load(&config.crosswalks).map(drop)
}

async fn get_oai(
    State(oai): State<Arc<Oai>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let args = pairs(uri.query().unwrap_or("").as_bytes());
    oai.respond(args, &uri, &headers).await
}

/// POST takes its arguments from the form body (and, leniently, from the
/// query string too; an argument given in both counts as repeated).
async fn post_oai(
    State(oai): State<Arc<Oai>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut args = pairs(uri.query().unwrap_or("").as_bytes());
    args.extend(pairs(&body));
    oai.respond(args, &uri, &headers).await
}

fn pairs(input: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(input)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
