//! Request bodies and query strings that fail as the rest of the API fails: a problem details
//! answer (RFC 9457) that names what is wrong (the field, the expected type) without quoting
//! what was sent. axum's own extractors answer plain text that echoes the input, and accept a
//! JSON body under any content type; these do neither.
//!
//! - [`JsonBody`]: `Content-Type: application/json` (or `+json`) only, else 415 (so a
//!   cross-site form post, which can only send `text/plain`, urlencoded or multipart, never
//!   reaches a handler); over the route's body limit 413; unknown fields rejected by name.
//! - [`QueryParams`]: the query string, unknown parameters rejected by name.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::access::ApiError;

/// The longest field or parameter name an error message repeats.
const MAX_NAME: usize = 64;

/// What serde said, reduced to what the client needs: which field, and what kind of fault.
/// Values the client sent are never repeated (an error page is not a reflection service).
pub(crate) fn describe(path: &str, message: &str) -> String {
    let quoted = |m: &str| -> Option<String> {
        let start = m.find('`')? + 1;
        let len = m[start..].find('`')?;
        let name = &m[start..start + len];
        (name.len() <= MAX_NAME && !name.chars().any(char::is_control)).then(|| name.to_string())
    };
    let at = if path.is_empty() || path == "." {
        String::new()
    } else {
        format!(" at `{}`", path.chars().take(MAX_NAME).collect::<String>())
    };
    if message.starts_with("unknown field") {
        match quoted(message) {
            Some(name) => format!("unknown field `{name}`{at}"),
            None => format!("an unknown field{at}"),
        }
    } else if message.starts_with("missing field") {
        match quoted(message) {
            Some(name) => format!("missing field `{name}`{at}"),
            None => format!("a required field is missing{at}"),
        }
    } else if let Some(expected) = message.split(", expected ").nth(1) {
        // "invalid type: string \"...\", expected u64": keep only the expectation.
        let expected: String = expected.chars().take(80).collect();
        let field = if at.is_empty() { " the body" } else { &at[4..] };
        format!("{}: expected {expected}", field.trim())
    } else if message.contains("EOF") || message.contains("expected value") {
        "the body is not valid JSON".to_string()
    } else {
        format!("invalid value{at}")
    }
}

/// A JSON request body, deserialized strictly.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JsonBody<T>(pub T);

/// A `Content-Type`'s media type, lowercased, without its parameters (`; charset=...`);
/// empty when there is none.
pub(crate) fn media_type(content_type: Option<&header::HeaderValue>) -> String {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let mime = media_type(content_type);
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Reads a body under the route's limit and the connection's body timeout: 413 past the
/// limit, 408 past the time, 400 for a broken transfer.
pub(crate) async fn body_bytes<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<bytes::Bytes, ApiError> {
    use axum::extract::rejection::BytesRejection;
    let limit = req
        .extensions()
        .get::<super::serve::BodyTimeout>()
        .map_or(std::time::Duration::from_secs(60), |t| t.0);
    let Ok(read) = tokio::time::timeout(limit, bytes::Bytes::from_request(req, state)).await else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        ));
    };
    match read {
        Ok(b) => Ok(b),
        Err(BytesRejection::FailedToBufferBody(e))
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
        {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than this endpoint takes",
            ))
        }
        Err(_) => Err(ApiError::bad_request("the request body could not be read")),
    }
}

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = body_bytes(req, state).await?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(de) {
            Ok(v) => Ok(JsonBody(v)),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let status = if inner.is_data() {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::BAD_REQUEST
                };
                let detail = if inner.is_syntax() || inner.is_eof() {
                    "the body is not valid JSON".to_string()
                } else {
                    describe(&path, &inner.to_string())
                };
                Err(ApiError::new(status, detail))
            }
        }
    }
}

/// A query string, deserialized strictly.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QueryParams<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(QueryParams)
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError::bad_request(format!(
                    "query string: {}",
                    describe(&path, &e.into_inner().to_string())
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_and_never_repeat_the_value() {
        let unknown = describe(
            ".",
            "unknown field `user`, expected one of `channel`, `notes`",
        );
        assert_eq!(unknown, "unknown field `user`");
        let missing = describe(".", "missing field `channel`");
        assert_eq!(missing, "missing field `channel`");
        let wrong = describe(
            "duration_secs",
            "invalid type: string \"<script>alert(1)</script>\", expected u64",
        );
        assert_eq!(wrong, "`duration_secs`: expected u64");
        assert!(!wrong.contains("script"));
        let long = format!("unknown field `{}`, expected x", "a".repeat(500));
        assert_eq!(describe(".", &long), "an unknown field");
    }

    #[test]
    fn json_content_types() {
        let v = |s: &'static str| header::HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json"))));
        assert!(is_json(Some(&v("application/json; charset=utf-8"))));
        assert!(is_json(Some(&v("application/fhir+json"))));
        assert!(!is_json(Some(&v("text/plain"))));
        assert!(!is_json(Some(&v("application/x-www-form-urlencoded"))));
        assert!(!is_json(None));
    }
}
