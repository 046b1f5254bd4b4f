//! The account calls behind links sent by email: verifying an address, and
//! setting a new password (`crate::accounts` does the work). The page opens
//! the links (`/#verify=…`, `/#reset=…`) and makes these calls, so a mail
//! scanner that follows a link uses up nothing.

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::accounts::{client_address, counted};
use super::error::ErrorBody;
use super::route::Endpoint;
use super::{ApiError, State, json_body, signed_in, with_state};
use crate::accounts;
use crate::auth::Principal;
use crate::domain::Email;

// What each endpoint takes from a request, past the path and method that
// `route::ROUTES` gives it.

pub fn verify_email_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    with_state(state.clone())
        .and(json_body(&state))
        .and_then(verify_email)
}

pub fn resend_verification_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    signed_in(state).and_then(resend_verification)
}

pub fn request_reset_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    with_state(state.clone())
        .and(client_address(state.clone()))
        .and(json_body(&state))
        .and_then(request_reset)
}

pub fn reset_password_route(
    state: State,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    with_state(state.clone())
        .and(json_body(&state))
        .and_then(reset_password)
}

/// The secret of a link, as the page found it in the link's `#verify=` or `#reset=`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct LinkBody {
    /// 64 hex characters.
    token: Option<String>,
}

/// The address a link was for.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct AddressView<'a> {
    email: &'a str,
    email_verified: bool,
}

#[utoipa::path(post, path = Endpoint::VerifyEmail.pattern(), tag = "accounts",
    request_body = LinkBody,
    responses(
        (status = 200, description = "The address is verified", body = AddressView),
        (status = 410, description = "`link_expired`: used already, expired or unknown", body = ErrorBody),
    ))]
async fn verify_email(state: State, body: LinkBody) -> Result<impl Reply, Rejection> {
    let token = body.token.unwrap_or_default();
    let user = accounts::verify_email(&state.pool, &token)
        .await
        .map_err(ApiError::from)?;
    tracing::info!(user_id = %user.id, "email address verified");
    Ok(warp::reply::json(&AddressView {
        email: user.email.as_str(),
        email_verified: true,
    }))
}

/// Where a link was sent.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct SentView<'a> {
    sent_to: &'a str,
}

#[utoipa::path(post, path = Endpoint::ResendVerification.pattern(), tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "A new verification link is on its way", body = SentView),
        (status = 409, description = "`already_verified`", body = ErrorBody),
        (status = 429, description = "`too_many_emails`: the address had its emails for today", body = ErrorBody),
    ))]
async fn resend_verification(state: State, principal: Principal) -> Result<impl Reply, Rejection> {
    let user = accounts::resend_verification(&state.pool, principal.user_id, &state.links)
        .await
        .map_err(ApiError::from)?;
    state.actors.notifier.wake();
    Ok(warp::reply::with_status(
        warp::reply::json(&SentView {
            sent_to: user.email.as_str(),
        }),
        StatusCode::ACCEPTED,
    ))
}

/// The address of the account whose password was forgotten.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct ResetRequest {
    #[schema(value_type = String, format = Email, example = "ann@example.com")]
    email: Option<String>,
}

/// Said whatever the address: no answer tells which addresses have accounts.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ResetRequested {
    message: &'static str,
}

#[utoipa::path(post, path = Endpoint::RequestReset.pattern(), tag = "accounts",
    request_body = ResetRequest,
    responses(
        (status = 202, description = "If an account has this address, a link is on its way", body = ResetRequested),
        (status = 422, description = "Not an email address", body = ErrorBody),
        (status = 429, description = "Too many requests from this client", body = ErrorBody),
    ))]
async fn request_reset(
    state: State,
    address: Option<String>,
    body: ResetRequest,
) -> Result<impl Reply, Rejection> {
    let Some(email) = body.email else {
        return Err(ApiError::InvalidInput("email is required".into()).into());
    };
    let email = Email::parse(&email).map_err(ApiError::from)?;
    counted(&state.limiter.reset, address.as_deref())?;
    // answered before the lookup: a known address must not take longer
    let (pool, links) = (state.pool.clone(), state.links.clone());
    let notifier = state.actors.notifier.clone();
    tokio::spawn(async move {
        match accounts::request_reset(&pool, &email, &links).await {
            Ok(true) => notifier.wake(),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "password reset request failed"),
        }
    });
    Ok(warp::reply::with_status(
        warp::reply::json(&ResetRequested {
            message: "If an account has this address, we emailed it a link to set a new password.",
        }),
        StatusCode::ACCEPTED,
    ))
}

/// A reset link's secret and the new password (8 characters or more).
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct NewPassword {
    /// 64 hex characters.
    token: Option<String>,
    #[schema(value_type = String, format = Password, min_length = 8)]
    password: Option<String>,
}

#[utoipa::path(post, path = Endpoint::ResetPassword.pattern(), tag = "accounts",
    request_body = NewPassword,
    responses(
        (status = 200, description = "The password is set; every session of the account has ended", body = AddressView),
        (status = 410, description = "`link_expired`: used already, expired or unknown", body = ErrorBody),
        (status = 422, description = "A short password", body = ErrorBody),
    ))]
async fn reset_password(state: State, body: NewPassword) -> Result<impl Reply, Rejection> {
    let (Some(token), Some(password)) = (body.token, body.password) else {
        return Err(ApiError::InvalidInput("token and password are required".into()).into());
    };
    let user = state
        .sessions
        .ending_sessions(accounts::reset_password(&state.pool, &token, &password))
        .await
        .map_err(ApiError::from)?;
    tracing::info!(user_id = %user.id, "password reset; every session ended");
    Ok(warp::reply::json(&AddressView {
        email: user.email.as_str(),
        email_verified: user.email_verified,
    }))
}
