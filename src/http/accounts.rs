//! Sign-up, sign-in, sign-out and the caller's own profile.

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::error::ErrorBody;
use super::route::Endpoint;
use super::{ApiError, ClientAddr, State, json_body, signed_in, with_state};
use crate::auth::{self, Principal};
use crate::db::{self, users::User};
use crate::domain::{Email, Locale};

// What each endpoint takes from a request, past the path and method that
// `route::ROUTES` gives it.

pub fn create_user_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    with_state(state.clone())
        .and(client_address(state.clone()))
        .and(warp::header::optional::<String>("accept-language"))
        .and(json_body(&state))
        .and_then(create_user)
}

pub fn sign_in_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    with_state(state.clone())
        .and(client_address(state.clone()))
        .and(json_body(&state))
        .and_then(sign_in)
}

pub fn sign_out_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    signed_in(state)
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and_then(sign_out)
}

pub fn change_password_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    signed_in(state.clone())
        .and(client_address(state.clone()))
        .and(json_body(&state))
        .and_then(change_password)
}

pub fn get_me_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    signed_in(state).and_then(get_me)
}

pub fn patch_me_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    signed_in(state.clone())
        .and(json_body(&state))
        .and_then(patch_me)
}

/// An email and a password (sign-up takes 8 characters or more).
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct CredentialsBody {
    #[schema(value_type = String, format = Email, example = "ann@example.com")]
    email: Option<String>,
    #[schema(value_type = String, format = Password, min_length = 8)]
    password: Option<String>,
}

/// A new account: its email and password, and optionally its language
/// (without one, the request's `Accept-Language` chooses; then English).
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct SignUpBody {
    #[schema(value_type = String, format = Email, example = "ann@example.com")]
    email: Option<String>,
    #[schema(value_type = String, format = Password, min_length = 8)]
    password: Option<String>,
    #[schema(value_type = Option<String>, example = "pt-BR")]
    locale: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct UserView<'a> {
    id: String,
    email: &'a str,
    /// False for a new account until the link emailed to it is opened.
    email_verified: bool,
}

/// A session: the bearer token for `Authorization`, and when it expires.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct SessionView {
    token: String,
    #[schema(format = DateTime)]
    expires_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ProfileView<'a> {
    id: String,
    email: &'a str,
    /// The owner opened a link sent to the address. Until then it receives
    /// at most a few emails about videos a day.
    email_verified: bool,
    /// The language of the account's emails and page: `en` or `pt-BR`.
    #[schema(value_type = String, example = "pt-BR")]
    locale: &'static str,
    notify_on_success: bool,
    webhook_url: Option<&'a str>,
    /// Shown to its owner only: the key that signs their webhook events.
    webhook_secret: Option<&'a str>,
    storage: StorageView,
}

/// What the caller's videos keep in the media store, and how much they may.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct StorageView {
    /// Bytes of uploads and zips kept.
    used_bytes: u64,
    /// Past this, uploads are refused (507 `quota_exceeded`).
    quota_bytes: u64,
}

impl<'a> ProfileView<'a> {
    /// The profile of `u`, with what their videos keep.
    async fn of(state: &State, u: &'a User) -> Result<Self, ApiError> {
        let used_bytes = db::jobs::bytes_kept_by_owner(&state.pool, u.id).await?;
        Ok(Self {
            id: u.id.to_string(),
            email: u.email.as_str(),
            email_verified: u.email_verified,
            locale: u.locale.as_str(),
            notify_on_success: u.notify_on_success,
            webhook_url: u.webhook_url.as_deref(),
            webhook_secret: u.webhook_secret.as_deref(),
            storage: StorageView {
                used_bytes,
                quota_bytes: state.settings.tuning.max_storage_per_user,
            },
        })
    }
}

#[utoipa::path(post, path = Endpoint::CreateUser.pattern(), tag = "accounts",
    request_body = SignUpBody,
    params(("Accept-Language" = Option<String>, Header,
        description = "The account's language when the body names none (`pt*` → `pt-BR`, else `en`)")),
    responses(
        (status = 201, description = "The account", body = UserView),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        (status = 422, description = "Bad email or short password", body = ErrorBody),
        (status = 429, description = "Too many sign-ups from this client", body = ErrorBody),
    ))]
async fn create_user(
    state: State,
    address: Option<String>,
    accept_language: Option<String>,
    body: SignUpBody,
) -> Result<impl Reply, Rejection> {
    let (Some(email), Some(password)) = (body.email, body.password) else {
        return Err(ApiError::InvalidInput("email and password are required".into()).into());
    };
    let locale = match body.locale.as_deref() {
        Some(tag) => Locale::parse(tag).map_err(ApiError::from)?,
        None => Locale::from_accept_language(accept_language.as_deref()),
    };
    // sign-ups cost a password hash each and tell taken emails apart: a
    // client gets a bounded number of them
    counted(&state.limiter.sign_up, address.as_deref())?;
    let user =
        crate::accounts::register(&state.pool, &email, &password, locale, Some(&state.links))
            .await
            .map_err(ApiError::from)?;
    state.actors.notifier.wake();
    tracing::info!(user_id = %user.id, "user registered");
    let view = UserView {
        id: user.id.to_string(),
        email: user.email.as_str(),
        email_verified: user.email_verified,
    };
    Ok(warp::reply::with_status(
        warp::reply::json(&view),
        StatusCode::CREATED,
    ))
}

/// Counts an attempt of the client at `address` against `limiter`: a 429
/// with `Retry-After` once it had its share.
pub(super) fn counted(
    limiter: &auth::SignInLimiter,
    address: Option<&str>,
) -> Result<(), ApiError> {
    match address.map(|a| limiter.attempt(a)) {
        Some(Err(wait)) => Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        }),
        _ => Ok(()),
    }
}

/// Who the client is for rate limits (see [`super::client::address`]).
pub(super) fn client_address(
    state: State,
) -> impl Filter<Extract = (Option<String>,), Error = std::convert::Infallible> + Clone {
    warp::ext::optional::<ClientAddr>()
        .and(warp::header::headers_cloned())
        .map(
            move |peer: Option<ClientAddr>, headers: warp::http::HeaderMap| {
                super::client::address(peer, &headers, &state.settings.tuning)
            },
        )
}

#[utoipa::path(post, path = Endpoint::SignIn.pattern(), tag = "accounts",
    request_body = CredentialsBody,
    responses(
        (status = 200, description = "A session token", body = SessionView),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 422, description = "Email or password missing", body = ErrorBody),
        (status = 429, description = "Too many failed attempts", body = ErrorBody),
    ))]
async fn sign_in(
    state: State,
    address: Option<String>,
    body: CredentialsBody,
) -> Result<impl Reply, Rejection> {
    let (Some(email), Some(password)) = (body.email, body.password) else {
        return Err(ApiError::InvalidInput("email and password are required".into()).into());
    };
    // Every attempt counts, a malformed address too (under one key: it can
    // have no account).
    let parsed = Email::parse(&email).ok();
    let account = parsed.as_ref().map_or("(not an email)", |e| e.as_str());
    let address = address.as_deref();
    if let Err(wait) = state.limiter.attempt(account, address) {
        metrics::counter!("vp_sign_ins_total", "result" => "rate_limited").increment(1);
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        }
        .into());
    }
    // An address that cannot exist has no account; it still costs one
    // verification, so the answer takes as long as for a wrong password.
    let found = match &parsed {
        Some(email) => db::users::find_credentials(&state.pool, email)
            .await
            .map_err(ApiError::from)?,
        None => None,
    };
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let verified = auth::verify_password(password, hash)
        .await
        .map_err(ApiError::from)?;
    let Some(user) = user.filter(|_| verified) else {
        metrics::counter!("vp_sign_ins_total", "result" => "refused").increment(1);
        return Err(ApiError::InvalidCredentials.into());
    };
    state.limiter.succeeded(account, address);
    metrics::counter!("vp_sign_ins_total", "result" => "ok").increment(1);
    let (token, expires_at) = state.sessions.mint(user.id, user.session_epoch);
    Ok(warp::reply::json(&SessionView {
        token,
        expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))
}

/// Whether a sign-out ends every session of the account (`everywhere=true`)
/// or only the caller's.
fn everywhere(query: &str) -> Result<bool, ApiError> {
    let mut everywhere = false;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        everywhere = match (name.as_ref(), value.as_ref()) {
            ("everywhere", "true") => true,
            ("everywhere", "false") => false,
            ("everywhere", _) => {
                return Err(ApiError::InvalidField {
                    field: "everywhere".into(),
                    message: "everywhere must be true or false".into(),
                });
            }
            (other, _) => {
                return Err(ApiError::InvalidInput(format!(
                    "unknown parameter `{other}`"
                )));
            }
        };
    }
    Ok(everywhere)
}

#[utoipa::path(delete, path = Endpoint::SignOut.pattern(), tag = "accounts",
    security(("bearer" = [])),
    params(("everywhere" = Option<bool>, Query, description = "End every session of the account, this one too")),
    responses(
        (status = 204, description = "The token (with `everywhere=true`: every token of the account) is refused from now on, on every node"),
        (status = 422, description = "An unknown parameter, or `everywhere` not true or false", body = ErrorBody),
    ))]
async fn sign_out(
    state: State,
    principal: Principal,
    query: String,
) -> Result<impl Reply, Rejection> {
    if everywhere(&query)? {
        let ended = state
            .sessions
            .ending_sessions(db::users::end_sessions(&state.pool, principal.user_id))
            .await
            .map_err(ApiError::from)?;
        if !ended {
            return Err(account_gone().into());
        }
        tracing::info!(user_id = %principal.user_id, "signed out everywhere");
    } else if let Some(session) = &principal.session {
        state
            .sessions
            .revoke(session)
            .await
            .map_err(ApiError::from)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A new password, with the current one.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordChange {
    #[schema(value_type = String, format = Password)]
    current_password: Option<String>,
    #[schema(value_type = String, format = Password, min_length = 8)]
    new_password: Option<String>,
}

#[utoipa::path(post, path = Endpoint::ChangePassword.pattern(), tag = "accounts",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "The password is changed; every other session of the account has ended"),
        (status = 401, description = "`invalid_credentials`: the current password is wrong", body = ErrorBody),
        (status = 422, description = "A field missing, or a new password under 8 characters", body = ErrorBody),
        (status = 429, description = "Too many failed attempts (counted with sign-in's)", body = ErrorBody),
    ))]
async fn change_password(
    state: State,
    principal: Principal,
    address: Option<String>,
    body: PasswordChange,
) -> Result<impl Reply, Rejection> {
    let (Some(current), Some(new)) = (body.current_password, body.new_password) else {
        return Err(ApiError::InvalidInput(
            "current_password and new_password are required".into(),
        )
        .into());
    };
    let user = db::users::get_user(&state.pool, principal.user_id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(account_gone)?;
    // guesses of the current password count as sign-in attempts do
    let (account, address) = (user.email.as_str(), address.as_deref());
    if let Err(wait) = state.limiter.attempt(account, address) {
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        }
        .into());
    }
    // the caller's session survives: the first revocation id names it
    let survivor = principal
        .session
        .as_ref()
        .and_then(|s| s.token.revocation_identifiers().into_iter().next());
    let changing =
        crate::accounts::change_password(&state.pool, user.id, &current, &new, survivor.as_deref());
    state
        .sessions
        .ending_sessions(changing)
        .await
        .map_err(ApiError::from)?;
    state.limiter.succeeded(account, address);
    tracing::info!(user_id = %user.id, "password changed; every other session ended");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = Endpoint::GetMe.pattern(), tag = "accounts",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's profile", body = ProfileView)))]
async fn get_me(state: State, principal: Principal) -> Result<impl Reply, Rejection> {
    let user = db::users::get_user(&state.pool, principal.user_id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(account_gone)?;
    Ok(warp::reply::json(&ProfileView::of(&state, &user).await?))
}

/// The preferences to change; absent fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchMe {
    notify_on_success: Option<bool>,
    /// Absent: unchanged; `null`: cleared.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    webhook_url: Option<Option<String>>,
    /// Replace the webhook signing key.
    #[serde(default)]
    rotate_webhook_secret: bool,
    /// The language of the emails and the page: `en` or `pt-BR`.
    #[schema(value_type = Option<String>, example = "pt-BR")]
    locale: Option<String>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

#[utoipa::path(patch, path = Endpoint::PatchMe.pattern(), tag = "accounts",
    security(("bearer" = [])),
    request_body = PatchMe,
    responses(
        (status = 200, description = "The profile as changed", body = ProfileView),
        (status = 422, description = "Unknown field, a webhook URL that is not https, or a locale other than `en` and `pt-BR`", body = ErrorBody),
    ))]
async fn patch_me(
    state: State,
    principal: Principal,
    body: PatchMe,
) -> Result<impl Reply, Rejection> {
    let webhook_url = match body.webhook_url {
        Some(Some(url)) => Some(Some(parse_webhook_url(&url)?)),
        other => other,
    };
    let locale = body
        .locale
        .as_deref()
        .map(Locale::parse)
        .transpose()
        .map_err(ApiError::from)?;
    let change = db::users::Preferences {
        notify_on_success: body.notify_on_success,
        webhook_url,
        rotate_webhook_secret: body.rotate_webhook_secret,
        locale,
    };
    let user = db::users::update_preferences(
        &state.pool,
        principal.user_id,
        change,
        &crate::notify::webhook::new_secret(),
    )
    .await
    .map_err(ApiError::from)?
    .ok_or(ApiError::Unauthorized(
        "the account no longer exists".into(),
    ))?;
    Ok(warp::reply::json(&ProfileView::of(&state, &user).await?))
}

/// A valid token whose account was deleted.
fn account_gone() -> ApiError {
    ApiError::Unauthorized("the account no longer exists".into())
}

/// `https://` anywhere, or `http://` to a loopback host only.
fn parse_webhook_url(raw: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::InvalidInput(
            "webhook_url must be an https:// URL (or http:// to a loopback address)".into(),
        )
    };
    let url = url::Url::parse(raw.trim()).map_err(|_| bad())?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(bad()),
    };
    match url.scheme() {
        "https" => Ok(url.to_string()),
        "http" if loopback => Ok(url.to_string()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls() {
        assert!(parse_webhook_url("https://hooks.example.com/x").is_ok());
        assert!(parse_webhook_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(parse_webhook_url("http://localhost/hook").is_ok());
        assert!(parse_webhook_url("http://[::1]/hook").is_ok());
        assert!(parse_webhook_url("http://example.com/hook").is_err());
        assert!(parse_webhook_url("ftp://example.com/").is_err());
        assert!(parse_webhook_url("not a url").is_err());
    }
}
