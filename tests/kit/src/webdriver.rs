//! A real browser for the inbox's tests: Debian's headless Chromium driven through ChromeDriver
//! over the W3C WebDriver protocol (the few commands the tests use, over HTTP). `scripts/test.sh`
//! installs both (`chromium`, `chromium-driver`); a machine without them fails the test, it is
//! never skipped.
use crate::eventually::eventually_ok;
use serde_json::{json, Value};
use std::time::Duration;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key a WebDriver element reference is under (W3C WebDriver, "Elements").
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session; the driver and its Chromium (one process group) end with it, even when
/// a test fails half-way.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: tokio::process::Child,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
    }
}

/// A directory removed when dropped (Chromium's empty profile).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// ChromeDriver on a free port, and a headless Chromium session with an empty profile and
    /// no background networking (this machine's network is closed).
    pub async fn start() -> Browser {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "Chromium and ChromeDriver are needed: apt-get install chromium chromium-driver (scripts/test.sh does)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually_ok("ChromeDriver ready", Duration::from_secs(30), || {
            let status = http.get(format!("{base}/status")).send();
            async move {
                let body = status.await.map_err(|e| e.to_string())?.text().await.map_err(|e| e.to_string())?;
                let ready = serde_json::from_str::<Value>(&body).ok().and_then(|v| v["value"]["ready"].as_bool());
                if ready == Some(true) {
                    Ok(())
                } else {
                    Err(body)
                }
            }
        })
        .await;
        let profile = std::env::temp_dir().join(format!("multicomms-chromium-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&profile).expect("profile directory");
        let arguments = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ];
        let mut args: Vec<String> = arguments.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let created = post(&http, &format!("{base}/session"), &capabilities).await;
        let session = created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}"));
        Browser { session: format!("{base}/session/{session}"), http, driver, _profile: TempDir(profile) }
    }

    pub async fn goto(&self, url: &str) {
        post(&self.http, &format!("{}/url", self.session), &json!({"url": url})).await;
    }

    /// The element `css` selects, once it is there.
    async fn element(&self, css: &str) -> String {
        let url = format!("{}/element", self.session);
        let what = format!("the element {css}");
        let query = json!({"using": "css selector", "value": css});
        eventually_ok(&what, Duration::from_secs(20), || async {
            let found = post(&self.http, &url, &query).await;
            let id = found["value"][ELEMENT].as_str();
            id.map(str::to_string).ok_or(found)
        })
        .await
    }

    /// Replaces what the field `css` selects holds with `text`, typed.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        post(&self.http, &format!("{}/element/{element}/clear", self.session), &json!({})).await;
        post(&self.http, &format!("{}/element/{element}/value", self.session), &json!({"text": text})).await;
    }

    /// Clicks what `css` selects once it is there and enabled.
    pub async fn click(&self, css: &str) {
        let what = format!("{css} enabled");
        eventually_ok(&what, Duration::from_secs(20), || async {
            let element = self.element(css).await;
            let enabled = get(&self.http, &format!("{}/element/{element}/enabled", self.session)).await;
            if enabled["value"] == json!(true) {
                Ok(element)
            } else {
                Err(enabled)
            }
        })
        .await;
        let element = self.element(css).await;
        post(&self.http, &format!("{}/element/{element}/click", self.session), &json!({})).await;
    }

    /// The text `css` shows.
    pub async fn text(&self, css: &str) -> String {
        let element = self.element(css).await;
        let answer = get(&self.http, &format!("{}/element/{element}/text", self.session)).await;
        answer["value"].as_str().unwrap_or_default().to_string()
    }

    /// Waits until what `css` shows contains `needle` (the page updates itself).
    pub async fn wait_for_text(&self, css: &str, needle: &str, timeout: Duration) {
        let what = format!("{css} showing {needle:?}");
        eventually_ok(&what, timeout, || async {
            let shown = self.text(css).await;
            if shown.contains(needle) {
                Ok(())
            } else {
                Err(shown)
            }
        })
        .await
    }

    /// Ends the session (and its Chromium).
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }

    /// The page's cookies, as the browser holds them (name, value, attributes).
    pub async fn cookies(&self) -> Vec<Value> {
        let answer = get(&self.http, &format!("{}/cookie", self.session)).await;
        answer["value"].as_array().cloned().unwrap_or_default()
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let sent = http.post(url).header("content-type", "application/json").body(body.to_string()).send().await;
    let text = sent.expect("ChromeDriver answers").text().await.expect("its body");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    let text = http.get(url).send().await.expect("ChromeDriver answers").text().await.expect("its body");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}
