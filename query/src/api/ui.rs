//! The web UI: the static files of `ui/`, embedded into the binary at compile time and served
//! under `/static/`; every other browser path (`/search`, `/trace/{id}`, `/dependencies`, ...)
//! answers `index.html`, whose script routes on the URL. So the links people share, Jaeger UI's
//! included, open the right view.
//!
//! With the `ui_dir` setting the files are read from that directory at each request instead, so a
//! change to the UI shows on reload without rebuilding the binary.

use std::borrow::Cow;
use std::path::{Component, Path as FsPath};

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

use super::{ApiError, AppState};

#[derive(RustEmbed)]
#[folder = "../ui/"]
struct Embedded;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/static/{*path}", get(asset))
        .fallback(page)
}

/// A file of the UI, by its path under `ui/`.
async fn asset(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    match load(&state, &path).await {
        Some(file) => file.respond(&path, &headers),
        None => ApiError::not_found(format!("no UI file {path:?}")).into_response(),
    }
}

/// Any other path: an API path that matched no route is a JSON 404; a browser path gets the UI's
/// single page.
async fn page(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path();
    let is_api = ["/api/", "/prometheus/"]
        .iter()
        .any(|prefix| path.starts_with(prefix));
    if is_api || (method != Method::GET && method != Method::HEAD) {
        return ApiError::not_found(format!("no endpoint {method} {path}")).into_response();
    }
    match load(&state, "index.html").await {
        Some(file) => file.respond("index.html", &headers),
        None => {
            ApiError::not_found("the UI is missing from this build (ui/index.html)").into_response()
        }
    }
}

struct File {
    bytes: Cow<'static, [u8]>,
    etag: String,
}

impl File {
    fn respond(self, path: &str, headers: &HeaderMap) -> Response {
        // Names are not content-hashed, so the browser revalidates each time; unchanged files
        // cost a 304.
        let etag = HeaderValue::from_str(&self.etag).expect("hex etag");
        let cache = (CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if headers.get(IF_NONE_MATCH) == Some(&etag) {
            return (StatusCode::NOT_MODIFIED, [(ETAG, etag), cache]).into_response();
        }
        let content_type = (CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
        (
            StatusCode::OK,
            [content_type, (ETAG, etag), cache],
            self.bytes,
        )
            .into_response()
    }
}

async fn load(state: &AppState, path: &str) -> Option<File> {
    match &state.ui_dir {
        None => Embedded::get(path).map(|file| File {
            etag: format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..12])),
            bytes: file.data,
        }),
        Some(dir) => {
            // Only plain relative paths: no `..`, no root.
            let relative = FsPath::new(path);
            if !relative
                .components()
                .all(|part| matches!(part, Component::Normal(_)))
            {
                return None;
            }
            let file = dir.join(relative);
            let bytes = tokio::task::spawn_blocking(move || std::fs::read(file))
                .await
                .ok()?
                .ok()?;
            let etag = format!("\"{:x}\"", fnv1a(&bytes));
            Some(File {
                bytes: Cow::Owned(bytes),
                etag,
            })
        }
    }
}

/// A cheap content hash for files read from disk (FNV-1a; only used as an ETag).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}
