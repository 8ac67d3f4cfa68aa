//! `POST /api/v1/users` (admins) and the browser sign-in: `GET /login` (a page), `POST /login`
//! (form: sets an HttpOnly session cookie), `POST /logout`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::{ApiError, ApiState, Caller, SESSION_COOKIE, session_cookie};
use super::extract::JsonBody;
use crate::auth::{Action, LoginRefused, Role};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub role: String,
    /// Optional password for browser sign-in; a bearer token is always issued.
    pub password: Option<String>,
}

pub async fn add_user(
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

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Careline sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}
label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1.2rem}.msg{color:#a00}</style></head>
<body><h1>Careline</h1>{MESSAGE}
<form method="post" action="/login">
<label for="name">User</label><input id="name" name="name" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form>
<p><small>Sessions end after a period without activity. Every access to patient data is recorded.</small></p>
</body></html>"#;

fn page(message: &str) -> Html<String> {
    let msg = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"msg\" role=\"alert\">{message}</p>")
    };
    Html(PAGE.replace("{MESSAGE}", &msg))
}

pub async fn login_page() -> Html<String> {
    page("")
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    pub name: String,
    pub password: String,
}

pub async fn login(
    State(s): State<Arc<ApiState>>,
    request_parts: axum::http::Extensions,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let source = super::access::peer(&request_parts);
    let body = super::extract::body_bytes(req, &()).await?;
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return Ok((
            StatusCode::BAD_REQUEST,
            page("Enter a user name and a password."),
        )
            .into_response());
    };
    match s.auth.login(&form.name, &form.password, &source).await? {
        Ok(cookie) => {
            let secure = if s.https { "; Secure" } else { "" };
            let set =
                format!("{SESSION_COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/{secure}");
            let mut resp = (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, "/api/v1/me")],
                "signed in",
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&set) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(resp)
        }
        Err(LoginRefused::BadCredentials) => Ok((
            StatusCode::UNAUTHORIZED,
            page("Wrong user name or password."),
        )
            .into_response()),
        Err(LoginRefused::Throttled { retry_after }) => {
            let secs = retry_after.as_secs().max(1);
            let mut resp = (
                StatusCode::TOO_MANY_REQUESTS,
                page(&format!(
                    "Too many failed sign-ins from here. Try again in {secs} seconds."
                )),
            )
                .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            Ok(resp)
        }
    }
}

pub async fn logout(
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
