//! `/async-function/{name}[/path]` (spec §11): checked, stored durably, then 202; workers invoke
//! through the synchronous path, retry with backoff, call back, and keep dead letters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use watchdog::body::{self, RespBody};

use crate::api::{self, param, query};
use crate::error::ApiError;
use crate::invoke::{self, strip_hop_headers, CallHeaders};
use crate::model::split_name;
use crate::queue::{backoff, dead_letter_json, unix_nanos, Backend, Meta, Outcome, Record, Taken};
use crate::server::App;

pub const LABEL_MAX_INFLIGHT: &str = "com.openfaas.async.max_inflight";

/// The function a route names, if it exists: (name, namespace, labels).
async fn resolve(app: &App, name: &str, ns: &str) -> Result<(String, String, std::collections::BTreeMap<String, String>), ApiError> {
    if let Some(rt) = &app.runtime {
        let f = rt.lookup(name, ns).ok_or_else(|| ApiError::function_not_found(name, ns))?;
        let labels = rt.deployment(name, ns).map(|d| d.spec.labels).unwrap_or_default();
        return Ok((f.name.clone(), f.namespace.clone(), labels));
    }
    if let Some(ext) = &app.external {
        let st = ext.status(name, ns).await?;
        return Ok((name.to_string(), ns.to_string(), st.spec.labels));
    }
    Err(ApiError::NotImplemented("no provider".into()))
}

fn check_callback(v: &HeaderValue) -> Result<String, ApiError> {
    let bad = |why: &str| ApiError::BadRequest(format!("invalid X-Callback-Url: {why}"));
    let s = v.to_str().map_err(|_| bad("not text"))?.trim();
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let uri: Uri = s.parse().map_err(|_| bad("not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("must be an absolute http or https URL"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(s.to_string())
}

/// §11.1, in order: function, callback URL, body limit, ids, durable store, 202.
pub async fn enqueue(app: &Arc<App>, req: Request<Incoming>, full: &str, rest: &str) -> Response<RespBody> {
    match enqueue_inner(app, req, full, rest).await {
        Ok(r) => r,
        Err(e) => e.response(),
    }
}

async fn enqueue_inner(app: &Arc<App>, req: Request<Incoming>, full: &str, rest: &str) -> Result<Response<RespBody>, ApiError> {
    let Some(queue) = app.queue.clone() else { return Err(ApiError::NotImplemented("no async queue".into())) };
    let (name, ns) = split_name(full, &app.cfg.function_namespace);
    if name.is_empty() {
        return Err(ApiError::BadRequest(format!("invalid function name {full:?}: the name is empty")));
    }
    let (name, ns, _) = resolve(app, name, ns).await?;
    let callback_url = req.headers().get("x-callback-url").map(check_callback).transpose()?;
    let limit = queue.max_body().map_or(app.cfg.async_max_body_bytes, |m| m.min(app.cfg.async_max_body_bytes));
    let ids = CallHeaders::from_request(req.headers());
    let (parts, incoming) = req.into_parts();
    let body = match body::collect_limited(incoming, limit).await {
        Ok(b) => b,
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::TooLarge(format!("request body exceeds async limit of {limit} bytes")))
        }
        Err(e) => return Err(ApiError::BadRequest(format!("cannot read request body: {e}"))),
    };
    let mut headers = parts.headers;
    strip_hop_headers(&mut headers);
    for h in [header::HOST, header::CONTENT_LENGTH] {
        headers.remove(h);
    }
    headers.remove("x-callback-url");
    let meta = Meta {
        call_id: ids.call_id.to_str().unwrap_or_default().to_string(),
        function: name.clone(),
        namespace: ns.clone(),
        method: parts.method.to_string(),
        path: rest.to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: header_pairs(&headers),
        callback_url,
        traceparent: ids.traceparent.to_str().unwrap_or_default().to_string(),
        enqueued_at: unix_nanos(SystemTime::now()),
        ..Meta::default()
    };
    queue.push(Record { meta, body }).await.map_err(|e| {
        let reason = format!("cannot queue request: {e}");
        if e.unavailable {
            ApiError::Unavailable(reason)
        } else {
            ApiError::Internal(reason)
        }
    })?;
    app.metrics.async_accepted(&format!("{name}.{ns}"));
    let mut resp = body::status_only(StatusCode::ACCEPTED);
    ids.apply_response(resp.headers_mut());
    Ok(resp)
}

/// Runs queued calls until `stop` turns true: at most `async_max_inflight` at once, and per
/// function at most its `com.openfaas.async.max_inflight` label.
pub async fn worker(app: Arc<App>, queue: Arc<dyn Backend>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let running = Arc::new(AtomicUsize::new(0));
    let per_fn: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let freed = Arc::new(tokio::sync::Notify::new());
    let max = app.cfg.async_max_inflight.max(1);
    let caps = Caps::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let free = max.saturating_sub(running.load(Ordering::Acquire));
        let mut got = Vec::new();
        // Functions whose label is not known yet: their records wait for one lookup.
        let unknown: Mutex<Vec<(String, String)>> = Mutex::default();
        if free > 0 {
            let counts = per_fn.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let admitted: Mutex<HashMap<String, usize>> = Mutex::new(HashMap::new());
            let admit = |m: &Meta| {
                let key = format!("{}.{}", m.function, m.namespace);
                let Some(cap) = caps.get(&app, &m.function, &m.namespace) else {
                    unknown.lock().unwrap_or_else(|e| e.into_inner()).push((m.function.clone(), m.namespace.clone()));
                    return false;
                };
                let mut adm = admitted.lock().unwrap_or_else(|e| e.into_inner());
                let n = counts.get(&key).copied().unwrap_or(0) + adm.get(&key).copied().unwrap_or(0);
                if cap.is_some_and(|c| n >= c) {
                    return false;
                }
                *adm.entry(key).or_default() += 1;
                true
            };
            match queue.take(free, &admit).await {
                Ok(t) => got = t,
                Err(e) => watchdog::logs::error(&format!("async queue: {e}")),
            }
        }
        let unknown = unknown.into_inner().unwrap_or_else(|e| e.into_inner());
        for (name, ns) in &unknown {
            caps.fetch(&app, name, ns).await;
        }
        app.metrics.set_async_depth(queue.depth());
        if got.is_empty() {
            if !unknown.is_empty() {
                continue;
            }
            tokio::select! {
                _ = queue.wait() => {}
                _ = freed.notified() => {}
                _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
            }
            continue;
        }
        for t in got {
            let key = t.record.key();
            running.fetch_add(1, Ordering::AcqRel);
            *per_fn.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default() += 1;
            app.metrics.set_async_inflight(running.load(Ordering::Acquire) as u64);
            let (app, queue, running, per_fn, freed) = (app.clone(), queue.clone(), running.clone(), per_fn.clone(), freed.clone());
            tokio::spawn(async move {
                process(&app, &*queue, t).await;
                running.fetch_sub(1, Ordering::AcqRel);
                if let Some(n) = per_fn.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&key) {
                    *n = n.saturating_sub(1);
                }
                app.metrics.set_async_inflight(running.load(Ordering::Acquire) as u64);
                freed.notify_one();
            });
        }
    }
}

/// Each function's `com.openfaas.async.max_inflight`: read at once from the local runtime;
/// from a provider, or through `gateway_url` for a `queue-worker`, looked up and kept 5 s.
#[derive(Default)]
struct Caps(Mutex<HashMap<(String, String), CapAt>>);

/// A limit (`None`: none) and when it was read.
type CapAt = (Instant, Option<usize>);

const CAPS_FOR: Duration = Duration::from_secs(5);

fn parse_cap(labels: &std::collections::BTreeMap<String, String>) -> Option<usize> {
    labels.get(LABEL_MAX_INFLIGHT)?.trim().parse::<usize>().ok().filter(|n| *n > 0)
}

impl Caps {
    /// `Some(cap)` when known (`cap` `None`: no limit); `None` when it must be looked up first.
    fn get(&self, app: &App, name: &str, ns: &str) -> Option<Option<usize>> {
        if let Some(rt) = &app.runtime {
            return Some(rt.deployment(name, ns).and_then(|d| parse_cap(&d.spec.labels)));
        }
        if app.external.is_none() && app.directory.is_none() {
            return Some(None);
        }
        let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(&(name.to_string(), ns.to_string())).filter(|(at, _)| at.elapsed() < CAPS_FOR).map(|(_, c)| *c)
    }

    /// A failed lookup means no limit for a while: the call itself then answers or retries.
    async fn fetch(&self, app: &App, name: &str, ns: &str) {
        let Some(ext) = app.external.as_ref().or(app.directory.as_ref()) else { return };
        let cap = match ext.status(name, ns).await {
            Ok(st) => parse_cap(&st.spec.labels),
            Err(e) => {
                watchdog::logs::warn(&format!("async: cannot read the labels of {name}.{ns}: {e}"));
                None
            }
        };
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert((name.to_string(), ns.to_string()), (Instant::now(), cap));
    }
}

const RETRYABLE: [u16; 4] = [429, 502, 503, 504];

/// One attempt of a record, then its retry, callback, dead letter or acknowledgement.
async fn process(app: &Arc<App>, queue: &dyn Backend, t: Taken) {
    let mut rec = t.record.clone();
    if rec.meta.result.is_some() {
        return callback_again(app, queue, t, rec).await;
    }
    rec.meta.attempts += 1;
    let started = Instant::now();
    // Long calls report progress, so the broker does not hand the record to another worker.
    let (status, headers, body) = {
        let call = call(app, &rec);
        tokio::pin!(call);
        loop {
            tokio::select! {
                r = &mut call => break r,
                _ = tokio::time::sleep(Duration::from_secs(10)) => queue.progress(&t).await,
            }
        }
    };
    let took = started.elapsed();
    rec.meta.last_status = Some(status.as_u16());
    rec.meta.last_error = (!status.is_success()).then(|| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).trim_end().to_string();
        format!("status {}: {text}", status.as_u16())
    });
    let retryable = RETRYABLE.contains(&status.as_u16());
    if retryable && rec.meta.attempts <= app.cfg.async_max_retries {
        let n = rec.meta.attempts;
        return later(app, queue, t, rec, n).await;
    }
    let mut dead = retryable;
    if let Some(url) = rec.meta.callback_url.clone() {
        let cb_headers = callback_headers(&rec, status, headers, took);
        // A final answer stays with the record, so only the callback is retried, later and
        // without holding a worker; a failed call's dead letter keeps the request instead. An
        // answer too large for the queue is retried here.
        let keep = !dead && queue.max_body().is_none_or(|m| body.len() <= m);
        let tries = if keep { 1 } else { app.cfg.async_max_retries + 1 };
        if let Err(why) = send_callback(app, &url, &cb_headers, &body, tries).await {
            rec.meta.last_error = Some(format!("callback failed: {why}"));
            if keep && app.cfg.async_max_retries > 0 {
                rec.meta.result = Some(Outcome { headers: header_pairs(&cb_headers), callbacks: 1 });
                rec.body = body;
                return later(app, queue, t, rec, 1).await;
            }
            dead = true;
        }
    }
    finish(queue, app, t, rec, dead).await;
}

/// A kept answer's callback, once more: delivered, retried later, or a dead letter.
async fn callback_again(app: &Arc<App>, queue: &dyn Backend, t: Taken, mut rec: Record) {
    let (url, headers) = (rec.meta.callback_url.clone().unwrap_or_default(), rec.meta.result.as_ref().map(|r| header_map(&r.headers)).unwrap_or_default());
    let Err(why) = send_callback(app, &url, &headers, &rec.body, 1).await else { return finish(queue, app, t, rec, false).await };
    rec.meta.last_error = Some(format!("callback failed: {why}"));
    let n = rec.meta.result.as_mut().map(|r| {
        r.callbacks += 1;
        r.callbacks
    });
    match n {
        Some(n) if n <= app.cfg.async_max_retries => later(app, queue, t, rec, n).await,
        _ => finish(queue, app, t, rec, true).await,
    }
}

/// Back in the queue after the `n`th failed attempt's backoff.
async fn later(app: &App, queue: &dyn Backend, t: Taken, rec: Record, n: u32) {
    app.metrics.async_retry(&rec.key());
    let wait = backoff(n, app.cfg.async_retry_initial_wait, app.cfg.async_retry_max_wait);
    if let Err(e) = queue.retry_at(t, rec, SystemTime::now() + wait).await {
        watchdog::logs::error(&format!("async queue: {e}"));
    }
}

/// Done with a record: acknowledged, or moved to the dead letters.
async fn finish(queue: &dyn Backend, app: &App, t: Taken, rec: Record, dead: bool) {
    let key = rec.key();
    let done = if dead {
        app.metrics.async_dead_letter(&key);
        watchdog::logs::warn(&format!("async call {} to {key} moved to dead letters after {} attempts", rec.meta.call_id, rec.meta.attempts));
        queue.dead_letter(t, rec).await
    } else {
        queue.ack(t).await
    };
    if let Err(e) = done {
        watchdog::logs::error(&format!("async queue: {e}"));
    }
}

/// The function's answer through the synchronous path (§7): status, headers, whole body. A
/// separate `queue-worker` has no provider of its own: it goes through `gateway_url`.
async fn call(app: &Arc<App>, rec: &Record) -> (StatusCode, http::HeaderMap, Bytes) {
    if app.runtime.is_none() && app.external.is_none() {
        return call_remote(app, rec).await;
    }
    let m = &rec.meta;
    let full = format!("{}.{}", m.function, m.namespace);
    let mut target = format!("/function/{full}{}", m.path);
    if let Some(q) = &m.query {
        target.push('?');
        target.push_str(q);
    }
    let mut req = Request::new(Full::new(rec.body.clone()));
    *req.method_mut() = Method::POST;
    if let Ok(u) = target.parse() {
        *req.uri_mut() = u;
    }
    *req.headers_mut() = record_headers(rec);
    req.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(rec.body.len()));
    let peer = SocketAddr::from(([127, 0, 0, 1], 0));
    let resp = invoke::invoke(app, req, peer, &full, &m.path).await;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    (parts.status, parts.headers, bytes)
}

/// Headers as a record keeps them (text pairs, in order, repeats allowed) and back.
fn header_pairs(h: &http::HeaderMap) -> Vec<(String, String)> {
    h.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

fn header_map(pairs: &[(String, String)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (header::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            h.append(k, v);
        }
    }
    h
}

fn record_headers(rec: &Record) -> http::HeaderMap {
    let m = &rec.meta;
    let mut h = header_map(&m.headers);
    for (k, v) in [(invoke::X_CALL_ID, &m.call_id), (invoke::TRACEPARENT, &m.traceparent)] {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    h
}

async fn call_remote(app: &App, rec: &Record) -> (StatusCode, http::HeaderMap, Bytes) {
    let m = &rec.meta;
    let mut url = format!("{}/function/{}.{}{}", app.cfg.gateway_url, m.function, m.namespace, m.path);
    if let Some(q) = &m.query {
        url.push('?');
        url.push_str(q);
    }
    let failed = |why: String| (StatusCode::BAD_GATEWAY, http::HeaderMap::new(), Bytes::from(format!("upstream error: {why}\n")));
    let Ok(uri) = url.parse::<Uri>() else { return failed(format!("bad URL {url}")) };
    match send_once(&uri, &record_headers(rec), rec.body.clone(), app.cfg.upstream_timeout).await {
        Ok(r) => r,
        Err(e) => failed(e),
    }
}

/// The callback's headers (§11.4): the function's own, its status, name, call id, trace and
/// duration.
fn callback_headers(rec: &Record, status: StatusCode, mut headers: http::HeaderMap, took: Duration) -> http::HeaderMap {
    strip_hop_headers(&mut headers);
    for h in [header::CONTENT_LENGTH, header::HOST] {
        headers.remove(h);
    }
    let set = |h: &mut http::HeaderMap, k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    set(&mut headers, "x-function-status", status.as_str());
    set(&mut headers, "x-function-name", &rec.key());
    set(&mut headers, invoke::X_CALL_ID, &rec.meta.call_id);
    set(&mut headers, invoke::TRACEPARENT, &rec.meta.traceparent);
    headers.insert(watchdog::body::X_DURATION, watchdog::body::duration_value(took));
    headers
}

/// POSTs the result to the callback URL, up to `tries` times with the backoff between; a
/// connection failure, 429 or 5xx is a failure.
async fn send_callback(app: &App, url: &str, headers: &http::HeaderMap, body: &Bytes, tries: u32) -> Result<(), String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad callback URL: {e}"))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = send_once(&uri, headers, body.clone(), app.cfg.async_callback_timeout).await.map(|(code, _, _)| code.as_u16());
        let failed = match &outcome {
            Ok(code) if *code == 429 || *code >= 500 => format!("status {code}"),
            Ok(_) => return Ok(()),
            Err(e) => e.clone(),
        };
        if attempt >= tries {
            return Err(failed);
        }
        tokio::time::sleep(backoff(attempt, app.cfg.async_retry_initial_wait, app.cfg.async_retry_max_wait)).await;
    }
}

/// One POST on a new connection: status, headers and body of the answer.
async fn send_once(uri: &Uri, headers: &http::HeaderMap, body: Bytes, timeout: Duration) -> Result<(StatusCode, http::HeaderMap, Bytes), String> {
    let authority = uri.authority().ok_or("no host")?;
    let tls = uri.scheme_str() == Some("https");
    let addr = match authority.port_u16() {
        Some(_) => authority.as_str().to_string(),
        None => format!("{}:{}", authority.host(), if tls { 443 } else { 80 }),
    };
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(&addr).await.map_err(|e| format!("{e}"))?;
        let mut sender = if tls {
            let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
            let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| format!("bad host name: {e}"))?;
            let stream = tls_connector().connect(name, stream).await.map_err(|e| format!("TLS: {e}"))?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender
        } else {
            let (sender, conn) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender
        };
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").parse().map_err(|e| format!("{e}"))?;
        *req.headers_mut() = headers.clone();
        if let Ok(h) = HeaderValue::from_str(authority.as_str()) {
            req.headers_mut().insert(header::HOST, h);
        }
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map(|c| c.to_bytes()).map_err(|e| e.to_string())?;
        Ok((parts.status, parts.headers, bytes))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {}", watchdog::format::go_duration(timeout))),
    }
}

/// TLS for https callbacks: the system's trusted certificates (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` override them), loaded once.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|e| {
                watchdog::logs::error(&format!("TLS set-up: {e}"));
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .expect("TLS 1.3 is supported by the ring provider")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            });
        Arc::new(config)
    });
    tokio_rustls::TlsConnector::from(config.clone())
}

/// `/system/async/dead-letters[/{callId}[/retry]]` (§11.3).
pub async fn dead_letters(app: &App, req: Request<Incoming>) -> Result<Response<RespBody>, ApiError> {
    let Some(queue) = app.queue.clone() else { return Err(ApiError::NotImplemented("no async queue".into())) };
    let q = query(req.uri().query());
    let path = req.uri().path().trim_end_matches('/').to_string();
    let rest = path.strip_prefix("/system/async/dead-letters").unwrap_or("");
    let internal = |e: crate::queue::QueueError| ApiError::Internal(e.to_string());
    match (req.method().clone(), rest) {
        (Method::GET, "") => {
            let filter = param(&q, "function").filter(|f| !f.is_empty()).map(|f| {
                let (n, ns) = split_name(f, &app.cfg.function_namespace);
                (n.to_string(), ns.to_string())
            });
            let list: Vec<serde_json::Value> = queue
                .dead_letters()
                .await
                .map_err(internal)?
                .iter()
                .filter(|r| filter.as_ref().is_none_or(|(n, ns)| &r.meta.function == n && &r.meta.namespace == ns))
                .map(dead_letter_json)
                .collect();
            Ok(api::json(StatusCode::OK, &list))
        }
        (Method::POST, r) if r.ends_with("/retry") && r.matches('/').count() == 2 => {
            let id = r.trim_start_matches('/').trim_end_matches("/retry").to_string();
            if queue.retry_dead(id.clone()).await.map_err(internal)? {
                Ok(api::status(StatusCode::ACCEPTED))
            } else {
                Err(ApiError::NotFound(format!("dead letter {id} not found")))
            }
        }
        (Method::DELETE, r) if r.matches('/').count() == 1 => {
            let id = r.trim_start_matches('/').to_string();
            if queue.delete_dead(id.clone()).await.map_err(internal)? {
                Ok(api::status(StatusCode::ACCEPTED))
            } else {
                Err(ApiError::NotFound(format!("dead letter {id} not found")))
            }
        }
        _ => Err(ApiError::NotFound("not found".into())),
    }
}
