//! The one mapping from errors to HTTP answers. Every error a route can meet
//! becomes an [`ApiError`] with a status and a stable `code`; a 5xx body says
//! nothing internal, the cause goes to the log.

use std::convert::Infallible;

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode};
use warp::reject::Reject;
use warp::{Rejection, Reply};

use crate::accounts::AccountError;
use crate::auth::AuthError;
use crate::db::DbError;
use crate::domain::{InvalidInput, OptionsError};
use crate::storage::StorageError;
use crate::upload::UploadError;

/// Declares [`ErrorCode`]: each code once, with its wire name, and the
/// list of them all (each has words in every language: `i18n`'s tests).
macro_rules! error_codes {
    ($($variant:ident => $code:literal,)*) => {
        /// Every `code` an error answer can carry.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    InvalidInput => "invalid_input",
    BadRequest => "bad_request",
    InvalidMultipart => "invalid_multipart",
    EmailTaken => "email_taken",
    InvalidCredentials => "invalid_credentials",
    Unauthorized => "unauthorized",
    RateLimited => "rate_limited",
    TooManyQueued => "too_many_queued",
    NotFound => "not_found",
    MethodNotAllowed => "method_not_allowed",
    NotReady => "not_ready",
    UploadInProgress => "upload_in_progress",
    RequestTimeout => "request_timeout",
    TooManyUploads => "too_many_uploads",
    TooManyStreams => "too_many_streams",
    LengthRequired => "length_required",
    Expired => "expired",
    LinkExpired => "link_expired",
    AlreadyVerified => "already_verified",
    TooManyEmails => "too_many_emails",
    TooLarge => "too_large",
    UnsupportedMedia => "unsupported_media",
    OverBudget => "over_budget",
    RangeNotSatisfiable => "range_not_satisfiable",
    Unavailable => "unavailable",
    InsufficientStorage => "insufficient_storage",
    QuotaExceeded => "quota_exceeded",
    Internal => "internal",
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidInput(String),
    /// An invalid input the client can point at: the field is in the answer.
    #[error("{message}")]
    InvalidField { field: String, message: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidMultipart(String),
    #[error("an account with this email exists")]
    EmailTaken,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("{0}")]
    Unauthorized(String),
    #[error("too many attempts; try again later")]
    RateLimited { retry_after_secs: u64 },
    #[error("you have {limit} videos waiting already; upload more once some are processed")]
    TooManyQueued { limit: u32 },
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the frames are not ready yet")]
    NotReady,
    #[error("an upload with this Idempotency-Key is still in progress; retry later")]
    UploadInProgress,
    #[error("the client sent nothing for too long")]
    RequestTimeout,
    #[error("the upload arrived slower than {min_rate} bytes a second")]
    TooSlow { min_rate: u64 },
    #[error("you have {limit} uploads streaming already; finish one first")]
    TooManyUploads { limit: u32 },
    #[error("a Content-Length is required")]
    LengthRequired,
    #[error("you have {limit} live event streams open already; close one first")]
    TooManyStreams { limit: usize },
    #[error("the video's files were deleted after the retention period")]
    Expired,
    /// A link that opens nothing, an address verified already, or one that
    /// had its emails for today (the other account errors map to the
    /// variants above).
    #[error(transparent)]
    Account(AccountError),
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("{0}")]
    UnsupportedMedia(String),
    /// The video would cost more than one job may.
    #[error("{0}")]
    OverBudget(String),
    #[error("the requested range is not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error(
        "the upload could not be stored (the media store is full or failing); nothing was kept"
    )]
    InsufficientStorage,
    #[error("your videos keep {used} of your {quota} bytes; delete some to upload more")]
    QuotaExceeded { used: u64, quota: u64 },
    #[error("the node cannot accept this now; retry later")]
    Unavailable { retry_after_secs: u64 },
    #[error("internal error")]
    Internal(String),
}

impl Reject for ApiError {}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidInput(_) | ApiError::InvalidField { .. } | ApiError::OverBudget(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::BadRequest(_) | ApiError::InvalidMultipart(_) => StatusCode::BAD_REQUEST,
            ApiError::EmailTaken
            | ApiError::NotReady
            | ApiError::UploadInProgress
            | ApiError::Account(AccountError::AlreadyVerified) => StatusCode::CONFLICT,
            ApiError::RequestTimeout | ApiError::TooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::LengthRequired => StatusCode::LENGTH_REQUIRED,
            ApiError::InvalidCredentials | ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited { .. }
            | ApiError::TooManyQueued { .. }
            | ApiError::TooManyUploads { .. }
            | ApiError::TooManyStreams { .. }
            | ApiError::Account(AccountError::TooManyEmails { .. }) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Expired | ApiError::Account(AccountError::LinkExpired) => StatusCode::GONE,
            ApiError::TooLarge { .. } | ApiError::BodyTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage | ApiError::QuotaExceeded { .. } => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            ApiError::Internal(_) | ApiError::Account(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code of the answer (see [`ErrorCode`]).
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    pub fn error_code(&self) -> ErrorCode {
        match self {
            ApiError::InvalidInput(_) | ApiError::InvalidField { .. } => ErrorCode::InvalidInput,
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::InvalidMultipart(_) => ErrorCode::InvalidMultipart,
            ApiError::EmailTaken => ErrorCode::EmailTaken,
            ApiError::InvalidCredentials => ErrorCode::InvalidCredentials,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::TooManyQueued { .. } => ErrorCode::TooManyQueued,
            ApiError::NotFound => ErrorCode::NotFound,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::NotReady => ErrorCode::NotReady,
            ApiError::UploadInProgress => ErrorCode::UploadInProgress,
            ApiError::RequestTimeout | ApiError::TooSlow { .. } => ErrorCode::RequestTimeout,
            ApiError::TooManyUploads { .. } => ErrorCode::TooManyUploads,
            ApiError::TooManyStreams { .. } => ErrorCode::TooManyStreams,
            ApiError::LengthRequired => ErrorCode::LengthRequired,
            ApiError::Expired => ErrorCode::Expired,
            ApiError::Account(AccountError::LinkExpired) => ErrorCode::LinkExpired,
            ApiError::Account(AccountError::AlreadyVerified) => ErrorCode::AlreadyVerified,
            ApiError::Account(AccountError::TooManyEmails { .. }) => ErrorCode::TooManyEmails,
            ApiError::TooLarge { .. } | ApiError::BodyTooLarge { .. } => ErrorCode::TooLarge,
            ApiError::UnsupportedMedia(_) => ErrorCode::UnsupportedMedia,
            ApiError::OverBudget(_) => ErrorCode::OverBudget,
            ApiError::RangeNotSatisfiable { .. } => ErrorCode::RangeNotSatisfiable,
            ApiError::Unavailable { .. } => ErrorCode::Unavailable,
            ApiError::InsufficientStorage => ErrorCode::InsufficientStorage,
            ApiError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            ApiError::Internal(_) | ApiError::Account(_) => ErrorCode::Internal,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::Unavailable { retry_after_secs } => Some(*retry_after_secs),
            ApiError::UploadInProgress => Some(5),
            ApiError::TooManyQueued { .. } => Some(30),
            ApiError::Account(AccountError::TooManyEmails { .. }) => Some(3600),
            ApiError::TooManyUploads { .. } | ApiError::TooManyStreams { .. } => Some(5),
            _ => None,
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        // the database is away: tell the client to come back, not that we broke
        if e.is_unavailable() {
            return ApiError::Unavailable {
                retry_after_secs: crate::retry_after::BUSY_SECS,
            };
        }
        ApiError::Internal(e.to_string())
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => ApiError::NotFound,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::TooManyQueued { limit } => ApiError::TooManyQueued { limit },
            UploadError::QuotaExceeded { used, quota } => ApiError::QuotaExceeded { used, quota },
            UploadError::TooManyUploads { limit } => ApiError::TooManyUploads { limit },
            UploadError::Busy { retry_after_secs } => ApiError::Unavailable { retry_after_secs },
            UploadError::InProgress => ApiError::UploadInProgress,
            UploadError::TooLarge { limit } => ApiError::TooLarge { limit },
            UploadError::Empty => ApiError::UnsupportedMedia(e.to_string()),
            UploadError::NotAVideo(reason) => ApiError::UnsupportedMedia(reason),
            UploadError::OverBudget(sentence) => ApiError::OverBudget(sentence),
            UploadError::StoreRefused => ApiError::InsufficientStorage,
            // deleted by its owner while it streamed
            UploadError::Deleted => ApiError::NotFound,
            UploadError::SourceNotReady => ApiError::NotReady,
            UploadError::SourceGone => ApiError::Expired,
            UploadError::Db(e) => e.into(),
            UploadError::Storage(e) => e.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::Invalid | AuthError::Revoked => {
                ApiError::Unauthorized(e.to_string())
            }
            AuthError::Busy => ApiError::Unavailable {
                retry_after_secs: crate::retry_after::PASSWORD_HASHING_SECS,
            },
            AuthError::Db(db) => db.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Invalid(e) => e.into(),
            AccountError::EmailTaken => ApiError::EmailTaken,
            AccountError::Gone => ApiError::Unauthorized(e.to_string()),
            AccountError::WrongPassword => ApiError::InvalidCredentials,
            AccountError::Auth(e) => e.into(),
            AccountError::Db(e) => e.into(),
            e @ (AccountError::LinkExpired
            | AccountError::AlreadyVerified
            | AccountError::TooManyEmails { .. }) => ApiError::Account(e),
        }
    }
}

impl From<InvalidInput> for ApiError {
    fn from(e: InvalidInput) -> Self {
        ApiError::InvalidInput(e.0)
    }
}

impl From<OptionsError> for ApiError {
    fn from(e: OptionsError) -> Self {
        ApiError::InvalidField {
            field: e.field,
            message: e.message,
        }
    }
}

/// Every error answer: `{"error": {"code", "message", "field"?}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ErrorDetail<'a> {
    /// Stable, snake_case: what a program branches on.
    code: &'a str,
    /// For people.
    message: String,
    /// The request field at fault, for invalid input of one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

/// The JSON answer for `e`.
pub fn error_reply(e: &ApiError) -> warp::reply::Response {
    if let ApiError::Internal(cause) = e {
        tracing::error!(%cause, "internal error");
    }
    let body = ErrorBody {
        error: ErrorDetail {
            code: e.code(),
            message: e.to_string(),
            field: match e {
                ApiError::InvalidField { field, .. } => Some(field),
                _ => None,
            },
        },
    };
    let mut response =
        warp::reply::with_status(warp::reply::json(&body), e.status()).into_response();
    let headers = response.headers_mut();
    if let Some(secs) = e.retry_after() {
        headers.insert("retry-after", HeaderValue::from(secs));
    }
    if let ApiError::RangeNotSatisfiable { size } = e
        && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
    {
        headers.insert("content-range", v);
    }
    if let ApiError::Unauthorized(_) = e {
        headers.insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    response
}

/// Turns every rejection, ours or warp's, into the JSON error shape.
pub async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    let e = if let Some(e) = rejection.find::<ApiError>() {
        return Ok(error_reply(e));
    } else if rejection.is_not_found() {
        ApiError::NotFound
    // a body refused for its size was refused by the route whose path and
    // method matched: that says more than another route's 405
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::BodyTooLarge {
            limit: super::JSON_LIMIT,
        }
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::LengthRequired
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::InvalidInput(e.to_string())
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        ApiError::BadRequest("unsupported Content-Type".into())
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::BadRequest(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        ApiError::BadRequest(e.to_string())
    } else {
        tracing::debug!(?rejection, "unmapped rejection");
        ApiError::BadRequest("the request is malformed".into())
    };
    Ok(error_reply(&e))
}
