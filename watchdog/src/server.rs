//! The main listener: routing (`/_/health`, `/_/ready`, everything else to the mode), the
//! metrics → limit → handler chain for function requests, per-connection read/write timeouts,
//! and the graceful shutdown sequence (spec §7, §8, §10.3, §14).

use std::convert::Infallible;
use std::future::Future;
use std::task::Poll;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::body::{self, OnDone, RespBody, Timed};
use crate::config::{Config, Mode};
use crate::format::go_duration;
use crate::logs;
use crate::metrics::Metrics;
use crate::modes::Handler;
use crate::process;

/// The request body every handler gets: the client's body bounded by `read_timeout`.
pub type ReqBody = Timed<Incoming>;

/// Largest header section accepted (the spec asks for at least 64 KiB).
const MAX_HEADER_BYTES: usize = 96 * 1024;

/// State shared by every request.
pub struct App {
    pub cfg: Config,
    pub metrics: Arc<Metrics>,
    /// True once the function can take requests (http: the upstream accepts connections).
    pub ready: watch::Sender<bool>,
    pub shutting_down: AtomicBool,
    /// Requests to `/` in progress (limit and `/_/ready` 429).
    pub in_flight: AtomicUsize,
    pub handler: Handler,
    /// Relays of the long-lived function's output, flushed before exit.
    pub relays: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl App {
    pub fn new(cfg: Config, handler: Handler) -> Arc<App> {
        Arc::new(App {
            cfg,
            metrics: Arc::new(Metrics::new()),
            ready: watch::Sender::new(false),
            shutting_down: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            handler,
            relays: Default::default(),
        })
    }

    /// Accepting and, unless suppressed, the lock file present (checked on every call).
    fn healthy(&self) -> bool {
        *self.ready.borrow()
            && !self.shutting_down.load(Ordering::Acquire)
            && (self.cfg.suppress_lock || self.cfg.lock_path().exists())
    }

    pub fn write_lock_file(&self) -> Result<(), String> {
        if self.cfg.suppress_lock {
            return Ok(());
        }
        let path = self.cfg.lock_path();
        logs::info(&format!("Writing lock-file to: {}", path.display()));
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::create_dir_all(&self.cfg.tmpdir)?;
            std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o660).open(&path)?;
            Ok(())
        };
        write().map_err(|e| {
            format!("cannot write {}: {}. To disable the lock file set suppress_lock=true", path.display(), e)
        })
    }

    pub fn remove_lock_file(&self) {
        if !self.cfg.suppress_lock {
            let path = self.cfg.lock_path();
            logs::info(&format!("Removing lock-file : {}", path.display()));
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The write deadline of a connection's current request: the connection is dropped when a
/// response is still being written at `write_timeout` after its request headers.
///
/// Requests start and response bodies end inside the connection's own poll (hyper calls the
/// service and polls bodies from there), so the connection task re-reads this after every poll
/// and needs no wake-up of its own.
struct ConnDeadline {
    base: Instant,
    /// Nanoseconds after `base`; 0 = no response in progress.
    at: std::sync::atomic::AtomicU64,
}

impl ConnDeadline {
    fn new() -> Self {
        ConnDeadline { base: Instant::now(), at: std::sync::atomic::AtomicU64::new(0) }
    }
    fn set(&self, at: Option<Instant>) {
        let nanos = at.map_or(0, |t| (t.saturating_duration_since(self.base).as_nanos() as u64).max(1));
        self.at.store(nanos, Ordering::Relaxed);
    }
    fn get(&self) -> Option<Instant> {
        match self.at.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.base + Duration::from_nanos(n)),
        }
    }
}

/// Serves until the shutdown sequence completes. `signals` yields signal names (`SIGTERM`,
/// `SIGINT`): the first starts the sequence, a second one hurries it (spec §10.3).
pub async fn run(listener: TcpListener, app: Arc<App>, mut signals: mpsc::Receiver<&'static str>) {
    // Each connection holds a receiver: a send asks them to finish after their current
    // request; `closed()` resolves when the last one is gone.
    let (drain, _) = watch::channel(false);
    let connections = Arc::new(AtomicUsize::new(0));
    let accept = |stream: TcpStream, peer: SocketAddr| {
        let app = app.clone();
        let conn = serve_connection(stream, peer, app, drain.subscribe());
        let connections = connections.clone();
        connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            conn.await;
            connections.fetch_sub(1, Ordering::Relaxed);
        });
    };

    // Normal operation.
    let name = loop {
        tokio::select! {
            s = signals.recv() => break s.unwrap_or("SIGTERM"),
            r = listener.accept() => match r {
                Ok((stream, peer)) => accept(stream, peer),
                Err(e) => accept_error(e).await,
            },
        }
    };

    // Step 1: unhealthy at once, lock file removed; the listener stays open.
    let hc = app.cfg.healthcheck_interval;
    logs::info(&format!("{name}: no new connections in {}", go_duration(hc)));
    app.shutting_down.store(true, Ordering::Release);
    app.remove_lock_file();

    // Step 3: keep serving for healthcheck_interval.
    let mut hurry = false;
    let serve_until = tokio::time::sleep(hc);
    tokio::pin!(serve_until);
    loop {
        tokio::select! {
            _ = &mut serve_until => break,
            _ = signals.recv() => { hurry = true; break }
            r = listener.accept() => match r {
                Ok((stream, peer)) => accept(stream, peer),
                Err(e) => accept_error(e).await,
            },
        }
    }

    // Step 4: close the listener and drain, at most write_timeout.
    drop(listener);
    if !hurry {
        logs::info(&format!(
            "No new connections allowed, draining: {} requests",
            app.in_flight.load(Ordering::Relaxed)
        ));
        tokio::select! {
            _ = tokio::time::timeout(app.cfg.write_timeout, async {
                let _ = drain.send(true);
                drain.closed().await
            }) => {}
            _ = signals.recv() => {}
        }
    }

    // Step 5: only now the function processes are signalled.
    stop_children(app.cfg.child_grace_period).await;
    let relays = std::mem::take(&mut *app.relays.lock().unwrap_or_else(|e| e.into_inner()));
    for relay in relays {
        let _ = tokio::time::timeout(Duration::from_millis(500), relay).await;
    }
    logs::info(&format!("Exiting. Active connections: {}", connections.load(Ordering::Relaxed)));
}

/// SIGTERM to every function process group, SIGKILL to what remains after the grace period.
async fn stop_children(grace: Duration) {
    if process::signal_all(libc::SIGTERM) == 0 {
        return;
    }
    let until = Instant::now() + grace;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if process::direct_children().is_empty() {
            return;
        }
    }
    process::signal_all(libc::SIGKILL);
}

/// Accept errors (EMFILE and the like) must not spin the loop.
async fn accept_error(e: std::io::Error) {
    logs::error(&format!("accept: {e}"));
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    mut drain: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> {
    let _ = stream.set_nodelay(true);
    let deadline = Arc::new(ConnDeadline::new());
    let read_timeout = app.cfg.read_timeout;
    let svc = {
        let deadline = deadline.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            let deadline = deadline.clone();
            async move { Ok::<_, Infallible>(route(app, deadline, peer, req).await) }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).max_buf_size(MAX_HEADER_BYTES);
    if !read_timeout.is_zero() {
        builder.header_read_timeout(read_timeout);
    }
    let conn = builder.serve_connection(TokioIo::new(stream), svc).with_upgrades();
    async move {
        tokio::pin!(conn);
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        // A receiver held for the life of the connection: the drain waits for all of them.
        let _alive = drain.clone();
        let mut drain_signal = Box::pin(async move { drain.changed().await.is_ok() });
        let mut draining = false;
        std::future::poll_fn(|cx| {
            if !draining && drain_signal.as_mut().poll(cx).is_ready() {
                // Finish the current request, then close.
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            if conn.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            match deadline.get() {
                None => Poll::Pending,
                Some(at) => {
                    if timer.deadline() != at {
                        timer.as_mut().reset(at);
                    }
                    // Ready: write_timeout passed mid-response; the connection is dropped.
                    timer.as_mut().poll(cx)
                }
            }
        })
        .await
    }
}

async fn route(app: Arc<App>, deadline: Arc<ConnDeadline>, peer: SocketAddr, req: Request<Incoming>) -> Response<RespBody> {
    let start = Instant::now();
    deadline.set(Some(start + app.cfg.write_timeout));
    let read_deadline = (!app.cfg.read_timeout.is_zero()).then(|| start + app.cfg.read_timeout);
    let req = req.map(|b| Timed::new(b, read_deadline, "read_timeout exceeded while reading the request body"));

    let path = req.uri().path();
    let classic = app.cfg.mode == Mode::Classic;
    let resp = if path == "/_/health" {
        health(&app, req.method())
    } else if path == "/_/ready" && !classic {
        ready(&app, req).await
    } else {
        return function_request(app, deadline, peer, start, req).await;
    };
    let d = deadline.clone();
    resp.map(move |b| body::boxed(OnDone::new(b, move |_| d.set(None))))
}

fn health(app: &App, method: &Method) -> Response<RespBody> {
    if method != Method::GET {
        return body::status_only(StatusCode::METHOD_NOT_ALLOWED);
    }
    if !app.healthy() {
        return body::status_only(StatusCode::SERVICE_UNAVAILABLE);
    }
    let mut resp = Response::new(body::full("OK"));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, body::TEXT_PLAIN);
    resp
}

async fn ready(app: &Arc<App>, req: Request<ReqBody>) -> Response<RespBody> {
    if req.method() != Method::GET {
        return body::status_only(StatusCode::METHOD_NOT_ALLOWED);
    }
    if !app.healthy() {
        return body::status_only(StatusCode::SERVICE_UNAVAILABLE);
    }
    let max = app.cfg.max_inflight;
    if max > 0 && app.in_flight.load(Ordering::Acquire) >= max {
        return body::status_only(StatusCode::TOO_MANY_REQUESTS);
    }
    match &app.cfg.ready_path {
        Some(path) => app.handler.ready(app, req, path).await,
        None => body::status_only(StatusCode::OK),
    }
}

/// Counts a function request in metrics and the limiter until its response body is done.
struct InFlight {
    app: Arc<App>,
    limited: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.app.metrics.in_flight.dec();
        if self.limited {
            self.app.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// metrics → concurrency limit → mode handler (spec §14).
async fn function_request(
    app: Arc<App>,
    deadline: Arc<ConnDeadline>,
    peer: SocketAddr,
    start: Instant,
    req: Request<ReqBody>,
) -> Response<RespBody> {
    let method = req.method().clone();
    app.metrics.in_flight.inc();
    let mut guard = InFlight { app: app.clone(), limited: false };

    let max = app.cfg.max_inflight;
    let now = app.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
    let resp = if max > 0 && now > max {
        app.in_flight.fetch_sub(1, Ordering::AcqRel);
        limit_exceeded(max)
    } else {
        guard.limited = true;
        app.handler.call(&app, req, peer, start).await
    };

    let code = resp.status();
    let metrics = app.metrics.clone();
    resp.map(move |b| {
        body::boxed(OnDone::new(b, move |_| {
            metrics.observe(&method, code, start.elapsed().as_secs_f64());
            deadline.set(None);
            drop(guard);
        }))
    })
}

fn limit_exceeded(max: usize) -> Response<RespBody> {
    let mut resp = Response::new(body::full(format!("Concurrent request limit exceeded. Max concurrent requests: {max}\n")));
    *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert("x-openfaas-internal", HeaderValue::from_static("faas-middleware"));
    resp
}
