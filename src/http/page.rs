//! The web page at `/`: a few static files under `web/`, built into the
//! binary so a node needs nothing beside it. The page talks to the same API
//! as any client (see web/app.js).

use std::sync::LazyLock;

use sha2::{Digest, Sha256};
use warp::http::{Method, StatusCode};

use super::ApiError;
use warp::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderValue};
use warp::path::FullPath;
use warp::{Filter, Rejection, Reply};

/// The page's own policy: its scripts, styles and images come from this
/// node only, it talks to this node only, and nothing inline runs.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    etag: String,
}

impl Asset {
    fn new(path: &'static str, content_type: &'static str, body: &'static [u8]) -> Self {
        let digest = Sha256::digest(body);
        Self {
            path,
            content_type,
            body,
            etag: format!("\"{}\"", hex::encode(&digest[..12])),
        }
    }
}

/// A file of `web/`, served under `/assets/`.
macro_rules! web {
    ($name:literal, $kind:expr) => {
        Asset::new(
            concat!("/assets/", $name),
            $kind,
            include_bytes!(concat!("../../web/", $name)),
        )
    };
}

/// A language's strings, served under `/assets/locales/`.
macro_rules! locale {
    ($name:literal) => {
        Asset::new(
            concat!("/assets/locales/", $name, ".json"),
            JSON,
            include_bytes!(concat!("../../locales/", $name, ".json")),
        )
    };
}

const SCRIPT: &str = "text/javascript; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

/// The page and its files. The script is a set of small ES modules, each
/// named here and preloaded by the page (`modulepreload`), so the browser
/// asks for them at once instead of one import at a time.
static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    vec![
        Asset::new(
            "/",
            "text/html; charset=utf-8",
            include_bytes!("../../web/index.html"),
        ),
        web!("app.js", SCRIPT),
        web!("dom.js", SCRIPT),
        web!("i18n.js", SCRIPT),
        web!("format.js", SCRIPT),
        web!("api.js", SCRIPT),
        web!("auth.js", SCRIPT),
        web!("account.js", SCRIPT),
        web!("upload.js", SCRIPT),
        web!("videos.js", SCRIPT),
        web!("row.js", SCRIPT),
        web!("actions.js", SCRIPT),
        web!("frames.js", SCRIPT),
        web!("live.js", SCRIPT),
        web!("app.css", "text/css; charset=utf-8"),
        web!("icon.svg", "image/svg+xml"),
        locale!("en"),
        locale!("pt-BR"),
    ]
});

/// The page's own path for `path`, when it is one of its files.
pub fn asset_path(path: &str) -> Option<&'static str> {
    ASSETS.iter().map(|a| a.path).find(|p| *p == path)
}

pub fn routes() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    // the path first: other paths must keep the API's own rejection (a
    // method check here would turn every API 413 or 401 into a 405)
    warp::path::full()
        .and(warp::method())
        .and(warp::header::optional::<String>("if-none-match"))
        .and_then(
            |path: FullPath, method: Method, seen: Option<String>| async move {
                let asset = ASSETS
                    .iter()
                    .find(|a| a.path == path.as_str())
                    .ok_or_else(warp::reject::not_found)?;
                // HEAD is GET without the body (hyper leaves it out)
                if method != Method::GET && method != Method::HEAD {
                    return Err(Rejection::from(ApiError::MethodNotAllowed));
                }
                Ok(answer(asset, seen.as_deref()))
            },
        )
}

/// The asset, or 304 when the browser has this version: browsers ask again
/// each time (no-cache), so a new binary's page is seen at once.
fn answer(asset: &Asset, seen: Option<&str>) -> warp::reply::Response {
    let unchanged = super::etag_matches(seen, &asset.etag);
    let mut response = if unchanged {
        warp::reply::with_status(warp::reply(), StatusCode::NOT_MODIFIED).into_response()
    } else {
        let mut full = asset.body.into_response();
        full.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        full
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        headers.insert(ETAG, etag);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_POLICY),
    );
    response
}

/// Whether `html` has an inline event handler attribute (` onclick=`…).
#[cfg(test)]
fn has_inline_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(at, _)| {
        let rest = &html[at + 3..];
        let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        name_len > 0 && rest[name_len..].starts_with('=')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(asset: &Asset) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(asset.body)
    }

    fn scripts() -> impl Iterator<Item = &'static Asset> {
        ASSETS.iter().filter(|a| a.content_type == SCRIPT)
    }

    #[test]
    fn every_asset_is_found_and_versioned() {
        for asset in ASSETS.iter() {
            assert!(!asset.body.is_empty(), "{}", asset.path);
            assert_eq!(asset.etag.len(), 26, "{}", asset.path);
        }
        let page = text(&ASSETS[0]);
        for asset in &ASSETS[1..] {
            let used = if asset.path.starts_with("/assets/locales/") {
                // fetched by the page's words, by name
                scripts().any(|s| text(s).contains("/assets/locales/"))
            } else {
                page.contains(asset.path)
            };
            assert!(used, "the page uses {} (or it is not needed)", asset.path);
        }
    }

    #[test]
    fn every_module_the_scripts_import_is_served() {
        for script in scripts() {
            for line in text(script).lines().filter(|l| l.starts_with("import ")) {
                let name = line
                    .rsplit_once("from \"./")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(name, _)| name)
                    .unwrap_or_else(|| panic!("{}: {line}", script.path));
                assert!(
                    asset_path(&format!("/assets/{name}")).is_some(),
                    "{} imports {name}, which is not served",
                    script.path
                );
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = text(&ASSETS[0]);
        assert!(!page.contains("<script>"), "scripts come from files");
        assert!(!page.contains("style=\""), "styles come from the sheet");
        assert!(!has_inline_handler(&page), "no inline event handlers");
        assert!(has_inline_handler("<a onclick=\"x()\">"));
        assert!(!has_inline_handler("<p>only one</p>"));
    }

    #[test]
    fn unchanged_assets_are_not_sent_again() {
        let asset = &ASSETS[1];
        let fresh = answer(asset, None);
        assert_eq!(fresh.status(), 200);
        let again = answer(asset, Some(&format!("\"other\", {}", asset.etag)));
        assert_eq!(again.status(), 304);
        assert_eq!(answer(asset, Some("\"other\"")).status(), 200);
    }
}
