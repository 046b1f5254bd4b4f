//! A real headless Chromium driven through chromedriver (WebDriver), for
//! the web page's tests. Each test gets its own browser profile and
//! downloads folder; screenshots of the steps go to
//! `target/screenshots/<test>/` (`target/coverage/screenshots/<test>/` in a
//! coverage run), kept as artifacts.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::helpers::{binary, eventually, free_port};

const CHROMIUM: &str = "/usr/bin/chromium";
const STARTUP: Duration = Duration::from_secs(30);

/// chromedriver and a session in a fresh Chromium profile.
pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: tempfile::TempDir,
    pub downloads: tempfile::TempDir,
    shots: PathBuf,
    step: usize,
}

impl Browser {
    /// A headless browser with a window of `width` × `height` CSS pixels.
    pub async fn start(test: &str, width: u32, height: u32) -> Self {
        Self::start_in(test, width, height, "en-US").await
    }

    /// A browser whose preferred language (`navigator.languages`) is `language`.
    pub async fn start_in(test: &str, width: u32, height: u32, language: &str) -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver must be installed (scripts/deps test installs it)");
        let address = format!("127.0.0.1:{port}");
        eventually("chromedriver to listen", STARTUP, || {
            let address = address.clone();
            async move { TcpStream::connect(&address).ok() }
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            format!("--window-size={width},{height}"),
            format!("--lang={language}"),
            format!("--accept-lang={language}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if std::env::var_os("VP_BROWSER_VISIBLE").is_some() {
            args.remove(0);
        }
        let mut chrome = json!({
            "args": args,
            "prefs": {
                "download.default_directory": downloads.path(),
                "download.prompt_for_download": false,
                "intl": { "accept_languages": language },
            },
        });
        if Path::new(CHROMIUM).exists() {
            chrome["binary"] = json!(CHROMIUM);
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), chrome);
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{address}"))
            .await
            .expect("a Chromium session");
        let shots = Path::new(binary())
            .parent()
            .and_then(Path::parent)
            .expect("the target directory")
            .join("screenshots")
            .join(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap();
        Self {
            client,
            driver,
            profile,
            downloads,
            shots,
            step: 0,
        }
    }

    /// Makes the browser's network as slow as a real one: `upload` bytes
    /// per second out (chromedriver's network conditions command).
    pub async fn throttle_uploads(&self, upload: u64) {
        self.client
            .issue_cmd(NetworkConditions { upload })
            .await
            .expect("chromedriver takes network conditions");
    }

    /// Saves a screenshot of the page as the test's next numbered step.
    pub async fn shot(&mut self, name: &str) {
        self.step += 1;
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = self.shots.join(format!("{:02}-{name}.png", self.step));
        std::fs::write(path, png).unwrap();
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} on the page: {e}"))
    }

    /// Types `text` into the element matching `css` (a file input takes
    /// a path: the file is chosen).
    pub async fn type_into(&self, css: &str, text: &str) {
        self.find(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Presses Enter on the element matching `css`.
    pub async fn press_enter(&self, css: &str) {
        self.type_into(css, &fantoccini::key::Key::Enter.to_string())
            .await;
    }

    /// Runs `script` in the page and gives back what it returned.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("running {script}: {e}"))
    }

    /// The text of the first element matching `css`, "" when there is none
    /// (or it is hidden).
    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until `css` matches a displayed element.
    pub async fn shown(&self, css: &str, timeout: Duration) -> fantoccini::elements::Element {
        eventually(&format!("{css} to be shown"), timeout, || async move {
            let e = self.client.find(Locator::Css(css)).await.ok()?;
            e.is_displayed().await.ok()?.then_some(e)
        })
        .await
    }

    /// Waits until the text of `css` satisfies `check`, and gives it back.
    pub async fn text_where(
        &self,
        css: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let check = &check;
        eventually(&format!("the text of {css}"), timeout, || async move {
            let text = self.text(css).await;
            check(&text).then_some(text)
        })
        .await
    }

    /// The first finished download of this browser.
    pub async fn downloaded(&self, timeout: Duration) -> PathBuf {
        let dir = self.downloads.path().to_owned();
        eventually("the download to finish", timeout, || {
            let dir = dir.clone();
            async move {
                std::fs::read_dir(&dir)
                    .ok()?
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| {
                        p.extension().is_some_and(|x| x == "zip")
                            && std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
                    })
            }
        })
        .await
    }

    /// Ends the session (Chromium quits); dropping stops chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

#[derive(Debug)]
struct NetworkConditions {
    upload: u64,
}

impl fantoccini::wd::WebDriverCompatibleCommand for NetworkConditions {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/chromium/network_conditions",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (warp::http::Method, Option<String>) {
        let conditions = json!({ "network_conditions": {
            "offline": false,
            "latency": 0,
            "download_throughput": -1,
            "upload_throughput": self.upload,
        }});
        (warp::http::Method::POST, Some(conditions.to_string()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = &self.profile;
    }
}
