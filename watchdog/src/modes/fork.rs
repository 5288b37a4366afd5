//! Fork modes: a process per request over stdin/stdout. `streaming` relays output as it comes,
//! `serializing` buffers both ways, `classic` reproduces classic-watchdog (spec §5.1, §5.2, §5.5, §6).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::ReqLog;
use crate::body::{self, error_response, ChannelBody, RespBody, X_DURATION};
use crate::config::{Config, Mode};
use crate::format::{go_duration, json_str};
use crate::logs::{self, Stream};
use crate::process::{self, Exit, Group, Io};
use crate::server::{App, ReqBody};

/// Largest request body the buffering modes hold in memory.
pub const MAX_BUFFERED_BODY: usize = 128 * 1024 * 1024;

pub struct Fork {
    mode: Mode,
    program: String,
    args: Vec<String>,
    exec_timeout: Duration,
    content_type: Option<HeaderValue>,
    cgi_headers: bool,
    combine_output: bool,
    marshal_request: bool,
    write_debug: bool,
    debug_headers: bool,
}

/// What to do with the child's stderr in the buffering modes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StderrTo {
    /// Relayed to the watchdog's stderr line by line.
    Log,
    /// Kept, to be logged in one entry (classic, `combine_output=false`).
    Collect,
    /// Interleaved with stdout in one pipe (classic, `combine_output=true`).
    Stdout,
}

struct Finished {
    exit: Option<Exit>,
    timed_out: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Finished {
    fn max_rss(&self) -> Option<u64> {
        self.exit.and_then(|e| e.max_rss_bytes)
    }
    /// The failure text, or None on success.
    fn error(&self) -> Option<String> {
        match self.exit {
            Some(e) if e.success() => None,
            Some(e) => Some(e.describe()),
            None => Some("signal: killed".into()),
        }
    }
}

/// Kills the group if the request is abandoned (client gone) before it completes.
struct KillOnDrop(Option<Group>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(g) = self.0.take() {
            g.kill();
        }
    }
}

impl Fork {
    pub fn new(cfg: &Config) -> Fork {
        Fork {
            mode: cfg.mode,
            program: cfg.argv.first().cloned().unwrap_or_default(),
            args: cfg.argv.iter().skip(1).cloned().collect(),
            exec_timeout: cfg.exec_timeout,
            content_type: (!cfg.content_type.is_empty()).then(|| HeaderValue::from_str(&cfg.content_type).ok()).flatten(),
            cgi_headers: cfg.cgi_headers,
            combine_output: cfg.combine_output,
            marshal_request: cfg.marshal_request,
            write_debug: cfg.write_debug,
            debug_headers: cfg.debug_headers,
        }
    }

    fn deadline(&self, start: Instant) -> Option<Instant> {
        (!self.exec_timeout.is_zero()).then(|| start + self.exec_timeout)
    }

    fn content_type(&self) -> HeaderValue {
        self.content_type.clone().unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"))
    }

    fn start(&self, env: Vec<(OsString, OsString)>, stderr_to: StderrTo) -> Result<(process::Spawned, Option<pipe::Receiver>), String> {
        let mut cmd = process::Cmd {
            program: self.program.clone(),
            args: self.args.clone(),
            env,
            stdin: Io::Pipe,
            stdout: Io::Pipe,
            stderr: Io::Pipe,
            cwd: None,
            clear_env: false,
            bind_ro: None,
        };
        let mut combined = None;
        if stderr_to == StderrTo::Stdout {
            let (r, w, w2) = process::shared_pipe().map_err(|e| self.cannot_start(e))?;
            cmd.stdout = Io::Fd(w);
            cmd.stderr = Io::Fd(w2);
            combined = Some(r);
        }
        let spawned = process::spawn(cmd).map_err(|e| self.cannot_start(e))?;
        if stderr_to == StderrTo::Log {
            logs::info("Started logging: stderr from function.");
        }
        Ok((spawned, combined))
    }

    fn cannot_start(&self, e: std::io::Error) -> String {
        format!("cannot start {}: {}", self.program, e)
    }

    pub async fn call(&self, app: &Arc<App>, req: Request<ReqBody>, start: Instant) -> Response<RespBody> {
        match self.mode {
            Mode::Streaming => self.streaming(app, req, start).await,
            Mode::Classic => self.classic(app, req, start).await,
            _ => self.serializing(app, req, start).await,
        }
    }

    /// `/_/ready` with `ready_path`: a GET forked like a request, bypassing limits and metrics.
    pub async fn ready(&self, _app: &Arc<App>, path: &str) -> Response<RespBody> {
        let start = Instant::now();
        let req = Request::builder().method(Method::GET).uri(path).body(()).unwrap_or_default();
        let (parts, ()) = req.into_parts();
        let env = cgi_env(&parts, false);
        match self.run_buffered(env, Bytes::new(), StderrTo::Log, self.deadline(start)).await {
            Err(reason) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &reason, Some(start.elapsed())),
            Ok(done) => self.buffered_response(done, start),
        }
    }

    async fn streaming(&self, app: &Arc<App>, req: Request<ReqBody>, start: Instant) -> Response<RespBody> {
        let log = ReqLog::new(&req, start);
        let (parts, body) = req.into_parts();
        let (spawned, _) = match self.start(cgi_env(&parts, false), StderrTo::Log) {
            Ok(s) => s,
            Err(reason) => return self.fail(app, &log, StatusCode::INTERNAL_SERVER_ERROR, &reason, None, start),
        };
        let process::Spawned { group, stdin, stdout, stderr, exit } = spawned;
        let relay = stderr.map(|e| logs::relay(e, Stream::Stderr));
        tokio::spawn(feed(body, stdin));

        let (first_tx, first_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(8);
        let task = StreamTask {
            app: app.clone(),
            log,
            group,
            exit,
            stdout,
            relay,
            deadline: self.deadline(start),
            exec_timeout: self.exec_timeout,
            first: Some(first_tx),
            tx,
        };
        tokio::spawn(task.run());
        match first_rx.await {
            Ok(Ok(())) => {
                let mut resp = Response::new(body::boxed(ChannelBody::new(rx)));
                resp.headers_mut().insert(http::header::CONTENT_TYPE, self.content_type());
                resp
            }
            Ok(Err((status, reason))) => error_response(status, &reason, Some(start.elapsed())),
            Err(_) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "function output lost", Some(start.elapsed())),
        }
    }

    async fn serializing(&self, app: &Arc<App>, req: Request<ReqBody>, start: Instant) -> Response<RespBody> {
        let log = ReqLog::new(&req, start);
        let (parts, body) = req.into_parts();
        let input = match read_body(body).await {
            Ok(b) => b,
            Err((status, reason)) => return self.fail(app, &log, status, &reason, None, start),
        };
        let done = match self.run_buffered(cgi_env(&parts, false), input, StderrTo::Log, self.deadline(start)).await {
            Ok(d) => d,
            Err(reason) => return self.fail(app, &log, StatusCode::INTERNAL_SERVER_ERROR, &reason, None, start),
        };
        let max_rss = done.max_rss();
        let resp = self.buffered_response(done, start);
        let bytes = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0) as i64;
        log.write(&app.cfg, resp.status().as_u16(), resp.status().as_str(), bytes, max_rss);
        resp
    }

    /// The serializing-mode response for a finished process (body added by the caller).
    fn buffered_response(&self, done: Finished, start: Instant) -> Response<RespBody> {
        let elapsed = start.elapsed();
        if done.timed_out {
            return error_response(
                StatusCode::GATEWAY_TIMEOUT,
                &format!("exec_timeout exceeded after {}", go_duration(self.exec_timeout)),
                Some(elapsed),
            );
        }
        if let Some(err) = done.error() {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, &err, Some(elapsed));
        }
        let mut resp = Response::new(body::full(done.stdout));
        resp.headers_mut().insert(http::header::CONTENT_TYPE, self.content_type());
        resp.headers_mut().insert(X_DURATION, body::duration_value(elapsed));
        resp
    }

    async fn classic(&self, app: &Arc<App>, req: Request<ReqBody>, start: Instant) -> Response<RespBody> {
        let log = ReqLog::new(&req, start);
        if !matches!(*req.method(), Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
            log.write(&app.cfg, 405, "405", 0, None);
            return body::status_only(StatusCode::METHOD_NOT_ALLOWED);
        }
        logs::info("Forking fprocess.");
        let (parts, body) = req.into_parts();
        if self.debug_headers {
            print_headers("[in]", &parts.headers);
        }
        let raw = match read_body(body).await {
            Ok(b) => b,
            Err((status, reason)) => return self.fail(app, &log, status, &reason, None, start),
        };
        let input = if self.marshal_request { Bytes::from(marshal(&parts, &raw)) } else { raw };
        let env = if self.cgi_headers { cgi_env(&parts, true) } else { Vec::new() };
        let stderr_to = if self.combine_output { StderrTo::Stdout } else { StderrTo::Collect };
        let done = match self.run_buffered(env, input, stderr_to, self.deadline(start)).await {
            Ok(d) => d,
            Err(reason) => {
                log.write(&app.cfg, 500, "500", reason.len() as i64 + 1, None);
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, &reason, None);
            }
        };
        if !done.stderr.is_empty() {
            logs::info(&format!("stderr: {}", String::from_utf8_lossy(&done.stderr)));
        }
        let elapsed = start.elapsed();
        let resp = if done.timed_out {
            logs::info(&format!("Killing process: {}", command_line(&self.program, &self.args)));
            error_response(StatusCode::REQUEST_TIMEOUT, "Killed process.", None)
        } else if let Some(err) = done.error() {
            let mut text = format!("{err}\n").into_bytes();
            text.extend_from_slice(&done.stdout);
            let mut resp = error_response(StatusCode::INTERNAL_SERVER_ERROR, "", None);
            *resp.body_mut() = body::full(text);
            resp
        } else {
            if self.write_debug {
                logs::info(&format!("Success=true, Error=<nil>\nOut:{}", String::from_utf8_lossy(&done.stdout)));
                let _ = std::io::Write::write_all(&mut std::io::stdout(), &done.stdout);
            }
            let content_type = match (&self.content_type, parts.headers.get(http::header::CONTENT_TYPE)) {
                (Some(ct), _) => ct.clone(),
                (None, Some(ct)) => ct.clone(),
                (None, None) if std::str::from_utf8(&done.stdout).is_ok() => body::TEXT_PLAIN,
                (None, None) => HeaderValue::from_static("application/octet-stream"),
            };
            logs::info(&format!("Wrote {} Bytes - Duration: {:.6}s", done.stdout.len(), elapsed.as_secs_f64()));
            let mut resp = Response::new(body::full(done.stdout.clone()));
            resp.headers_mut().insert(http::header::CONTENT_TYPE, content_type);
            resp.headers_mut().insert(X_DURATION, body::duration_value(elapsed));
            resp
        };
        if self.debug_headers {
            print_headers("[out]", resp.headers());
        }
        let bytes = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0) as i64;
        log.write(&app.cfg, resp.status().as_u16(), resp.status().as_str(), bytes, done.max_rss());
        resp
    }

    /// An error before the function produced anything: the reason line plus the log line.
    fn fail(
        &self,
        app: &App,
        log: &ReqLog,
        status: StatusCode,
        reason: &str,
        max_rss: Option<u64>,
        start: Instant,
    ) -> Response<RespBody> {
        logs::error(reason);
        log.write(&app.cfg, status.as_u16(), status.as_str(), reason.len() as i64 + 1, max_rss);
        error_response(status, reason, Some(start.elapsed()))
    }

    /// Runs the function with `input` on stdin and collects its output, bounded by `deadline`.
    async fn run_buffered(
        &self,
        env: Vec<(OsString, OsString)>,
        input: Bytes,
        stderr_to: StderrTo,
        deadline: Option<Instant>,
    ) -> Result<Finished, String> {
        let (spawned, combined) = self.start(env, stderr_to)?;
        let process::Spawned { group, stdin, stdout, stderr, exit } = spawned;
        let guard = KillOnDrop(Some(group));
        if let Some(mut w) = stdin {
            tokio::spawn(async move {
                let _ = w.write_all(&input).await;
            });
        }
        let stdout = combined.or(stdout);
        let (relay, collect) = match (stderr_to, stderr) {
            (StderrTo::Log, Some(e)) => (Some(logs::relay(e, Stream::Stderr)), None),
            (StderrTo::Collect, Some(e)) => (None, Some(e)),
            _ => (None, None),
        };
        let mut exit = exit;
        let work = async {
            let (out, err) = tokio::join!(read_all(stdout), read_all(collect));
            let status = (&mut exit).await.ok();
            (out, err, status)
        };
        let sleep = sleep_opt(deadline);
        let mut done = tokio::select! {
            (stdout, stderr, exit) = work => Finished { exit, timed_out: false, stdout, stderr },
            _ = sleep => {
                if let Some(g) = &guard.0 { g.kill(); }
                let status = tokio::time::timeout(Duration::from_secs(1), &mut exit).await.ok().and_then(Result::ok);
                Finished { exit: status, timed_out: true, stdout: Vec::new(), stderr: Vec::new() }
            }
        };
        let mut guard = guard;
        let group = guard.0.take();
        if done.timed_out {
            done.stdout.clear();
        }
        if let Some(relay) = relay {
            let _ = tokio::time::timeout(Duration::from_secs(1), relay).await;
        }
        drop(group);
        Ok(done)
    }
}

fn command_line(program: &str, args: &[String]) -> String {
    std::iter::once(program).chain(args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
}

fn print_headers(dir: &str, headers: &http::HeaderMap) {
    let mut out = String::new();
    for (k, v) in headers {
        out.push_str(&format!("{dir} {}=[{}]\n", canonical(k.as_str()), String::from_utf8_lossy(v.as_bytes())));
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn read_all(pipe: Option<pipe::Receiver>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_end(&mut out).await;
    }
    out
}

/// Reads a whole request body for the buffering modes.
async fn read_body(body: ReqBody) -> Result<Bytes, (StatusCode, String)> {
    body::collect_limited(body, MAX_BUFFERED_BODY).await.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            (StatusCode::PAYLOAD_TOO_LARGE, format!("request body over {MAX_BUFFERED_BODY} bytes"))
        } else {
            (StatusCode::BAD_REQUEST, format!("cannot read request body: {e}"))
        }
    })
}

/// Streams the request body into the child's stdin, then closes it.
async fn feed(mut body: ReqBody, stdin: Option<pipe::Sender>) {
    let Some(mut stdin) = stdin else { return };
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return };
        if let Ok(data) = frame.into_data() {
            if stdin.write_all(&data).await.is_err() {
                return;
            }
        }
    }
}

type FirstResult = Result<(), (StatusCode, String)>;

/// Relays one streaming-mode child's stdout to the client and finishes the request.
struct StreamTask {
    app: Arc<App>,
    log: ReqLog,
    group: Group,
    exit: oneshot::Receiver<Exit>,
    stdout: Option<pipe::Receiver>,
    relay: Option<tokio::task::JoinHandle<()>>,
    deadline: Option<Instant>,
    exec_timeout: Duration,
    first: Option<oneshot::Sender<FirstResult>>,
    tx: mpsc::Sender<Bytes>,
}

enum End {
    Eof,
    TimedOut,
    ClientGone,
    FailedEarly,
}

impl StreamTask {
    fn start_response(&mut self, r: FirstResult) {
        if let Some(f) = self.first.take() {
            let _ = f.send(r);
        }
    }

    async fn run(mut self) {
        let mut stdout = self.stdout.take();
        let mut exited: Option<Exit> = None;
        let mut bytes: u64 = 0;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let sleep = sleep_opt(self.deadline);
        tokio::pin!(sleep);

        let end = loop {
            let Some(out) = stdout.as_mut() else { break End::Eof };
            if buf.capacity() < 4096 {
                buf.reserve(16 * 1024);
            }
            tokio::select! {
                r = out.read_buf(&mut buf) => match r {
                    Ok(0) | Err(_) => break End::Eof,
                    Ok(n) => {
                        bytes += n as u64;
                        let chunk = buf.split().freeze();
                        tokio::select! {
                            r = self.tx.send(chunk) => if r.is_err() { break End::ClientGone },
                            _ = &mut sleep => break End::TimedOut,
                        }
                        self.start_response(Ok(()));
                    }
                },
                e = &mut self.exit, if exited.is_none() => {
                    let e = e.unwrap_or(KILLED);
                    exited = Some(e);
                    if self.first.is_some() {
                        // Output written before the exit is already in the pipe: it counts.
                        match out.try_read_buf(&mut buf) {
                            Ok(n) if n > 0 => {
                                bytes += n as u64;
                                let _ = self.tx.try_send(buf.split().freeze());
                                self.start_response(Ok(()));
                            }
                            Ok(_) if e.success() => { self.start_response(Ok(())); break End::Eof }
                            _ if e.success() => self.start_response(Ok(())),
                            _ => break End::FailedEarly,
                        }
                    }
                },
                _ = &mut sleep => break End::TimedOut,
                _ = self.tx.closed() => break End::ClientGone,
            }
        };

        let mut timed_out = matches!(end, End::TimedOut);
        let mut error: Option<String> = None;
        match end {
            End::Eof if exited.is_none() => tokio::select! {
                e = &mut self.exit => exited = Some(e.unwrap_or(KILLED)),
                _ = &mut sleep => {
                    self.group.kill();
                    timed_out = true;
                }
                _ = self.tx.closed() => {
                    self.group.kill();
                    error = Some("client disconnected".into());
                }
            },
            End::Eof => {}
            End::TimedOut | End::FailedEarly => self.group.kill(),
            End::ClientGone => {
                self.group.kill();
                error = Some("client disconnected".into());
            }
        }
        if exited.is_none() {
            exited = tokio::time::timeout(Duration::from_secs(1), &mut self.exit).await.ok().and_then(Result::ok);
        }
        if timed_out {
            error = Some(self.timeout_text());
        } else if error.is_none() {
            error = exited.filter(|e| !e.success()).map(|e| e.describe());
        }
        let status = match (&self.first, &error) {
            (None, _) => StatusCode::OK,
            (Some(_), None) => {
                self.start_response(Ok(()));
                StatusCode::OK
            }
            (Some(_), Some(reason)) => {
                let status = if timed_out { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::INTERNAL_SERVER_ERROR };
                bytes = reason.len() as u64 + 1;
                let reason = reason.clone();
                self.start_response(Err((status, reason)));
                status
            }
        };
        drop(self.tx);
        if let Some(relay) = self.relay.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), relay).await;
        }
        if let Some(err) = &error {
            logs::error(err);
        }
        let max_rss = exited.and_then(|e| e.max_rss_bytes);
        self.log.write(&self.app.cfg, status.as_u16(), status.as_str(), bytes as i64, max_rss);
    }

    fn timeout_text(&self) -> String {
        format!("exec_timeout exceeded after {}", go_duration(self.exec_timeout))
    }
}

/// Stand-in when the reaper could not report an exit (the child was killed).
const KILLED: Exit = Exit::killed();

/// Go's canonical header form: `x-call-id` → `X-Call-Id`.
pub fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
        upper = c == '-';
    }
    out
}

fn env_pair(key: String, value: &[u8]) -> (OsString, OsString) {
    (OsString::from(key), OsString::from_vec(value.to_vec()))
}

/// The `Http_*` variables for a request (spec §6).
pub fn cgi_env(parts: &Parts, classic: bool) -> Vec<(OsString, OsString)> {
    use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
    let mut env = Vec::with_capacity(parts.headers.keys_len() + 6);
    for name in parts.headers.keys() {
        if name == HOST || name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        if let Some(v) = parts.headers.get(name) {
            env.push(env_pair(format!("Http_{}", canonical(name.as_str()).replace('-', "_")), v.as_bytes()));
        }
    }
    env.push(env_pair("Http_Method".into(), parts.method.as_str().as_bytes()));
    let chunked = parts
        .headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.to_ascii_lowercase().contains("chunked")));
    let length = parts.headers.get(CONTENT_LENGTH).map(|v| v.as_bytes().to_vec());
    if classic {
        let l = if chunked { b"-1".to_vec() } else { length.unwrap_or_else(|| b"0".to_vec()) };
        env.push(env_pair("Http_ContentLength".into(), &l));
        env.push(env_pair("Http_Content_Length".into(), &l));
    } else if let Some(l) = length {
        env.push(env_pair("Http_Content_Length".into(), &l));
    }
    if chunked {
        env.push(env_pair("Http_Transfer_Encoding".into(), b"chunked"));
    }
    let path = percent_decode(parts.uri.path());
    if !classic || !path.is_empty() {
        env.push(env_pair("Http_Path".into(), &path));
    }
    if let Some(q) = parts.uri.query().filter(|q| !q.is_empty()) {
        env.push(env_pair("Http_Query".into(), q.as_bytes()));
    }
    if classic {
        let host = parts.headers.get(HOST).map(|h| h.as_bytes()).or_else(|| parts.uri.host().map(str::as_bytes));
        if let Some(h) = host.filter(|h| !h.is_empty()) {
            env.push(env_pair("Http_Host".into(), h));
        }
    }
    env
}

/// Decodes `%XX` escapes; malformed ones are kept as they are.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// classic `marshal_request`: `{"header": {...}, "body": {"raw": "<base64>"}}`.
fn marshal(parts: &Parts, body: &[u8]) -> String {
    use base64::Engine;
    let mut out = String::from("{\"header\":{");
    for (i, name) in parts.headers.keys().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(&mut out, &canonical(name.as_str()));
        out.push_str(":[");
        for (j, v) in parts.headers.get_all(name).iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            json_str(&mut out, &String::from_utf8_lossy(v.as_bytes()));
        }
        out.push(']');
    }
    out.push_str("},\"body\":{\"raw\":\"");
    out.push_str(&base64::engine::general_purpose::STANDARD.encode(body));
    out.push_str("\"}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names() {
        assert_eq!(canonical("x-call-id"), "X-Call-Id");
        assert_eq!(canonical("CONTENT-TYPE"), "Content-Type");
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("/a/b%20c"), b"/a/b c");
        assert_eq!(percent_decode("/%zz%2"), b"/%zz%2");
        assert_eq!(percent_decode("%41"), b"A");
    }

    #[test]
    fn cgi_variables() {
        let req = Request::post("/a/b%20c?x=1")
            .header("x-custom-header", "v")
            .header("x-custom-header", "w")
            .header("host", "h")
            .header("content-length", "4")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let env: std::collections::HashMap<_, _> = cgi_env(&parts, false)
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect();
        assert_eq!(env["Http_X_Custom_Header"], "v");
        assert_eq!(env["Http_Path"], "/a/b c");
        assert_eq!(env["Http_Query"], "x=1");
        assert_eq!(env["Http_Method"], "POST");
        assert_eq!(env["Http_Content_Length"], "4");
        assert!(!env.contains_key("Http_Host"));
        assert!(!env.contains_key("Http_ContentLength"));
    }
}
