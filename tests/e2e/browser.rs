//! A real headless Chromium, driven through chromedriver (WebDriver) with `fantoccini`.
//!
//! Debian's `chromium` and `chromium-driver` are installed on first use when they are missing
//! (the test command installs what the tests need); when that is impossible the test fails and
//! says why. Screenshots are kept in `target/tmp/ui-screenshots/` as test artifacts.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Installs Chromium and chromedriver from Debian's packages when they are missing; once per
/// test process.
fn ensure_installed() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
            return Ok(());
        }
        eprintln!("browser tests: installing Debian's chromium and chromium-driver");
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .map_err(|err| format!("cannot run apt-get: {err}"))
                .and_then(|status| {
                    status
                        .success()
                        .then_some(())
                        .ok_or_else(|| format!("`apt-get {}` failed: {status}", args.join(" ")))
                })
        };
        apt(&["update", "-qq"])?;
        apt(&["install", "-y", "-qq", "chromium", "chromium-driver"])?;
        if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
            Ok(())
        } else {
            Err(format!(
                "{CHROMIUM} or {CHROMEDRIVER} still missing after apt-get install"
            ))
        }
    });
    if let Err(err) = result {
        panic!(
            "the browser tests need Debian's chromium and chromium-driver and could not install \
             them: {err}. Install them (as root: apt-get install chromium chromium-driver) and \
             run the tests again."
        );
    }
}

/// A headless Chromium session; chromedriver and the browser end when it is dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    /// Where screenshots go.
    artifacts: PathBuf,
}

impl Browser {
    pub async fn start() -> Browser {
        ensure_installed();
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {CHROMEDRIVER}: {err}"));
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    "--window-size=1400,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(err) if started.elapsed() > Duration::from_secs(30) => {
                    let _ = driver.kill();
                    panic!(
                        "no WebDriver session with chromedriver on port {port} within 30 s: {err}"
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
        std::fs::create_dir_all(&artifacts).unwrap();
        Browser {
            client,
            driver,
            _profile: profile,
            artifacts,
        }
    }

    /// Ends the session: Chromium quits.
    pub async fn close(self) {
        if let Err(err) = self.client.clone().close().await {
            eprintln!("closing the browser session failed: {err}");
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|err| panic!("cannot open {url}: {err}"));
    }

    /// The first element matching the CSS selector, waiting for it up to 10 s.
    pub async fn wait(&self, css: &str) -> Element {
        self.wait_for(css, Duration::from_secs(10)).await
    }

    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        match self
            .client
            .wait()
            .at_most(timeout)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(err) => {
                let shot = self.screenshot("missing-element").await;
                let errors = self.page_text("[data-testid=error]").await;
                panic!(
                    "no element {css:?} within {timeout:?}: {err}; page error: {errors:?}; \
                     screenshot: {}",
                    shot.display()
                )
            }
        }
    }

    /// The text of the first element matching the CSS selector, waiting for it up to 10 s.
    pub async fn text(&self, css: &str) -> String {
        self.wait(css).await.text().await.unwrap()
    }

    /// Clicks the first element matching the CSS selector, waiting for it up to 10 s.
    pub async fn click(&self, css: &str) {
        self.wait(css).await.click().await.unwrap();
    }

    /// Every element matching the CSS selector, now.
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap()
    }

    /// Waits until at least `n` elements match `css`; returns them.
    pub async fn wait_count(&self, css: &str, n: usize) -> Vec<Element> {
        let started = Instant::now();
        loop {
            let found = self.all(css).await;
            if found.len() >= n {
                return found;
            }
            if started.elapsed() > Duration::from_secs(10) {
                let shot = self.screenshot("too-few-elements").await;
                panic!(
                    "{} elements {css:?} after 10 s, wanted {n}; screenshot: {}",
                    found.len(),
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the first element matching `css`, if any.
    pub async fn page_text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// Runs a script in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|err| panic!("script failed: {err}\n{script}"))
    }

    /// Saves a PNG of the page under `target/tmp/ui-screenshots/` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let path = self.artifacts.join(format!("{name}.png"));
        match self.client.screenshot().await {
            Ok(png) => std::fs::write(&path, png).unwrap(),
            Err(err) => eprintln!("screenshot {name} failed: {err}"),
        }
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that finished called `close`, which ended Chromium. After a panic, Chromium
        // (chromedriver's child) is killed first: it would outlive chromedriver otherwise.
        for pid in children_of(self.driver.id()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The processes whose parent is `parent`, from `/proc/<pid>/stat`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the parenthesised name: state, then the parent's pid.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}
