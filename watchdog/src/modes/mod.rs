//! The mode handlers behind `/` and `/_/ready`, and the per-request log line they share.

pub mod fork;
pub mod http;
pub mod static_files;

use std::net::SocketAddr;
use std::sync::Arc;

use ::http::{Request, Response};
use tokio::time::Instant;

use crate::body::RespBody;
use crate::config::{Config, Mode};
use crate::format::human_size;
use crate::logs::{self, Field};
use crate::server::{App, ReqBody};

pub enum Handler {
    Fork(fork::Fork),
    Http(http::Proxy),
    Static(static_files::StaticFiles),
}

impl Handler {
    pub fn new(cfg: &Config) -> Handler {
        match cfg.mode {
            Mode::Http => Handler::Http(http::Proxy::new(cfg)),
            Mode::Static => Handler::Static(static_files::StaticFiles::new(cfg)),
            _ => Handler::Fork(fork::Fork::new(cfg)),
        }
    }

    pub async fn call(&self, app: &Arc<App>, req: Request<ReqBody>, peer: SocketAddr, start: Instant) -> Response<RespBody> {
        match self {
            Handler::Fork(f) => f.call(app, req, start).await,
            Handler::Http(p) => p.call(app, req, peer, start).await,
            Handler::Static(s) => s.call(req).await,
        }
    }

    /// `/_/ready` with `ready_path` set: asks the function.
    pub async fn ready(&self, app: &Arc<App>, req: Request<ReqBody>, path: &str) -> Response<RespBody> {
        match self {
            Handler::Fork(f) => f.ready(app, path).await,
            Handler::Http(p) => p.ready(req, path).await,
            Handler::Static(_) => crate::body::status_only(::http::StatusCode::OK),
        }
    }
}

/// What the per-request log line needs from the request (spec §12).
pub struct ReqLog {
    method: ::http::Method,
    target: String,
    call_id: Option<String>,
    start: Instant,
    quiet: bool,
}

impl ReqLog {
    pub fn new<B>(req: &Request<B>, start: Instant) -> ReqLog {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        ReqLog {
            method: req.method().clone(),
            target: req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string(),
            call_id: header("x-call-id").map(str::to_string),
            start,
            quiet: header("user-agent").is_some_and(|ua| ua.starts_with("kube-probe")),
        }
    }

    /// `status` is `200` (fork modes) or `201 Created` (http mode); `bytes` -1 when unknown.
    pub fn write(&self, cfg: &Config, code: u16, status: &str, bytes: i64, max_rss: Option<u64>) {
        if self.quiet {
            return;
        }
        let elapsed = self.start.elapsed();
        let secs = elapsed.as_secs_f64();
        let mut text = format!(
            "{} {} - {} - ContentLength: {} ({}.{:04}s)",
            self.method,
            self.target,
            status,
            human_size(bytes),
            elapsed.as_secs(),
            elapsed.subsec_micros() / 100
        );
        if let Some(rss) = max_rss {
            text.push_str(" - MaxRSS: ");
            text.push_str(&human_size(rss as i64));
        }
        if cfg.log_callid {
            text.push_str(&format!(" [{}]", self.call_id.as_deref().unwrap_or("none")));
        }
        let mut fields = vec![
            ("method", Field::Str(self.method.as_str())),
            ("uri", Field::Str(&self.target)),
            ("status", Field::Int(i64::from(code))),
            ("bytes", Field::Int(bytes)),
            ("duration_seconds", Field::Num(secs)),
        ];
        if let Some(rss) = max_rss {
            fields.push(("max_rss_bytes", Field::Int(rss as i64)));
        }
        if let Some(id) = &self.call_id {
            fields.push(("call_id", Field::Str(id)));
        }
        logs::request(&text, &fields);
    }
}
