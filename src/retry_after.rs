//! How long clients are told to wait before they ask again (`Retry-After`),
//! named once: the upload service advises them, `http::error` sends them.

/// The node is at its limit (uploads in flight, its admission actor
/// restarting), still starting, or its database is away.
pub const BUSY_SECS: u64 = 5;
/// Every password hashing slot stayed busy (a burst of sign-ins or sign-ups).
pub const PASSWORD_HASHING_SECS: u64 = 1;
/// ffprobe could not run here (overload, environment): the file may be fine.
pub const PROBE_UNAVAILABLE_SECS: u64 = 10;
