//! static mode: files under `static_path` with `index.html`, `Range`, `If-Modified-Since`,
//! `Last-Modified` and a `Content-Type` from the extension; no listings and nothing outside the
//! root, however encoded or linked (spec §5.4).

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};

use crate::body::{self, error_response, RespBody};
use crate::config::Config;
use crate::logs;
use crate::modes::fork::percent_decode;
use crate::server::ReqBody;

pub struct StaticFiles {
    root: PathBuf,
}

impl StaticFiles {
    pub fn new(cfg: &Config) -> StaticFiles {
        logs::info(&format!("Serving files at: {}", cfg.static_path.display()));
        StaticFiles { root: cfg.static_path.clone() }
    }

    pub async fn call(&self, req: Request<ReqBody>) -> Response<RespBody> {
        let head = req.method() == Method::HEAD;
        if req.method() != Method::GET && !head {
            return error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: use GET or HEAD", None);
        }
        let raw = req.uri().path();
        if raw.ends_with("/index.html") {
            return redirect("./");
        }
        let Some(rel) = safe_relative(raw) else { return not_found() };
        let Ok(root) = tokio::fs::canonicalize(&self.root).await else { return not_found() };
        let Ok(mut path) = tokio::fs::canonicalize(root.join(&rel)).await else { return not_found() };
        if !path.starts_with(&root) {
            return not_found();
        }
        let Ok(mut meta) = tokio::fs::metadata(&path).await else { return not_found() };
        if meta.is_dir() {
            if !raw.ends_with('/') {
                let last = raw.rsplit('/').next().unwrap_or("");
                return redirect(&format!("{last}/"));
            }
            path = path.join("index.html");
            match tokio::fs::metadata(&path).await {
                Ok(m) if m.is_file() => meta = m,
                _ => return not_found(),
            }
        }
        if !meta.is_file() {
            return not_found();
        }
        serve_file(&path, meta, req.headers(), head).await
    }
}

/// The request path as a relative path, or None for `..` in any spelling or a NUL byte.
fn safe_relative(raw: &str) -> Option<PathBuf> {
    let decoded = percent_decode(raw);
    let decoded = String::from_utf8(decoded).ok()?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut rel = PathBuf::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return None,
            s => rel.push(s),
        }
    }
    Some(rel)
}

fn not_found() -> Response<RespBody> {
    error_response(StatusCode::NOT_FOUND, "404 page not found", None)
}

fn redirect(to: &str) -> Response<RespBody> {
    let mut resp = body::status_only(StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

async fn serve_file(path: &Path, meta: std::fs::Metadata, headers: &http::HeaderMap, head: bool) -> Response<RespBody> {
    let len = meta.len();
    let modified = meta.modified().ok();
    if let (Some(m), Some(since)) = (modified, headers.get(header::IF_MODIFIED_SINCE)) {
        let since = since.to_str().ok().and_then(|s| httpdate::parse_http_date(s).ok());
        if since.is_some_and(|s| truncate_secs(m) <= s) {
            return body::status_only(StatusCode::NOT_MODIFIED);
        }
    }
    let (status, start, count) = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => (StatusCode::OK, 0, len),
        Some(r) => match parse_range(r, len) {
            Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
            None => {
                let mut resp = error_response(StatusCode::RANGE_NOT_SATISFIABLE, "invalid range", None);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return resp;
            }
        },
    };
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(_) => return not_found(),
    };
    if start > 0 && file.seek(SeekFrom::Start(start)).await.is_err() {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file", None);
    }
    let body = if head { body::empty() } else { body::boxed(FileBody { file, remaining: count }) };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(m) = modified {
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(m)) {
            h.insert(header::LAST_MODIFIED, v);
        }
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{}", start, start + count - 1, len)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

fn truncate_secs(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

/// One `bytes=` range (first-last, first-, or -suffix) within `len`, inclusive bounds.
fn parse_range(v: &str, len: u64) -> Option<(u64, u64)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        return Some((len.saturating_sub(n), len - 1));
    }
    let start: u64 = a.parse().ok()?;
    if start >= len {
        return None;
    }
    let end = if b.is_empty() { len - 1 } else { b.parse::<u64>().ok()?.min(len - 1) };
    (start <= end).then_some((start, end))
}

fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "text/xml; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/vnd.microsoft.icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

/// `count` bytes of an open file, read in chunks.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = self.remaining.min(64 * 1024) as usize;
        let mut buf = vec![0u8; want];
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut self.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(std::io::ErrorKind::UnexpectedEof.into())));
                }
                buf.truncate(n);
                self.remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        assert_eq!(safe_relative("/a/b.txt"), Some(PathBuf::from("a/b.txt")));
        assert_eq!(safe_relative("/../x"), None);
        assert_eq!(safe_relative("/a/%2e%2e/%2E%2E/x"), None);
        assert_eq!(safe_relative("/a%2f..%2fx"), None);
        assert_eq!(safe_relative("/a%00"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-3", 10), Some((0, 3)));
        assert_eq!(parse_range("bytes=5-", 10), Some((5, 9)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 10), None);
    }
}
