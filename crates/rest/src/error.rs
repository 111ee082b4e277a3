//! The REST face's one error type, rendered as RFC 9457
//! `application/problem+json` like MetaStore's (`type`, `title`, `status`,
//! `detail`, `instance`).
//!
//! A handler returns [`ApiError`]; its response carries the problem as an
//! extension and [`problem_layer`] writes the body, because only the
//! middleware knows the full request path for `instance`. Internal causes
//! are logged here and never shown to the client.
//!
//! Depends on axum, the store error and the validator's error only.

use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sheaf_store::StoreError;
use sheaf_validate::RegistryError;

/// The media type of every error body.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// Everything a REST request can fail with; each variant is one status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// No or an unknown bearer token where one is needed.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` names a version that is not the current one.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed but unusable input: an invalid document, an unknown
    /// schema named by a record, a schema that does not compile.
    #[error("{0}")]
    Unprocessable(String),
    /// A write without `If-Match`.
    #[error("{0}")]
    PreconditionRequired(String),
    /// A fault on our side; the text is logged, not sent.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Maps a validator error where the schema is the addressed resource
    /// (`/schemas/{id}/...`): an unknown schema or version is a 404.
    pub(crate) fn from_registry(e: RegistryError) -> Self {
        match e {
            RegistryError::UnknownSchema(_) | RegistryError::UnknownVersion { .. } => {
                ApiError::NotFound(e.to_string())
            }
            other => Self::from_registry_common(other),
        }
    }

    /// Maps a validator error where the schema is only named by the request
    /// body (a metadata record's `HAS_METADATA` link): the request is
    /// well-formed but unusable, a 422.
    pub(crate) fn from_registry_linked(e: RegistryError) -> Self {
        match e {
            RegistryError::UnknownSchema(_) | RegistryError::UnknownVersion { .. } => {
                ApiError::Unprocessable(e.to_string())
            }
            other => Self::from_registry_common(other),
        }
    }

    fn from_registry_common(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(report) => {
                ApiError::Unprocessable(format!("Validation error: {report}"))
            }
            RegistryError::DoesNotCompile(report) => {
                ApiError::Unprocessable(format!("Schema does not compile: {report}"))
            }
            e @ RegistryError::TooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
            RegistryError::Store(e) => e.into(),
            e => ApiError::Internal(e.to_string()),
        }
    }

    fn title(&self) -> &'static str {
        self.status().canonical_reason().unwrap_or("Error")
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Internal(_) => "internal error; see the server log".to_owned(),
            other => other.to_string(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // A write's version expectation failed: another write won.
            StoreError::Conflict(m) => ApiError::PreconditionFailed(m),
            StoreError::NotFound(m) => ApiError::NotFound(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The problem a response stands for, filled in by [`problem_layer`].
#[derive(Clone, Debug)]
struct Problem {
    title: &'static str,
    detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "REST request failed");
        } else {
            tracing::debug!(%status, detail = %self, "REST request refused");
        }
        let mut res = status.into_response();
        if let ApiError::Unauthorized(_) = self {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res.extensions_mut().insert(Problem {
            title: self.title(),
            detail: self.detail(),
        });
        res
    }
}

#[derive(serde::Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    instance: &'a str,
}

/// Middleware writing the problem+json body of every [`ApiError`] response,
/// with the request path as `instance`.
pub(crate) async fn problem_layer(req: Request, next: Next) -> Response {
    // The full path even when this router is nested further; a `Uri`
    // clone shares its bytes, so the common, successful case copies nothing.
    let uri = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().clone(), |o| o.0.clone());
    let mut res = next.run(req).await;
    let Some(problem) = res.extensions_mut().remove::<Problem>() else {
        return res;
    };
    let body = ProblemBody {
        kind: "about:blank",
        title: problem.title,
        status: res.status().as_u16(),
        detail: &problem.detail,
        instance: uri.path(),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let (mut parts, _) = res.into_parts();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Handler for paths no route matches.
pub(crate) async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("no resource at {}", req.uri().path()))
}

/// Handler for a known path with a method it does not support.
pub(crate) async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not supported on {}",
        req.method(),
        req.uri().path()
    ))
}
