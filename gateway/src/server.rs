//! The gateway's listeners: route table (404, then 405 with `Allow`, then auth, then the
//! handler: spec §3), `/healthz`, `/system/info`, the metrics listener, and the drain at
//! shutdown (§14).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use watchdog::body::{full, RespBody, TEXT_PLAIN};

use crate::auth::Credentials;
use crate::config::Config;
use crate::error::error;
use crate::local::Runtime;
use crate::metrics::Metrics;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct App {
    pub cfg: Config,
    /// `None` when `basic_auth` is off.
    pub credentials: Option<Credentials>,
    pub shutting_down: AtomicBool,
    pub metrics: Metrics,
    /// The embedded local runtime (`None` with an external provider).
    pub runtime: Option<Arc<Runtime>>,
    /// The external provider (`functions_provider_url`).
    pub external: Option<Arc<crate::external::External>>,
    /// Where a `queue-worker` reads functions' labels: the gateway at `gateway_url`.
    pub directory: Option<Arc<crate::external::External>>,
    /// The async queue (embedded unless NATS is configured).
    pub queue: Option<Arc<dyn crate::queue::Backend>>,
    /// Requests whose response is not completely written yet (drained at shutdown).
    in_flight: AtomicUsize,
    stop: tokio::sync::watch::Sender<bool>,
}

impl App {
    pub fn new(
        cfg: Config,
        credentials: Option<Credentials>,
        runtime: Option<Arc<Runtime>>,
        external: Option<Arc<crate::external::External>>,
        queue: Option<Arc<dyn crate::queue::Backend>>,
    ) -> App {
        App {
            queue,
            external,
            directory: None,
            cfg,
            credentials,
            shutting_down: AtomicBool::new(false),
            metrics: Metrics::new(),
            runtime,
            in_flight: AtomicUsize::new(0),
            stop: tokio::sync::watch::channel(false).0,
        }
    }

    /// Turns true when the gateway starts shutting down (ends log streams).
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

/// What a path is, and which methods it takes.
enum Route {
    Healthz,
    Info,
    Telemetry,
    /// A `/system` route of a later slice.
    System,
    /// `/function/…`: no auth.
    Invoke,
    /// `/async-function/…`: no auth.
    AsyncInvoke,
    /// `/system/async/dead-letters…`: the gateway's own queue, whatever the provider.
    DeadLetters,
    NoUi,
}

fn route(path: &str) -> Option<(Route, &'static [Method])> {
    use Method as M;
    const GET: &[Method] = &[M::GET];
    const CRUD: &[Method] = &[M::GET, M::POST, M::PUT, M::DELETE];
    let invoke = |prefix: &str| {
        path.strip_prefix(prefix).map(|rest| rest.split('/').next().unwrap_or("")).is_some_and(|name| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        })
    };
    Some(match path {
        "/healthz" => (Route::Healthz, GET),
        "/system/info" => (Route::Info, GET),
        "/system/telemetry" => (Route::Telemetry, GET),
        "/system/functions" => (Route::System, CRUD),
        "/system/alert" => (Route::System, &[M::POST]),
        "/system/secrets" => (Route::System, CRUD),
        "/system/logs" | "/system/namespaces" => (Route::System, GET),
        "/system/namespace/" => (Route::System, &[M::POST]),
        "/" => (Route::NoUi, &[]),
        p if p.starts_with("/ui/") => (Route::NoUi, &[]),
        p if p.starts_with("/system/function/") && p.len() > 17 && !p[17..].contains('/') => (Route::System, GET),
        p if p.starts_with("/system/scale-function/") && p.len() > 23 && !p[23..].contains('/') => {
            (Route::System, &[M::POST])
        }
        p if p.starts_with("/system/namespace/") && !p[18..].contains('/') => (Route::System, CRUD),
        p if p == "/system/async/dead-letters" || p.starts_with("/system/async/dead-letters/") => {
            (Route::DeadLetters, &[M::GET, M::POST, M::DELETE])
        }
        _ if invoke("/function/") => (Route::Invoke, &[M::GET, M::POST, M::PUT, M::PATCH, M::DELETE, M::OPTIONS, M::HEAD]),
        _ if invoke("/async-function/") => (Route::AsyncInvoke, &[M::POST]),
        _ => return None,
    })
}

/// Request headers larger than this get 431 (spec §4). hyper's buffer limit only catches heads
/// that arrive in several reads, so the size is also counted here.
const MAX_HEADER_BYTES: usize = 64 * 1024;

async fn handle(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<RespBody> {
    let head: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>() + req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if head > MAX_HEADER_BYTES {
        return error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &format!("request headers exceed {MAX_HEADER_BYTES} bytes"));
    }
    let Some((route, methods)) = route(req.uri().path()) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    if let Route::NoUi = route {
        return error(StatusCode::NOT_FOUND, "no UI is included");
    }
    if !methods.contains(req.method()) {
        let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, &format!("method {} not allowed", req.method()));
        let allow = methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
        if let Ok(v) = HeaderValue::from_str(&allow) {
            resp.headers_mut().insert(http::header::ALLOW, v);
        }
        return resp;
    }
    let needs_auth = matches!(route, Route::Info | Route::Telemetry | Route::System | Route::DeadLetters);
    if needs_auth {
        if let Some(creds) = &app.credentials {
            if !creds.check(req.headers().get(http::header::AUTHORIZATION)) {
                let mut resp = error(StatusCode::UNAUTHORIZED, "invalid credentials");
                resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Restricted\""));
                return resp;
            }
        }
    }
    match route {
        Route::Healthz => match &app.external {
            Some(ext) if !app.shutting_down.load(Ordering::Acquire) => crate::external::healthz(ext).await,
            _ => healthz(&app),
        },
        Route::Info => match &app.external {
            Some(ext) => json(info(Some(crate::external::info(ext).await))),
            None => json(info(None)),
        },
        Route::Telemetry => error(StatusCode::NOT_IMPLEMENTED, "not implemented"),
        Route::System => match &app.runtime {
            Some(rt) => match crate::api::system(&app, rt, req).await {
                Ok(resp) => resp,
                Err(e) => e.response(),
            },
            None => match &app.external {
                Some(ext) => match crate::external::system(&app, ext, req).await {
                    Ok(resp) => resp,
                    Err(e) => e.response(),
                },
                None => error(StatusCode::NOT_IMPLEMENTED, "no provider"),
            },
        },
        Route::Invoke => {
            let path = req.uri().path().to_string();
            let after = &path["/function/".len()..];
            let (name, rest) = after.split_at(after.find('/').unwrap_or(after.len()));
            crate::invoke::invoke(&app, req, peer, name, rest).await
        }
        Route::AsyncInvoke => {
            let path = req.uri().path().to_string();
            let after = &path["/async-function/".len()..];
            let (name, rest) = after.split_at(after.find('/').unwrap_or(after.len()));
            crate::async_invoke::enqueue(&app, req, name, rest).await
        }
        Route::DeadLetters => match crate::async_invoke::dead_letters(&app, req).await {
            Ok(resp) => resp,
            Err(e) => e.response(),
        },
        Route::NoUi => unreachable!("answered above"),
    }
}

fn healthz(app: &App) -> Response<RespBody> {
    if app.shutting_down.load(Ordering::Acquire) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let mut resp = Response::new(full("OK"));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, TEXT_PLAIN);
    resp
}

/// `uname -m` of the build target.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "arm" => "armv7l",
        other => other,
    }
}

/// GatewayInfo (spec §8.4) around the provider's info; `None` = the embedded local runtime.
fn info(provider: Option<serde_json::Value>) -> String {
    let version = serde_json::json!({"commit_message": "", "sha": watchdog::GIT_SHA, "release": VERSION});
    let provider = provider.unwrap_or_else(|| serde_json::json!({"provider": "local", "orchestration": "process", "version": version}));
    serde_json::json!({"provider": provider, "version": version, "arch": arch()}).to_string()
}

fn json(body: String) -> Response<RespBody> {
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// One request counted in `App::in_flight` for the drain at shutdown.
struct InFlight(Arc<App>);

impl InFlight {
    fn new(app: Arc<App>) -> InFlight {
        app.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(app)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts connections for `handler` until `stop` resolves.
async fn serve<F, Fut>(listener: TcpListener, app: Arc<App>, handler: F, stop: impl Future<Output = ()>)
where
    F: Fn(Arc<App>, Request<Incoming>, SocketAddr) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Response<RespBody>> + Send + 'static,
{
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (stream, peer) = stream;
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let read_timeout = app.cfg.read_timeout;
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move {
                    // Released when the response is written, or when the client goes away first.
                    let guard = InFlight::new(app.clone());
                    let resp = handler(app, req, peer).await;
                    let (parts, body) = resp.into_parts();
                    let body = watchdog::body::OnDone::new(body, move |_| drop(guard));
                    Ok::<_, Infallible>(Response::from_parts(parts, watchdog::body::boxed(body)))
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).max_buf_size(MAX_HEADER_BYTES + 16 * 1024);
            if !read_timeout.is_zero() {
                builder.header_read_timeout(read_timeout);
            }
            let _ = builder.serve_connection(TokioIo::new(stream), svc).with_upgrades().await;
        });
    }
}

async fn metrics_handle(app: Arc<App>, req: Request<Incoming>, _peer: SocketAddr) -> Response<RespBody> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => {
            let mut resp = Response::new(full("OK"));
            resp.headers_mut().insert(http::header::CONTENT_TYPE, TEXT_PLAIN);
            resp
        }
        (&Method::GET, "/metrics") => {
            if let Some(rt) = &app.runtime {
                for f in rt.functions() {
                    app.metrics.set_replicas(&f.key, u64::from(f.desired()));
                }
            }
            let mut resp = Response::new(full(app.metrics.encode()));
            resp.headers_mut()
                .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
            resp
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Serves the main and metrics listeners until `shutdown` resolves; then `/healthz` turns 503,
/// the listeners close, in-flight requests drain (at most `write_timeout`), log streams end and
/// the local replicas stop.
pub async fn run(listener: TcpListener, metrics: Option<TcpListener>, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    if let Some(m) = metrics {
        tokio::spawn(serve(m, app.clone(), metrics_handle, stopped(stop_rx.clone())));
    }
    if let Some(rt) = app.runtime.clone() {
        let every = app.cfg.scale_zero_check_interval.max(std::time::Duration::from_millis(100));
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => rt.scale_idle_to_zero(),
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }
    if let Some(ext) = app.external.clone() {
        tokio::spawn(crate::external::poll_service_count(app.clone(), ext, stop_rx.clone()));
    }
    let worker = match (&app.queue, app.cfg.async_workers) {
        (Some(q), true) => Some(tokio::spawn(crate::async_invoke::worker(app.clone(), q.clone(), stop_rx.clone()))),
        _ => None,
    };
    let main = tokio::spawn(serve(listener, app.clone(), handle, stopped(stop_rx)));
    shutdown.await;
    app.shutting_down.store(true, Ordering::Release);
    let _ = stop_tx.send(true);
    let _ = main.await;
    app.stop.send_replace(true);
    let limit = tokio::time::Instant::now() + app.cfg.write_timeout;
    while app.in_flight.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < limit {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Unfinished async records stay queued (replayed at the next start).
    if let Some(w) = worker {
        w.abort();
    }
    if let Some(rt) = &app.runtime {
        rt.shutdown().await;
    }
}

/// `gateway queue-worker`: the metrics listener and the async workers, until `shutdown`.
pub async fn run_worker(metrics: Option<TcpListener>, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(m) = metrics {
        let mut rx = stop_rx.clone();
        tokio::spawn(serve(m, app.clone(), metrics_handle, async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
    }
    let worker = app.queue.clone().map(|q| tokio::spawn(crate::async_invoke::worker(app.clone(), q, stop_rx)));
    shutdown.await;
    app.shutting_down.store(true, Ordering::Release);
    let _ = stop_tx.send(true);
    // Records being worked on stay unacknowledged: the broker hands them out again.
    if let Some(w) = worker {
        w.abort();
    }
}
