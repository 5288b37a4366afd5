//! http mode: one long-lived function process, started and waited for until it accepts
//! connections, with requests reverse-proxied to it; SSE, NDJSON and WebSocket bypass the
//! exec deadline (spec §5.3).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::{Either, Full};
use tokio::time::Instant;

use super::ReqLog;
use crate::body::{self, error_response, OnDone, RespBody, Timed, X_DURATION};
use crate::config::{Config, Upstream};
use crate::format::{go_duration, parse_duration};
use crate::logs::{self, Stream};
use crate::process;
use crate::server::{App, ReqBody};
use crate::upstream::{append_forwarded_for, is_bypass, is_websocket, strip_hop_by_hop, Pool};

type UpBody = Either<ReqBody, Full<Bytes>>;

pub struct Proxy {
    pool: Arc<Pool<UpBody>>,
    upstream: Upstream,
    /// `<resolved ip>:<port>`, set once the upstream accepts connections.
    authority: OnceLock<http::uri::Authority>,
    exec_timeout: Duration,
    startup_timeout: Duration,
    buffer: bool,
}

impl Proxy {
    pub fn new(cfg: &Config) -> Proxy {
        let connect_timeout = (!cfg.exec_timeout.is_zero()).then_some(cfg.exec_timeout);
        Proxy {
            pool: Pool::new(connect_timeout),
            upstream: cfg.upstream.clone().expect("config checks http mode has an upstream"),
            authority: OnceLock::new(),
            exec_timeout: cfg.exec_timeout,
            startup_timeout: cfg.startup_timeout,
            buffer: cfg.buffer_req_body,
        }
    }

    /// The upstream URL for a request target: `upstream_url`'s path is a prefix.
    fn url(&self, target: &http::uri::PathAndQuery) -> Result<Uri, String> {
        let authority = self.authority.get().ok_or("upstream not resolved")?.clone();
        let path_and_query = if self.upstream.prefix.is_empty() {
            target.clone()
        } else {
            format!("{}{}", self.upstream.prefix, target).parse().map_err(|e| format!("bad upstream URL: {e}"))?
        };
        Uri::builder()
            .scheme(http::uri::Scheme::HTTP)
            .authority(authority)
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| format!("bad upstream URL: {e}"))
    }

    /// The request to send upstream: same method and target, hop-by-hop headers removed, the
    /// body streamed (chunked, as upstream does) unless it is empty.
    fn upstream_request(&self, req: Request<ReqBody>) -> Result<Request<UpBody>, String> {
        let root = http::uri::PathAndQuery::from_static("/");
        let uri = self.url(req.uri().path_and_query().unwrap_or(&root))?;
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        headers.remove(header::CONTENT_LENGTH);
        let body = if body.is_end_stream() { Either::Right(Full::default()) } else { Either::Left(body) };
        let mut up = Request::new(body);
        *up.method_mut() = parts.method;
        *up.uri_mut() = uri;
        *up.headers_mut() = headers;
        Ok(up)
    }

    pub async fn call(&self, app: &Arc<App>, req: Request<ReqBody>, peer: SocketAddr, start: Instant) -> Response<RespBody> {
        let log = ReqLog::new(&req, start);
        if !*app.ready.borrow() {
            let bound = if self.exec_timeout.is_zero() { self.startup_timeout } else { self.exec_timeout };
            let mut rx = app.ready.subscribe();
            let waited = async { rx.wait_for(|r| *r).await.is_ok() };
            let ok = if bound.is_zero() { waited.await } else { tokio::time::timeout(bound, waited).await.unwrap_or(false) };
            if !ok {
                let reason = format!("upstream not ready after {}", go_duration(bound));
                return fail(app, &log, StatusCode::SERVICE_UNAVAILABLE, &reason, start);
            }
        }
        if is_bypass(req.headers()) {
            return self.bypass(app, req, peer, log, start).await;
        }

        let mut limit = self.exec_timeout;
        if !limit.is_zero() {
            if let Some(x) = req.headers().get("x-timeout").and_then(|v| v.to_str().ok()).and_then(parse_duration) {
                limit = limit.min(x);
            }
        }
        let deadline = (!limit.is_zero()).then(|| start + limit);

        let mut up = match self.upstream_request(req) {
            Ok(u) => u,
            Err(e) => return fail(app, &log, StatusCode::BAD_GATEWAY, &e, start),
        };
        if self.buffer {
            if let Either::Left(streamed) = std::mem::replace(up.body_mut(), Either::Right(Full::default())) {
                match body::collect_limited(streamed, super::fork::MAX_BUFFERED_BODY).await {
                    Ok(b) => {
                        up.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
                        *up.body_mut() = Either::Right(Full::new(b));
                    }
                    Err(e) => {
                        let reason = format!("cannot read request body: {e}");
                        return fail(app, &log, StatusCode::BAD_REQUEST, &reason, start);
                    }
                }
            }
        }
        let sent = self.pool.request(up);
        let result = match deadline {
            Some(d) => match tokio::time::timeout_at(d, sent).await {
                Ok(r) => r,
                Err(_) => {
                    let reason = format!("exec_timeout exceeded after {}", go_duration(limit));
                    return fail(app, &log, StatusCode::GATEWAY_TIMEOUT, &reason, start);
                }
            },
            None => sent.await,
        };
        let (resp, lease) = match result {
            Ok(r) => r,
            Err(e) => return fail(app, &log, StatusCode::BAD_GATEWAY, &e, start),
        };
        let elapsed = start.elapsed();
        let (mut parts, incoming) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.insert(X_DURATION, body::duration_value(elapsed));
        let length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(-1);
        log.write(&app.cfg, parts.status.as_u16(), &status_text(parts.status), length, None);
        let body = Timed::new(incoming, deadline, "exec_timeout exceeded while copying the response");
        Response::from_parts(parts, body::boxed(OnDone::new(body, move |_| lease.release())))
    }

    /// SSE, NDJSON and WebSocket: no exec deadline, `X-Forwarded-For`, every chunk flushed.
    async fn bypass(
        &self,
        app: &Arc<App>,
        mut req: Request<ReqBody>,
        peer: SocketAddr,
        log: ReqLog,
        start: Instant,
    ) -> Response<RespBody> {
        let websocket = is_websocket(req.headers());
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
        let upgrade = req.headers().get(header::UPGRADE).cloned();
        let mut up = match self.upstream_request(req) {
            Ok(u) => u,
            Err(e) => return fail(app, &log, StatusCode::BAD_GATEWAY, &e, start),
        };
        if let (true, Some(u)) = (websocket, upgrade) {
            up.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            up.headers_mut().insert(header::UPGRADE, u);
        }
        append_forwarded_for(up.headers_mut(), peer.ip());
        let (mut resp, lease) = match self.pool.request(up).await {
            Ok(r) => r,
            Err(e) => return fail(app, &log, StatusCode::BAD_GATEWAY, &e, start),
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                crate::upstream::tunnel(client_upgrade, &mut resp, || ());
                log.write(&app.cfg, 101, &status_text(StatusCode::SWITCHING_PROTOCOLS), 0, None);
                let (parts, _) = resp.into_parts();
                return Response::from_parts(parts, body::empty());
            }
        }
        let (mut parts, incoming) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let app = app.clone();
        let code = parts.status;
        let body = OnDone::new(incoming, move |bytes| {
            log.write(&app.cfg, code.as_u16(), &status_text(code), bytes as i64, None);
            lease.release();
        });
        Response::from_parts(parts, body::boxed(body))
    }

    /// `/_/ready` with `ready_path`: the upstream's answer, as it is.
    pub async fn ready(&self, req: Request<ReqBody>, path: &str) -> Response<RespBody> {
        let uri = match path.parse().map_err(|_| String::new()).and_then(|p| self.url(&p)) {
            Ok(u) => u,
            Err(_) => return body::status_only(StatusCode::SERVICE_UNAVAILABLE),
        };
        let (parts, _) = req.into_parts();
        let mut up = Request::new(Either::Right(Full::new(Bytes::new())));
        *up.uri_mut() = uri;
        *up.headers_mut() = parts.headers;
        strip_hop_by_hop(up.headers_mut());
        let fut = self.pool.request(up);
        let res = if self.exec_timeout.is_zero() {
            fut.await
        } else {
            match tokio::time::timeout(self.exec_timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err("ready_path timed out".into()),
            }
        };
        match res {
            Ok((resp, lease)) => resp.map(|b| body::boxed(OnDone::new(b, move |_| lease.release()))),
            Err(reason) => error_response(StatusCode::SERVICE_UNAVAILABLE, &reason, None),
        }
    }
}

fn fail(app: &App, log: &ReqLog, status: StatusCode, reason: &str, start: Instant) -> Response<RespBody> {
    logs::error(reason);
    log.write(&app.cfg, status.as_u16(), &status_text(status), reason.len() as i64 + 1, None);
    error_response(status, reason, Some(start.elapsed()))
}

fn status_text(s: StatusCode) -> String {
    let mut out = String::with_capacity(24);
    out.push_str(s.as_str());
    if let Some(r) = s.canonical_reason() {
        out.push(' ');
        out.push_str(r);
    }
    out
}

/// Candidate addresses for the upstream host: `localhost` without the C resolver, IP
/// literals as they are, other names through the system resolver.
async fn resolve(host: &str, port: u16) -> Vec<SocketAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ];
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    tokio::net::lookup_host((host, port)).await.map(|a| a.collect()).unwrap_or_default()
}

async fn try_connect(host: &str, port: u16) -> Option<SocketAddr> {
    for addr in resolve(host, port).await {
        let attempt = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await;
        if let Ok(Ok(_)) = attempt {
            return Some(addr);
        }
    }
    None
}

fn die(msg: &str) -> ! {
    logs::error(msg);
    std::process::exit(1);
}

/// Forks the function, waits until its upstream accepts connections, then writes the lock file
/// and marks the watchdog ready. Exits the watchdog when the function fails (spec §5.3).
pub async fn start_function(app: Arc<App>) {
    let crate::modes::Handler::Http(proxy) = &app.handler else { return };
    let cfg = &app.cfg;
    let program = &cfg.argv[0];
    logs::info(&format!("Forking: {}, arguments: [{}]", program, cfg.argv[1..].join(" ")));
    let cmd = process::Cmd {
        program: program.clone(),
        args: cfg.argv[1..].to_vec(),
        env: Vec::new(),
        stdin: process::Io::Null,
        stdout: process::Io::Pipe,
        stderr: process::Io::Pipe,
        cwd: None,
        clear_env: false,
        bind_ro: None,
    };
    let spawned = match process::spawn(cmd) {
        Ok(s) => s,
        Err(e) => die(&format!("cannot start {program}: {e}")),
    };
    logs::info("Started logging: stderr from function.");
    logs::info("Started logging: stdout from function.");
    {
        let mut relays = app.relays.lock().unwrap_or_else(|e| e.into_inner());
        relays.extend(spawned.stderr.map(|e| logs::relay(e, Stream::Stderr)));
        relays.extend(spawned.stdout.map(|o| logs::relay(o, Stream::Stdout)));
    }
    let group = spawned.group;
    let (exited_tx, mut exited_rx) = tokio::sync::watch::channel(false);
    {
        let app = app.clone();
        let exit = spawned.exit;
        tokio::spawn(async move {
            let Ok(status) = exit.await else { return };
            if app.shutting_down.load(Ordering::Acquire) {
                return;
            }
            logs::info(&format!("Forked function has terminated: {}", status.describe()));
            if !status.success() {
                app.remove_lock_file();
                std::process::exit(1);
            }
            let _ = exited_tx.send(true);
            // Exit 0: a server it started in the background keeps serving; stay up (adopted
            // as subreaper) and keep its group on the list signalled at shutdown.
            std::mem::forget(group);
        });
    }

    let up = &proxy.upstream;
    let started = Instant::now();
    let mut last_note = Instant::now();
    let addr = loop {
        if let Some(addr) = try_connect(&up.host, up.port).await {
            break addr;
        }
        if !cfg.startup_timeout.is_zero() && started.elapsed() >= cfg.startup_timeout {
            die(&format!("upstream {} did not accept connections within {}", up.url, go_duration(cfg.startup_timeout)));
        }
        if last_note.elapsed() >= Duration::from_secs(5) {
            logs::info(&format!("Waiting for upstream {}", up.url));
            last_note = Instant::now();
        }
        tokio::select! {
            // Most servers listen within milliseconds: poll fast at first (scale from zero
            // waits on this), then every 50 ms.
            _ = tokio::time::sleep(Duration::from_millis(if started.elapsed() < Duration::from_secs(1) { 5 } else { 50 })) => {}
            _ = exited_rx.changed() => {}
        }
    };
    let host = match addr.ip() {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    match format!("{}:{}", host, addr.port()).parse() {
        Ok(a) => {
            let _ = proxy.authority.set(a);
        }
        Err(e) => die(&format!("bad upstream address {addr}: {e}")),
    }
    if let Err(e) = app.write_lock_file() {
        die(&e);
    }
    tokio::spawn(proxy.pool.clone().sweep());
    app.ready.send_replace(true);
}
