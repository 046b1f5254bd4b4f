//! Any body as an upload, through the real routes: the answer is always a
//! documented refusal (never a panic, never a 500), and nothing is stored.
//! The token is refused, so every body is read to its end (within a budget)
//! by the multipart reader before the 401 is answered: that reader, on
//! hostile bodies, is what this target exercises. The parsers of an accepted
//! upload have targets of their own (`frame_options`, `filename`).
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use videoproject::auth::{SessionTokens, SignInLimits, TokenKey};
use videoproject::http::{AppState, State};
use videoproject::settings::Settings;
use videoproject::storage::MediaStore;

struct World {
    runtime: tokio::runtime::Runtime,
    state: State,
    media: std::path::PathBuf,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let media = std::env::temp_dir().join(format!("vp-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&media).unwrap();
        let state = runtime.block_on(async {
            let settings = Settings::load_from(|_| None).unwrap();
            let pool = videoproject::db::connect("postgres://nobody@127.0.0.1:1/none", 1).unwrap();
            let key =
                TokenKey::from_hex(&biscuit_auth::KeyPair::new().private().to_bytes_hex()).unwrap();
            let sessions = Arc::new(SessionTokens::new(
                &[key],
                Duration::from_secs(60),
                Duration::from_secs(60),
                pool.clone(),
                Arc::default(),
            ));
            Arc::new(AppState {
                pool,
                store: MediaStore::from_url(&format!("file://{}", media.display())).unwrap(),
                authenticator: sessions.clone(),
                sessions,
                limiter: SignInLimits::new(Duration::from_secs(60)),
                settings: Arc::new(settings),
                node: "fuzz".into(),
                metrics: videoproject::telemetry::metrics(),
                changes: Arc::default(),
                pages: videoproject::db::pages::Pages::new(Arc::default()),
                rendered: videoproject::http::Rendered::new(Duration::from_secs(60)),
                cluster: None,
            })
        });
        World {
            runtime,
            state,
            media,
        }
    })
}

fuzz_target!(|input: (bool, &[u8])| {
    let (with_boundary, body) = input;
    let world = world();
    let content_type = if with_boundary {
        "multipart/form-data; boundary=XBOUNDARY"
    } else {
        "multipart/form-data"
    };
    let status = world.runtime.block_on(async {
        let routes = videoproject::http::routes(world.state.clone());
        warp::test::request()
            .method("POST")
            .path("/api/v1/videos")
            .header("content-type", content_type)
            .header("authorization", "Bearer not-a-token")
            .body(body.to_vec())
            .reply(&routes)
            .await
            .status()
    });
    assert!(
        [400, 401, 408, 413].contains(&status.as_u16()),
        "status {status}"
    );
    assert!(
        std::fs::read_dir(&world.media).unwrap().next().is_none(),
        "something was stored"
    );
});
