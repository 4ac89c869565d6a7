//! A real `sightline` process on port 0 with its own data directory, and small HTTP helpers.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `sightline` binary. Killed when dropped.
pub struct Server {
    child: Child,
    data_dir: PathBuf,
    log_path: PathBuf,
    extra_args: Vec<String>,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub query: SocketAddr,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server with a fresh data directory and the given extra flags.
    pub fn start(extra_args: &[&str]) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut server = Self::spawn(
            &data_dir,
            extra_args.iter().map(|a| a.to_string()).collect(),
        );
        server._temp = Some(temp);
        server
    }

    fn spawn(data_dir: &Path, extra_args: Vec<String>) -> Server {
        let parent = data_dir.parent().expect("data dir has a parent");
        std::fs::create_dir_all(parent).unwrap();
        let log_path = unique_log_path(parent);
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sightline"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--grpc-listen-addr", "127.0.0.1:0"])
            .args(["--http-listen-addr", "127.0.0.1:0"])
            .args(["--query-listen-addr", "127.0.0.1:0"])
            .args(&extra_args)
            .env("SIGHTLINE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start sightline");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("sightline ready:") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "sightline did not become ready within 60 s; its log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        };
        let addr = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|part| part.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} address in {line:?}"))
                .parse()
                .unwrap()
        };
        Server {
            grpc: addr("grpc"),
            http: addr("http"),
            query: addr("query"),
            child,
            data_dir: data_dir.to_owned(),
            log_path,
            extra_args,
            _temp: None,
        }
    }

    pub fn query_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.query)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// `kill -9`, then a new process on the same data directory (new ports).
    pub fn kill9_and_restart(mut self) -> Server {
        self.child.kill().expect("kill -9");
        self.child.wait().unwrap();
        let mut restarted = Self::spawn(&self.data_dir, self.extra_args.clone());
        restarted._temp = self._temp.take();
        restarted
    }

    /// SIGTERM, and the exit status once the process stopped.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sightline did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new process on the same data directory, after [`Server::terminate`].
    pub fn restart(mut self) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut restarted = Self::spawn(&self.data_dir, self.extra_args.clone());
        restarted._temp = self._temp.take();
        restarted
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

fn unique_log_path(dir: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!("server-{n}.log"))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs `request` to the OTLP/HTTP `path` (`/v1/metrics`, ...) as protobuf; expects 200 and
/// returns the decoded answer.
pub async fn post_otlp<Answer: prost::Message + Default>(
    server: &Server,
    path: &str,
    request: &impl prost::Message,
) -> Answer {
    let response = reqwest::Client::new()
        .post(server.http_url(path))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {path}: {err}"));
    assert_eq!(response.status(), 200, "POST {path}");
    Answer::decode(response.bytes().await.unwrap()).unwrap()
}

/// POSTs `request` to the OTLP/HTTP `path` as OTLP/JSON; expects 200 and returns the JSON answer.
pub async fn post_otlp_json(server: &Server, path: &str, request: &Value) -> Value {
    let response = reqwest::Client::new()
        .post(server.http_url(path))
        .json(request)
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {path}: {err}"));
    assert_eq!(response.status(), 200, "POST {path}");
    response.json().await.unwrap()
}

/// The field `name` of a field list (`/api/v1/logs/fields`, `/api/v1/traces/attributes`).
pub fn field_named(fields: &Value, name: &str) -> Value {
    fields["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no field {name} in {fields}"))
}

/// GETs `url`, returning the status and the JSON body.
pub async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("GET {url}: not JSON ({err}): {text}"));
    (status, body)
}

/// GETs `path` on the query port with query-string `params`; the status and the JSON body.
pub async fn query_json(server: &Server, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(server.query_url(path))
        .query(params)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {path}: {err}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("GET {path}: not JSON ({err}): {text}"));
    (status, body)
}

/// Polls the Jaeger trace endpoint until the trace has `spans` spans; returns it and how long
/// that took. Panics after `within`.
pub async fn wait_for_trace(
    server: &Server,
    trace_id: &str,
    spans: usize,
    within: Duration,
) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let (status, body) = get_json(&server.query_url(&format!("/api/traces/{trace_id}"))).await;
        if status == 200 && body["data"][0]["spans"].as_array().map_or(0, Vec::len) == spans {
            return (body["data"][0].clone(), started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "trace {trace_id} did not have {spans} spans within {within:?}: last answer {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The server's `/metrics`, as Prometheus' text format.
pub async fn metrics_text(server: &Server) -> String {
    reqwest::get(server.query_url("/metrics"))
        .await
        .unwrap_or_else(|err| panic!("GET /metrics: {err}"))
        .text()
        .await
        .unwrap()
}

/// The value of a series in the server's `/metrics`, named as it is printed there
/// (`name` or `name{label="value"}`).
pub async fn metric(server: &Server, name: &str) -> f64 {
    let text = metrics_text(server).await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Lowercase hex, as the APIs spell ids.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
