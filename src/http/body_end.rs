//! Whether a request's body was read to its end by the time its answer is
//! sent. When it was not (a body refused unread as too large, a token
//! refused before a big body, an upload cut short), the connection cannot
//! carry another request, so the answer says `Connection: close` and the
//! client does not try to reuse it. One place for every route.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use warp::http::HeaderValue;
use warp::http::header::{CONNECTION, HeaderMap};

/// A request body that records reaching its end.
pub struct Tracked<B> {
    inner: B,
    ended: Arc<AtomicBool>,
}

/// The other half: asked when the answer goes out.
pub struct BodyEnd(Arc<AtomicBool>);

/// Wraps `body`; an empty body has ended already.
pub fn track<B: Body>(body: B) -> (Tracked<B>, BodyEnd) {
    let ended = Arc::new(AtomicBool::new(body.is_end_stream()));
    let end = BodyEnd(ended.clone());
    (Tracked { inner: body, ended }, end)
}

impl BodyEnd {
    /// Marks the answer `Connection: close` when the body was left unread.
    pub fn close_if_unread(&self, headers: &mut HeaderMap) {
        if !self.0.load(Ordering::Acquire) {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};

    #[tokio::test]
    async fn an_unread_body_closes_the_connection_a_read_one_does_not() {
        let (body, end) = track(Full::new(Bytes::from_static(b"payload")));
        let mut headers = HeaderMap::new();
        end.close_if_unread(&mut headers);
        assert_eq!(headers[CONNECTION], "close");

        let mut headers = HeaderMap::new();
        body.collect().await.unwrap();
        end.close_if_unread(&mut headers);
        assert!(!headers.contains_key(CONNECTION));

        let (_, end) = track(Empty::<Bytes>::new());
        let mut headers = HeaderMap::new();
        end.close_if_unread(&mut headers);
        assert!(!headers.contains_key(CONNECTION), "no body, nothing unread");
    }
}
