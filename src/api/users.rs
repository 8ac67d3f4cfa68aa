//! `POST /api/v1/users` (admins) and the browser sign-in: `GET /login` (a page), `POST /login`
//! (form: sets an HttpOnly session cookie), `POST /logout`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::{ApiError, ApiState, Caller, SESSION_COOKIE, session_cookie};
use super::browser::{LOGIN_COOKIE, cookie, cross_site, same_secret};
use super::extract::JsonBody;
use crate::auth::{Action, LoginRefused, Role};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    pub name: String,
    pub role: String,
    /// Optional password for browser sign-in; a bearer token is always issued.
    pub password: Option<String>,
}

pub(crate) async fn add_user(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    JsonBody(body): JsonBody<NewUser>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    s.require(&caller, Action::UserManage, None).await?;
    let role: Role = body.role.parse().map_err(ApiError::bad_request)?;
    let token = s
        .auth
        .create_user(&body.name, role, body.password.as_deref(), caller.name())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": body.name, "role": role, "token": token})),
    ))
}

/// `GET /api/v1/users` (admins): every user, role, whether disabled.
pub(crate) async fn list_users(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    s.require(&caller, Action::UserManage, None).await?;
    Ok(Json(json!({"users": s.auth.list_users().await?})))
}

/// `POST /api/v1/users/{name}/disable` and `/enable` (admins).
pub(crate) async fn disable_user(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.require(&caller, Action::UserManage, None).await?;
    s.auth.set_disabled(&name, true, caller.name()).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn enable_user(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.require(&caller, Action::UserManage, None).await?;
    s.auth.set_disabled(&name, false, caller.name()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One's own tokens (`OwnTokens`), or anyone's for admins (`UserManage`).
async fn require_tokens_of(s: &ApiState, caller: &Caller, user: &str) -> Result<(), ApiError> {
    let action = if user == caller.name() {
        Action::OwnTokens
    } else {
        Action::UserManage
    };
    s.require_about(caller, action, None, json!({"user": user}))
        .await
        .map(|_| ())
}

/// `GET /api/v1/users/{name}/tokens`: ids, created, expires, revoked, last used; never secrets.
pub(crate) async fn list_tokens(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_tokens_of(&s, &caller, &name).await?;
    Ok(Json(json!({"tokens": s.auth.list_tokens(&name).await?})))
}

/// `POST /api/v1/users/{name}/tokens`: a new token, shown once (rotation: then revoke the old).
pub(crate) async fn issue_token(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_tokens_of(&s, &caller, &name).await?;
    let token = s.auth.issue_token(&name, caller.name()).await?;
    let id = token.split('_').nth(1).unwrap_or_default().to_string();
    let info = s
        .auth
        .list_tokens(&name)
        .await?
        .into_iter()
        .find(|t| t.id == id);
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "id": id, "expires": info.and_then(|i| i.expires)})),
    ))
}

/// `DELETE /api/v1/tokens/{id}`: revoke a token (one's own, or anyone's for admins).
pub(crate) async fn revoke_token(
    State(s): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let owner = s.auth.token_owner(&id).await?;
    // An id that does not exist is the admins' 404; anyone else learns nothing from it.
    require_tokens_of(&s, &caller, owner.as_deref().unwrap_or("")).await?;
    s.auth.revoke_token(&id, caller.name()).await?;
    Ok(StatusCode::NO_CONTENT)
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Careline sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}
label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1.2rem}.msg{color:#a00}</style></head>
<body><h1>Careline</h1>{MESSAGE}
<form method="post" action="/login"><input type="hidden" name="csrf" value="{TOKEN}"><input type="hidden" name="next" value="{NEXT}">
<label for="name">User</label><input id="name" name="name" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form>
<p><small>Sessions end after a period without activity. Every access to patient data is recorded.</small></p>
</body></html>"#;

/// The page's one inline style, allowed by its hash and nothing else.
fn style_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        use base64::Engine;
        use sha2::Digest;
        let start = PAGE.find("<style>").map_or(0, |i| i + "<style>".len());
        let end = PAGE.find("</style>").unwrap_or(start);
        let digest = sha2::Sha256::digest(&PAGE.as_bytes()[start..end]);
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    })
}

/// The sign-in page with `message`, and a fresh form token set as a cookie beside it
/// (double submit: a cross-site form cannot read the cookie to copy it into the form).
fn page(status: StatusCode, message: &str, https: bool) -> Response {
    page_then(status, message, https, None)
}

/// Careline's own pages a sign-in may lead back to (anything else goes to `/api/v1/me`: a
/// sign-in link cannot be made to send anyone elsewhere), and a visit's page (`/room/` and
/// a room id: 16 hex digits, nothing else).
const NEXT_PAGES: &[&str] = &["/agent", "/supervisor"];

fn next_page(next: Option<&str>) -> Option<&str> {
    let next = next?;
    let room = next.strip_prefix("/room/").is_some_and(|id| {
        id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    (room || NEXT_PAGES.contains(&next)).then_some(next)
}

/// [`page`], leading to `next` (one of [`NEXT_PAGES`]) once signed in.
fn page_then(status: StatusCode, message: &str, https: bool, next: Option<&str>) -> Response {
    let msg = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"msg\" role=\"alert\">{message}</p>")
    };
    let token = crate::auth::password::random_secret();
    let html = PAGE
        .replace("{MESSAGE}", &msg)
        .replace("{TOKEN}", &token)
        .replace("{NEXT}", next_page(next).unwrap_or(""));
    let mut resp = (status, Html(html)).into_response();
    let csp = format!(
        "default-src 'none'; style-src {}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        style_hash()
    );
    let secure = if https { "; Secure" } else { "" };
    let cookie = format!("{LOGIN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/login{secure}");
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

pub(crate) async fn login_page(
    State(s): State<Arc<ApiState>>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    page_then(StatusCode::OK, "", s.https, q.next.as_deref())
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    pub name: String,
    pub password: String,
    /// The token of the page the form came from (must match its cookie).
    #[serde(default)]
    pub csrf: String,
    /// Where to go once signed in (one of Careline's own pages).
    #[serde(default)]
    pub next: String,
}

pub(crate) async fn login(
    State(s): State<Arc<ApiState>>,
    request_parts: axum::http::Extensions,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let source = super::access::peer(&request_parts);
    let expected = cookie(req.headers(), LOGIN_COOKIE);
    if cross_site(req.headers()) {
        return Ok(page(
            StatusCode::FORBIDDEN,
            "Sign in from this site's own sign-in page.",
            s.https,
        ));
    }
    let body = super::extract::body_bytes(req, &()).await?;
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return Ok(page(
            StatusCode::BAD_REQUEST,
            "Enter a user name and a password.",
            s.https,
        ));
    };
    if !expected.is_some_and(|e| same_secret(&e, &form.csrf)) {
        return Ok(page(
            StatusCode::FORBIDDEN,
            "This sign-in form has expired. Please try again.",
            s.https,
        ));
    }
    match s.auth.login(&form.name, &form.password, &source).await? {
        Ok(cookie) => {
            let secure = if s.https { "; Secure" } else { "" };
            let set =
                format!("{SESSION_COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/{secure}");
            let to = next_page(Some(&form.next)).unwrap_or("/api/v1/me");
            let mut resp =
                (StatusCode::SEE_OTHER, [(header::LOCATION, to)], "signed in").into_response();
            if let Ok(v) = HeaderValue::from_str(&set) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(resp)
        }
        Err(LoginRefused::BadCredentials) => Ok(page(
            StatusCode::UNAUTHORIZED,
            "Wrong user name or password.",
            s.https,
        )),
        Err(LoginRefused::Throttled { retry_after }) => {
            let secs = retry_after.as_secs().max(1);
            let mut resp = page(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many failed sign-ins from here. Try again in {secs} seconds."),
                s.https,
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            Ok(resp)
        }
    }
}

pub(crate) async fn logout(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(cookie) = session_cookie(&headers) {
        s.auth.logout(&cookie).await?;
    }
    let clear = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    let mut resp = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/login")],
        "signed out",
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sign-in link leads back to Careline's own console and nowhere else: no other site,
    /// no protocol-relative URL, no other path, whatever the link says.
    #[test]
    fn sign_in_leads_only_to_careline_pages() {
        assert_eq!(next_page(Some("/agent")), Some("/agent"));
        assert_eq!(
            next_page(Some("/room/00ff00ff00ff00ff")),
            Some("/room/00ff00ff00ff00ff")
        );
        for elsewhere in [
            "/room/00ff00ff00ff00f",
            "/room/00ff00ff00ff00ffa",
            "/room/00FF00FF00FF00FF",
            "/room/../api/v1/me/aa",
            "/room/00ff00ff00ff00ff?t=x",
            "https://evil.example/",
            "//evil.example/agent",
            "/agent/../api/v1/me",
            "/agent?x=1",
            "agent",
            "",
        ] {
            assert_eq!(next_page(Some(elsewhere)), None, "{elsewhere}");
        }
        assert_eq!(next_page(None), None);
        let html = PAGE
            .replace("{NEXT}", next_page(Some("\"><script>")).unwrap_or(""))
            .to_string();
        assert!(
            !html.contains("<script>"),
            "nothing of the link reaches the page"
        );
    }
}
