//! Links: the caller's own session token with one more block that confines
//! it to one operation on one video (reading its zip, or its frames,
//! thumbnails and contact sheet) for a short time, so it needs no
//! `Authorization` header and is refused everywhere else. Links made lately
//! are handed out again (see [`LinkCache`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use biscuit_auth::builder::BlockBuilder;
use biscuit_auth::macros::block;

use crate::auth::{LinkScope, Session};
use crate::budgeted::Budgeted;
use crate::domain::JobId;

/// A link token for `scope` of `video` made from `session`'s token, good
/// until `expires`.
pub(super) fn mint(
    session: &Session,
    video: JobId,
    scope: LinkScope,
    expires: SystemTime,
) -> Option<String> {
    let restriction = block!(
        r#"check if operation({operation}); check if video({video});
           check if time($t), $t < {expires};"#,
        operation = scope.operation(),
        video = video.to_string(),
        expires = expires,
    );
    attenuate(session, restriction, "a download link")
}

/// `session`'s token with `restriction` appended; `None`, logged, when it
/// cannot be made (the caller then gives no link).
fn attenuate(session: &Session, restriction: BlockBuilder, what: &str) -> Option<String> {
    let token = session
        .token
        .append(restriction)
        .and_then(|b| b.to_base64());
    token
        .inspect_err(|e| tracing::warn!(error = %e, "could not attenuate a token for {what}"))
        .ok()
}

/// What an archive link is confined to: the digest of its videos' ids, in
/// their order, so the ids themselves need not fit in the token.
pub(super) fn archive_digest(videos: &[JobId]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for video in videos {
        hash.update(video.0.as_bytes());
    }
    hex::encode(hash.finalize())
}

/// A link to one zip of `videos`' zips, made from `session`'s token, good
/// until `expires`; the ids travel in the link, the token holds their digest.
pub(super) fn mint_archive(
    session: &Session,
    videos: &[JobId],
    expires: SystemTime,
) -> Option<String> {
    let restriction = block!(
        r#"check if operation("archive"); check if archive({digest});
           check if time($t), $t < {expires};"#,
        digest = archive_digest(videos),
        expires = expires,
    );
    let token = attenuate(session, restriction, "an archive link")?;
    Some(format!("{}&token={token}", archive_path(videos)))
}

/// The archive of `videos` without a token: for a caller with a header.
pub fn archive_path(videos: &[JobId]) -> String {
    let ids: Vec<String> = videos.iter().map(ToString::to_string).collect();
    format!("/api/v1/videos/archive?ids={}", ids.join(","))
}

/// Download links made lately, by session and video. Minting one signs a
/// block (~0.1 ms); a list of 50 done videos would spend 5 ms on links
/// alone, at every refresh. A link is handed out again while it is young:
/// it still has nearly its whole lifetime, and it ends with its session.
pub(super) struct LinkCache(Mutex<Budgeted<LinkKey, (String, Instant)>>);

impl Default for LinkCache {
    fn default() -> Self {
        Self(Mutex::new(Budgeted::new(LINK_CACHE_ENTRIES)))
    }
}

/// A session (its revocation ids), a video and what the link reads of it.
pub(super) type LinkKey = (Arc<[u8]>, JobId, LinkScope);

/// How many links the cache holds before it forgets the old ones.
const LINK_CACHE_ENTRIES: usize = 8192;

impl LinkCache {
    /// How long a link is handed out again: a tenth of its lifetime, at most a minute.
    pub(super) fn reuse_for(link_ttl: Duration) -> Duration {
        (link_ttl / 10).min(Duration::from_secs(60))
    }

    pub(super) fn get_or_mint(
        &self,
        key: LinkKey,
        link_ttl: Duration,
        mint: impl FnOnce() -> Option<String>,
    ) -> Option<String> {
        let fresh = |at: &Instant| at.elapsed() < Self::reuse_for(link_ttl);
        if let Some((link, at)) = self.0.lock().unwrap().get(&key)
            && fresh(at)
        {
            return Some(link.clone());
        }
        let link = mint()?;
        self.0
            .lock()
            .unwrap()
            .insert(key, (link.clone(), Instant::now()), 1, |_, (_, at)| {
                fresh(at)
            });
        Some(link)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use biscuit_auth::Biscuit;

    use super::*;
    use crate::auth::token::SessionTokens;
    use crate::auth::token::authorizer::Use;
    use crate::auth::token::tests::{key, link_token, session, tokens};
    use crate::domain::UserId;

    /// Whether `token` opens the `scope` of `video`.
    fn opens(t: &SessionTokens, token: &str, scope: LinkScope, video: JobId) -> bool {
        t.verify(token, &Use::Link(scope, video)).is_ok()
    }

    #[test]
    fn a_download_link_reads_one_zip_and_nothing_else() {
        let t = tokens(Duration::from_secs(3600));
        let user = UserId::new();
        let (token, _) = t.mint(user, 0);
        let (video, other) = (JobId::new(), JobId::new());
        let link = t.download_link(&session(&t, &token), video).unwrap();
        assert!(link.starts_with(&format!("/api/v1/videos/{video}/frames.zip?token=")));
        let restricted = link_token(&link);

        let (got, _) = t
            .verify(restricted, &Use::Link(LinkScope::Download, video))
            .unwrap();
        assert_eq!(got, user);
        assert!(
            !opens(&t, restricted, LinkScope::Download, other),
            "another video"
        );
        assert!(t.verify(restricted, &Use::Api).is_err(), "the API");
        // the session token itself still works for both
        assert!(t.verify(&token, &Use::Api).is_ok());
        assert!(opens(&t, &token, LinkScope::Download, other));
    }

    #[test]
    fn a_frames_link_reads_its_videos_frames_and_not_its_zip() {
        let t = tokens(Duration::from_secs(3600));
        let (token, _) = t.mint(UserId::new(), 0);
        let (video, other) = (JobId::new(), JobId::new());
        let me = session(&t, &token);
        let frames = t.link_token(&me, video, LinkScope::Frames).unwrap();
        assert!(opens(&t, &frames, LinkScope::Frames, video));
        assert!(
            !opens(&t, &frames, LinkScope::Frames, other),
            "another video"
        );
        assert!(!opens(&t, &frames, LinkScope::Download, video), "the zip");
        assert!(t.verify(&frames, &Use::Api).is_err(), "the API");
        let zip = t.download_link(&me, video).unwrap();
        assert!(
            !opens(&t, link_token(&zip), LinkScope::Frames, video),
            "the zip link stays the zip's"
        );
    }

    #[test]
    fn a_young_link_is_handed_out_again_for_its_session_and_video_only() {
        let t = tokens(Duration::from_secs(3600));
        let (mine, _) = t.mint(UserId::new(), 0);
        let (theirs, _) = t.mint(UserId::new(), 0);
        let (video, other) = (JobId::new(), JobId::new());
        let me = session(&t, &mine);
        let first = t.download_link(&me, video).unwrap();
        assert_eq!(t.download_link(&me, video).unwrap(), first, "reused");
        assert_ne!(t.download_link(&me, other).unwrap(), first);
        let their = t.download_link(&session(&t, &theirs), video).unwrap();
        assert_ne!(their, first, "another session's link");
        assert!(opens(&t, link_token(&their), LinkScope::Download, video));
        assert_eq!(
            LinkCache::reuse_for(Duration::from_secs(900)),
            Duration::from_secs(60)
        );
        assert_eq!(LinkCache::reuse_for(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn an_archive_link_reads_its_selection_and_nothing_else() {
        let t = tokens(Duration::from_secs(3600));
        let (token, _) = t.mint(UserId::new(), 0);
        let videos = [JobId::new(), JobId::new()];
        let link = t.archive_link(&session(&t, &token), &videos).unwrap();
        assert!(link.starts_with(&format!(
            "/api/v1/videos/archive?ids={},{}&token=",
            videos[0], videos[1]
        )));
        // the ids come first, then the token
        let restricted = link.split_once("&token=").unwrap().1;
        let digest = |ids: &[JobId]| Use::Archive(archive_digest(ids));
        assert!(t.verify(restricted, &digest(&videos)).is_ok());
        assert!(
            t.verify(restricted, &digest(&videos[..1])).is_err(),
            "fewer"
        );
        let more = [videos[0], videos[1], JobId::new()];
        assert!(t.verify(restricted, &digest(&more)).is_err(), "more");
        assert!(t.verify(restricted, &Use::Api).is_err(), "the API");
        assert!(
            !opens(&t, restricted, LinkScope::Download, videos[0]),
            "one zip"
        );
    }

    #[test]
    fn a_download_link_expires_on_its_own() {
        let pool = crate::db::connect("postgres://nobody@127.0.0.1:1/none", 1).unwrap();
        let t = SessionTokens::new(
            &[key()],
            Duration::from_secs(3600),
            Duration::ZERO,
            pool,
            Arc::default(),
        );
        let (token, _) = t.mint(UserId::new(), 0);
        let video = JobId::new();
        let link = t.download_link(&session(&t, &token), video).unwrap();
        assert!(!opens(&t, link_token(&link), LinkScope::Download, video));
    }

    #[test]
    fn a_block_appended_to_a_link_cannot_widen_it() {
        let t = tokens(Duration::from_secs(3600));
        let (token, _) = t.mint(UserId::new(), 0);
        let (video, other) = (JobId::new(), JobId::new());
        let link = t.download_link(&session(&t, &token), video).unwrap();
        let widened = Biscuit::from_base64(link_token(&link), t.keys.signing().0.public())
            .unwrap()
            .append(block!(
                r#"operation("api"); operation("download"); video({other});"#,
                other = other.to_string()
            ))
            .and_then(|b| b.to_base64())
            .unwrap();
        assert!(t.verify(&widened, &Use::Api).is_err(), "the API");
        assert!(
            !opens(&t, &widened, LinkScope::Download, other),
            "another video"
        );
        assert!(
            opens(&t, &widened, LinkScope::Download, video),
            "its own zip still"
        );
    }
}
