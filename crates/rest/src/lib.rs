//! The REST face: MetaStore v2 compatible `/api/v2/schemas` and
//! `/api/v2/metadata` on Sheaf's one model, so that a client written for
//! MetaStore works unchanged (with [`RestConfig::context_path`] set to match
//! its base URL). Deposited and harvested records are served alike.
//!
//! Depends on the `Store` trait (never a backend), the validator's
//! [`Registry`] and the domain types. The startup code merges [`router`]
//! into the application.
//!
//! Code tour: `routes` (the route table: router and OpenAPI both come from
//! it), `schemas` and `metadata` (the handlers), `datacite` (record JSON in
//! and out), `http` (query, paging, `Accept`, `If-Match`, multipart),
//! `auth` (tokens and ACLs), `error` (problem+json).

mod auth;
mod datacite;
mod error;
mod http;
mod metadata;
mod routes;
mod schemas;

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use sheaf_store::DynStore;
use sheaf_validate::Registry;

pub use error::ApiError;

/// The `[rest]` configuration section.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestConfig {
    /// Prefix of every route, e.g. `/metastore` to match a MetaStore
    /// client's base URL; empty for none.
    pub context_path: String,
    /// The scheme, host and port clients reach Sheaf by (e.g.
    /// `https://meta.example.org`), used for `Location` and links; the
    /// context path is appended. When unset, `http://` and the request's
    /// `Host` header.
    pub public_base_url: Option<String>,
    /// The largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// API tokens; empty runs the anonymous single-user mode.
    pub tokens: Vec<ApiToken>,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            context_path: String::new(),
            public_base_url: None,
            max_body_bytes: 16 * 1024 * 1024,
            tokens: Vec::new(),
        }
    }
}

/// One API token and the subject (ACL `sid`) it authenticates.
#[derive(Clone, serde::Deserialize)]
pub struct ApiToken {
    pub subject: String,
    pub token: String,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("subject", &self.subject)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// What every handler shares.
pub(crate) struct AppState {
    pub registry: Registry,
    pub store: DynStore,
    /// Normalised: empty or `/segment…` without a trailing slash.
    pub context_path: String,
    pub public_base_url: Option<String>,
    pub max_body_bytes: usize,
    pub tokens: auth::TokenTable,
    pub kinds: metadata::KindCache,
}

pub(crate) type Shared = Arc<AppState>;

impl AppState {
    /// The absolute URL of `/api/v2` as clients see it.
    pub(crate) fn api_base(&self, headers: &axum::http::HeaderMap) -> String {
        format!(
            "{}{}/api/v2",
            http::origin(self.public_base_url.as_deref(), headers),
            self.context_path
        )
    }
}

/// `/metastore/` → `/metastore`, `metastore` → `/metastore`, `/` → ``.
fn normalise_context(path: &str) -> String {
    let trimmed = path.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// The REST face's routes under `config.context_path`, ready to merge into
/// the application router.
pub fn router(registry: Registry, config: RestConfig) -> Router {
    let context_path = normalise_context(&config.context_path);
    let state: Shared = Arc::new(AppState {
        store: registry.store().clone(),
        registry,
        context_path: context_path.clone(),
        public_base_url: config.public_base_url.clone(),
        max_body_bytes: config.max_body_bytes,
        tokens: auth::TokenTable::new(&config.tokens),
        kinds: metadata::KindCache::default(),
    });
    let api = routes::build()
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state);
    let app = if context_path.is_empty() {
        api
    } else {
        Router::new().nest(&context_path, api)
    };
    app.layer(axum::middleware::from_fn(error::problem_layer))
}

/// The OpenAPI 3.1 description of the REST face, built from the same route
/// table as [`router`]; served at `/api/v2/openapi.json`.
pub fn openapi() -> serde_json::Value {
    routes::openapi("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_hides_the_secret() {
        let t = ApiToken {
            subject: "alice".into(),
            token: "s3cret-value".into(),
        };
        let shown = format!(
            "{t:?} {:?}",
            RestConfig {
                tokens: vec![t.clone()],
                ..RestConfig::default()
            }
        );
        assert!(shown.contains("alice"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let c: RestConfig = serde_json::from_str("{}").expect("defaults");
        assert_eq!(c.max_body_bytes, 16 * 1024 * 1024);
        assert!(c.tokens.is_empty() && c.context_path.is_empty());
        assert!(serde_json::from_str::<RestConfig>(r#"{"contextPath": "/x"}"#).is_err());
    }

    #[test]
    fn context_paths_are_normalised() {
        assert_eq!(normalise_context(""), "");
        assert_eq!(normalise_context("/"), "");
        assert_eq!(normalise_context("metastore/"), "/metastore");
        assert_eq!(normalise_context("/a/b"), "/a/b");
    }
}
