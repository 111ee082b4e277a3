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

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use sheaf_store::DynStore;
use tower_http::compression::CompressionLayer;

pub use config::{ConfigError, OaiConfig};

use service::Oai;

/// The `/oai` routes (GET and POST), with gzip/deflate response compression.
pub fn router(store: DynStore, config: OaiConfig) -> Router {
    if let Err(e) = config.check() {
        tracing::warn!("{e}; OAI-PMH responses may not validate");
    }
    let oai = Arc::new(Oai::new(store, config));
    Router::new()
        .route("/oai", get(get_oai).post(post_oai))
        .with_state(oai)
        .layer(CompressionLayer::new())
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
