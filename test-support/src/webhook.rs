use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// One request a [`WebhookReceiver`] got, and what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
    pub answered: u16,
}

/// A real HTTP server on a free loopback port that records webhook POSTs.
/// It answers 500 to the first `fail_first` of them and 200 after.
pub struct WebhookReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl WebhookReceiver {
    pub async fn start(fail_first: usize) -> Self {
        use warp::Filter;
        let received = Arc::new(Mutex::new(Vec::<Received>::new()));
        let log = received.clone();
        let hook = warp::post()
            .and(warp::path("hook"))
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(move |headers, body| {
                let mut log = log.lock().unwrap();
                let answered = if log.len() < fail_first { 500 } else { 200 };
                log.push(Received {
                    headers,
                    body,
                    answered,
                });
                warp::reply::with_status("", warp::http::StatusCode::from_u16(answered).unwrap())
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(hook)
                .incoming(listener)
                .graceful(async move {
                    let _ = stopped.await;
                })
                .run(),
        );
        Self {
            addr,
            received,
            _stop: stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}
