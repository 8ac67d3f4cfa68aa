//! What browsers are told and asked: security headers on every response, and the checks that
//! keep another site from acting through a signed-in user's browser (cross-site request
//! forgery). The API's PHI is JSON behind a bearer token or a session cookie; the sign-in page
//! is the one HTML page.
//!
//! - Headers (every response, unless the handler set its own): `Content-Security-Policy:
//!   default-src 'none'; frame-ancestors 'none'` (nothing loads, nothing frames us),
//!   `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` (older browsers),
//!   `Referrer-Policy: same-origin` (no other site learns a Careline URL; `no-referrer` made
//!   browsers send `Origin: null` on the sign-in form's own POST, which the origin check below
//!   rightly refuses, so nobody could sign in from a real browser), `Cache-Control: no-store`
//!   (PHI never sits in a browser or proxy cache), and over HTTPS `Strict-Transport-Security`.
//! - Cross-site writes: a request that changes something (not GET/HEAD/OPTIONS) and carries the
//!   session cookie must come from this origin: an `Origin` header naming another host, or
//!   `Sec-Fetch-Site: cross-site`, is refused with 403. Bearer-token requests are not
//!   browser-driven and are not checked. The cookie is `SameSite=Strict` and JSON endpoints
//!   take only `application/json` (415 otherwise), so this is the third fence, not the only one.
//! - The sign-in form (no session yet, so SameSite does not help) carries a token that must
//!   match a cookie set with the page (double submit), besides the origin check.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::access::{ApiError, session_cookie};

/// The double-submit cookie of the sign-in form.
pub(crate) const LOGIN_COOKIE: &str = "careline_login";

/// Whether a request's `Origin` / `Sec-Fetch-Site` say it came from another site. A request
/// with neither (curl, an integration) is not a browser's cross-site request.
pub(crate) fn cross_site(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    // `Origin: null` (sandboxed frames, some redirects) is never this site.
    let Some((_, authority)) = origin.split_once("://") else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    !authority.eq_ignore_ascii_case(host)
}

/// Adds the security headers to every response; refuses cross-site cookie-authenticated
/// writes (see the module doc).
pub(crate) async fn guard(https: bool, req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let cookie_borne = session_cookie(req.headers()).is_some()
        && req.headers().get(header::AUTHORIZATION).is_none();
    let mut resp = if write && cookie_borne && cross_site(req.headers()) {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "a signed-in browser may change things only from this site's own pages",
        )
        .into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    let mut default = |name: header::HeaderName, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    default(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    );
    default(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    default(header::X_FRAME_OPTIONS, "DENY");
    default(header::REFERRER_POLICY, "same-origin");
    default(header::CACHE_CONTROL, "no-store");
    if https {
        default(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
    resp
}

/// The value of cookie `name`, if sent.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name && !v.is_empty()).then(|| v.to_string())
        })
}

/// Constant-time equality (the login token is a secret the attacker must not learn by timing).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_another_site_is_cross_site() {
        assert!(!cross_site(&headers(&[("host", "clinic.example:8443")])));
        assert!(!cross_site(&headers(&[
            ("host", "clinic.example:8443"),
            ("origin", "https://clinic.example:8443")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "clinic.example:8443"),
            ("origin", "https://evil.example")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "clinic.example"),
            ("origin", "null")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "clinic.example"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!cross_site(&headers(&[
            ("host", "clinic.example"),
            ("sec-fetch-site", "same-origin")
        ])));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
