//! `GET /health`: 200 when the database answers, 503 when it does not.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use sheaf_store::DynStore;

/// The health face.
pub fn router(store: DynStore) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(store)
}

async fn health(State(store): State<DynStore>) -> (StatusCode, Json<Value>) {
    let database = store.backend().name();
    match store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "database": database})),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "database": database})),
            )
        }
    }
}
