//! External provider mode (spec §15.2): `/system/*` forwarded to a provider speaking the
//! provider HTTP API (faas-netes, faasd, or another of our gateways) with the gateway's own
//! credentials; info, list counters, scaling, alerts, health and logs handled here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::Authority;
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tokio::time::Instant;
use watchdog::body::{self, full, OnDone, RespBody};
use watchdog::upstream::{strip_hop_by_hop, Pool};

use crate::api::{self, param, parse, query, read_body};
use crate::error::ApiError;
use crate::model::{self, split_name, FunctionDeployment, FunctionStatus, ScaleServiceRequest, Scaling};
use crate::server::App;

/// Status lookups are reused for this long (OpenFaaS caches 250 ms).
const CACHE: Duration = Duration::from_millis(250);

struct Base {
    authority: Authority,
    /// Path prefix of the provider URL, without a trailing `/`.
    prefix: String,
    pool: Arc<Pool<RespBody>>,
}

impl Base {
    fn parse(url: &str) -> Result<Base, String> {
        let uri: Uri = url.parse().map_err(|e| format!("invalid provider URL {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("provider URL {url:?}: only http:// is supported (put a TLS proxy in front)"));
        }
        let a = uri.authority().ok_or_else(|| format!("provider URL {url:?} has no host"))?;
        let authority: Authority = match a.port_u16() {
            Some(_) => a.clone(),
            None => format!("{}:80", a.host()).parse().map_err(|e| format!("invalid provider URL {url:?}: {e}"))?,
        };
        let pool = Pool::new(Some(Duration::from_secs(5)));
        tokio::spawn(pool.clone().sweep());
        Ok(Base { authority, prefix: uri.path().trim_end_matches('/').to_string(), pool })
    }

    fn uri(&self, path_and_query: &str) -> Result<Uri, ApiError> {
        Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(format!("{}{}", self.prefix, path_and_query))
            .build()
            .map_err(|e| ApiError::BadRequest(format!("bad request path: {e}")))
    }
}

pub struct External {
    base: Base,
    logs: Base,
    /// The gateway's Basic credentials, sent instead of the client's when `basic_auth` is on.
    auth: Option<HeaderValue>,
    timeout: Duration,
    cache: Mutex<HashMap<(String, String), (Instant, FunctionStatus)>>,
    /// Functions whose scale to zero the provider refused (logged once).
    refused_zero: Mutex<std::collections::HashSet<String>>,
}

impl External {
    pub fn new(url: &str, logs_url: &str, auth: Option<HeaderValue>, timeout: Duration) -> Result<External, String> {
        Ok(External {
            base: Base::parse(url)?,
            logs: Base::parse(logs_url)?,
            auth,
            timeout,
            cache: Mutex::new(HashMap::new()),
            refused_zero: Mutex::new(Default::default()),
        })
    }

    /// One call to the provider (or the logs provider); the response body streams and returns
    /// its connection to the pool when read.
    async fn send(&self, logs: bool, method: Method, path_and_query: &str, mut headers: HeaderMap, body: RespBody, system: bool) -> Result<Response<RespBody>, ApiError> {
        let base = if logs { &self.logs } else { &self.base };
        strip_hop_by_hop(&mut headers);
        headers.remove(header::HOST);
        if system {
            if let Some(a) = &self.auth {
                headers.insert(header::AUTHORIZATION, a.clone());
            }
        }
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = base.uri(path_and_query)?;
        *req.headers_mut() = headers;
        let sent = base.pool.request(req);
        let result = if self.timeout.is_zero() { Ok(sent.await) } else { tokio::time::timeout(self.timeout, sent).await };
        let (resp, lease) = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(ApiError::Upstream(e.replacen("upstream error", "provider error", 1))),
            Err(_) => {
                return Err(ApiError::Timeout(format!("provider did not respond within {}", watchdog::format::go_duration(self.timeout))))
            }
        };
        let (mut parts, incoming) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body::boxed(OnDone::new(incoming, move |_| lease.release()))))
    }

    /// A system call made by the gateway itself; the whole answer is read (bounded).
    async fn own(&self, method: Method, path_and_query: &str, json: Option<String>) -> Result<(StatusCode, Bytes), ApiError> {
        let mut h = HeaderMap::new();
        let body = match json {
            Some(j) => {
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                full(j)
            }
            None => body::empty(),
        };
        let resp = self.send(false, method, path_and_query, h, body, true).await?;
        let status = resp.status();
        let bytes = read_all(resp.into_body(), 16 << 20).await?;
        Ok((status, bytes))
    }

    pub fn invalidate(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// `GET /system/function/{fn}?namespace={ns}&usage=false`, cached for 250 ms.
    pub async fn status(&self, name: &str, ns: &str) -> Result<FunctionStatus, ApiError> {
        let key = (name.to_string(), ns.to_string());
        if let Some((at, st)) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            if at.elapsed() < CACHE {
                return Ok(st.clone());
            }
        }
        let pq = format!("/system/function/{name}?namespace={ns}&usage=false");
        let (code, bytes) = self.own(Method::GET, &pq, None).await?;
        match code {
            StatusCode::OK => {
                let st: FunctionStatus = serde_json::from_slice(&bytes)
                    .map_err(|e| ApiError::Upstream(format!("provider error: invalid function status: {e}")))?;
                self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (Instant::now(), st.clone()));
                Ok(st)
            }
            StatusCode::NOT_FOUND => Err(ApiError::function_not_found(name, ns)),
            other => Err(ApiError::Upstream(format!("provider error: status lookup of {name}.{ns} answered {}", other.as_u16()))),
        }
    }

    pub async fn scale(&self, name: &str, ns: &str, replicas: u32) -> Result<(), ApiError> {
        let body = serde_json::json!({"serviceName": name, "replicas": replicas, "namespace": ns}).to_string();
        let (code, bytes) = self.own(Method::POST, &format!("/system/scale-function/{name}?namespace={ns}"), Some(body)).await?;
        self.invalidate();
        if code.is_success() {
            return Ok(());
        }
        let reason = String::from_utf8_lossy(&bytes).trim().to_string();
        if replicas == 0 && self.refused_zero.lock().unwrap_or_else(|e| e.into_inner()).insert(format!("{name}.{ns}")) {
            watchdog::logs::warn(&format!("provider refused to scale {name}.{ns} to zero: {reason}"));
        }
        Err(match code {
            StatusCode::NOT_FOUND => ApiError::function_not_found(name, ns),
            StatusCode::BAD_REQUEST => ApiError::BadRequest(reason),
            other => ApiError::Upstream(format!("provider error: scaling {name}.{ns} answered {}: {reason}", other.as_u16())),
        })
    }

    /// Scale from zero against the provider (§10.3): polls the status until a replica is
    /// available, at most `bound`.
    pub async fn wait_ready(&self, name: &str, ns: &str, scale_from_zero: bool, bound: Duration) -> Result<(), ApiError> {
        let st = self.status(name, ns).await?;
        if st.available_replicas > 0 {
            return Ok(());
        }
        let key = format!("{name}.{ns}");
        if !scale_from_zero {
            return Err(ApiError::Unavailable(format!("no ready replica for {key}")));
        }
        let deadline = Instant::now() + bound;
        if st.replicas == 0 {
            let min = Scaling::from_labels(&st.spec.labels, u32::MAX, Duration::from_secs(900)).map(|s| s.min).unwrap_or(1).max(1);
            self.scale(name, ns, min).await?;
        }
        loop {
            if Instant::now() >= deadline {
                return Err(ApiError::Unavailable(format!("no ready replica for {key} after {}", watchdog::format::go_duration(bound))));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.invalidate();
            if self.status(name, ns).await?.available_replicas > 0 {
                return Ok(());
            }
        }
    }

    /// A `/function/…` call: the whole original path and query, the client's headers.
    pub async fn forward_call(&self, method: Method, path_and_query: &str, headers: HeaderMap, body: RespBody) -> Result<Response<RespBody>, ApiError> {
        self.send(false, method, path_and_query, headers, body, false).await
    }
}

/// A provider answer, whole (at most `limit` bytes).
async fn read_all(mut b: RespBody, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = b.frame().await {
        let frame = frame.map_err(|e| ApiError::Upstream(format!("provider error: cannot read the answer: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(ApiError::Upstream(format!("provider error: answer over {limit} bytes")));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

fn pq(req: &Request<Incoming>) -> String {
    req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into())
}

/// `/system/*` in external provider mode.
pub async fn system(app: &Arc<App>, ext: &External, req: Request<Incoming>) -> Result<Response<RespBody>, ApiError> {
    let path = req.uri().path().to_string();
    let q = query(req.uri().query());
    let default_ns = app.cfg.function_namespace.clone();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/system/functions") => {
            let resp = ext.send(false, Method::GET, &pq(&req), req.headers().clone(), body::empty(), true).await?;
            if resp.status() != StatusCode::OK {
                return Ok(resp);
            }
            let bytes = read_all(resp.into_body(), 64 << 20).await?;
            let mut list: Vec<serde_json::Value> =
                serde_json::from_slice(&bytes).map_err(|e| ApiError::Upstream(format!("provider error: invalid function list: {e}")))?;
            let ns_q = param(&q, "namespace").filter(|n| !n.is_empty()).unwrap_or(&default_ns).to_string();
            for f in &mut list {
                let name = f["name"].as_str().unwrap_or("").to_string();
                let ns = f["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or(&ns_q).to_string();
                f["invocationCount"] = serde_json::json!(app.metrics.invocations(&format!("{name}.{ns}")));
            }
            Ok(api::json(StatusCode::OK, &list))
        }
        (m @ (Method::POST | Method::PUT), "/system/functions") => {
            let headers = req.headers().clone();
            let b = read_body(req.into_body()).await?;
            let d: FunctionDeployment = parse(&b)?;
            validate(app, &d)?;
            let resp = ext.send(false, m, "/system/functions", headers, full(b), true).await;
            ext.invalidate();
            resp
        }
        (Method::DELETE, "/system/functions") => {
            let headers = req.headers().clone();
            let b = read_body(req.into_body()).await?;
            let resp = ext.send(false, Method::DELETE, "/system/functions", headers, full(b), true).await;
            ext.invalidate();
            resp
        }
        (Method::POST, p) if p.starts_with("/system/scale-function/") => {
            let full_name = p["/system/scale-function/".len()..].to_string();
            let s: ScaleServiceRequest = parse(&read_body(req.into_body()).await?)?;
            let ns_q = param(&q, "namespace").unwrap_or("").to_string();
            let ns = if !ns_q.is_empty() { ns_q } else { s.namespace.clone() };
            let (name, ns) = if ns.is_empty() { split_name(&full_name, &default_ns) } else { (full_name.as_str(), ns.as_str()) };
            if !s.service_name.is_empty() && s.service_name != name && s.service_name != full_name {
                return Err(ApiError::BadRequest(format!("serviceName {:?} does not match the path's {name:?}", s.service_name)));
            }
            let replicas = match &s.replicas {
                None => return Err(ApiError::BadRequest("replicas is required".into())),
                Some(v) => model::replicas_value(v).ok_or_else(|| ApiError::BadRequest(format!("invalid replicas {v}: must be an integer >= 0")))?,
            };
            let st = ext.status(name, ns).await?;
            let max = Scaling::from_labels(&st.spec.labels, app.cfg.default_scale_max, app.cfg.default_scale_zero_duration).map(|s| s.max).unwrap_or(app.cfg.default_scale_max);
            if replicas > max {
                return Err(ApiError::BadRequest(format!("replicas {replicas} exceeds com.openfaas.scale.max {max}")));
            }
            ext.scale(name, ns, replicas).await?;
            Ok(api::status(StatusCode::ACCEPTED))
        }
        (Method::POST, "/system/alert") => alert(app, ext, &read_body(req.into_body()).await?).await,
        (Method::GET, "/system/logs") => logs(ext, &req, &q).await,
        (Method::GET | Method::POST | Method::DELETE, p) if p.starts_with("/system/async/") => {
            Err(ApiError::NotImplemented("not implemented yet in this gateway".into()))
        }
        (m, _) => {
            // Status, secrets and namespaces: forwarded 1:1, bodies streamed.
            let target = pq(&req);
            let (parts, incoming) = req.into_parts();
            let body = body::boxed(http_body_util::Limited::new(incoming, api::MAX_SYSTEM_BODY));
            ext.send(false, m, &target, parts.headers, body, true).await
        }
    }
}

/// Deploy and update bodies are checked before they reach the provider (§9, §15.2).
fn validate(app: &App, d: &FunctionDeployment) -> Result<(), ApiError> {
    model::check_function_name(&d.service).map_err(ApiError::BadRequest)?;
    if !d.spec.namespace.is_empty() {
        model::check_namespace(&d.spec.namespace).map_err(ApiError::BadRequest)?;
    }
    if d.spec.image.trim().is_empty() {
        return Err(ApiError::BadRequest(format!("function {}: image is required", d.service)));
    }
    for s in &d.spec.secrets {
        model::check_secret_name(s).map_err(ApiError::BadRequest)?;
    }
    Scaling::from_labels(&d.spec.labels, app.cfg.default_scale_max, app.cfg.default_scale_zero_duration).map_err(ApiError::BadRequest)?;
    Ok(())
}

async fn alert(app: &App, ext: &External, b: &[u8]) -> Result<Response<RespBody>, ApiError> {
    let alerts = api::parse_alerts(b)?;
    let mut errors = Vec::new();
    for (fname, status) in alerts {
        let (name, ns) = split_name(&fname, &app.cfg.function_namespace);
        let st = match ext.status(name, ns).await {
            Ok(st) => st,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let s = Scaling::from_labels(&st.spec.labels, app.cfg.default_scale_max, app.cfg.default_scale_zero_duration)
            .unwrap_or(Scaling { min: 1, max: app.cfg.default_scale_max, factor: 10, zero: false, zero_duration: app.cfg.default_scale_zero_duration });
        let Some(target) = api::alert_target(&status, s, st.replicas as u32) else { continue };
        if target != st.replicas as u32 {
            if let Err(e) = ext.scale(name, ns, target).await {
                errors.push(format!("{name}.{ns}: {e}"));
            }
        }
    }
    if errors.is_empty() {
        Ok(api::status(StatusCode::OK))
    } else {
        Err(ApiError::Internal(errors.join("; ")))
    }
}

/// `/system/logs` → `<logs_provider_url>/system/logs`, streamed (§12).
async fn logs(ext: &External, req: &Request<Incoming>, q: &[(String, String)]) -> Result<Response<RespBody>, ApiError> {
    if param(q, "name").is_none_or(|n| n.is_empty()) {
        return Err(ApiError::BadRequest("name is required".into()));
    }
    let resp = ext.send(true, Method::GET, &pq(req), req.headers().clone(), body::empty(), true).await?;
    match resp.status() {
        StatusCode::OK => Ok(resp),
        StatusCode::NOT_FOUND | StatusCode::NOT_IMPLEMENTED => Err(ApiError::NotImplemented("the provider does not serve logs".into())),
        other => Err(ApiError::Internal(format!("unknown log request error ({})", other.as_u16()))),
    }
}

/// GatewayInfo around the provider's ProviderInfo (or the nested one of another gateway of
/// ours); always 200 (§8.4).
pub async fn info(ext: &External) -> serde_json::Value {
    let unavailable = serde_json::json!({"provider": "unavailable", "orchestration": "unknown", "version": {"sha": "", "release": ""}});
    match ext.own(Method::GET, "/system/info", None).await {
        Ok((StatusCode::OK, b)) => match serde_json::from_slice::<serde_json::Value>(&b) {
            Ok(v) if v["provider"].is_object() => v["provider"].clone(),
            Ok(mut v) if v["provider"].is_string() => {
                if !v["version"].is_object() {
                    v["version"] = serde_json::json!({"sha": "", "release": ""});
                }
                v
            }
            _ => unavailable,
        },
        _ => unavailable,
    }
}

/// `/healthz` asks the provider's (§14).
pub async fn healthz(ext: &External) -> Response<RespBody> {
    match ext.own(Method::GET, "/healthz", None).await {
        Ok((StatusCode::OK, _)) => {
            let mut r = Response::new(full("OK"));
            r.headers_mut().insert(header::CONTENT_TYPE, watchdog::body::TEXT_PLAIN);
            r
        }
        Ok((code, _)) => crate::error::error(StatusCode::SERVICE_UNAVAILABLE, &format!("provider health check answered {}", code.as_u16())),
        Err(e) => crate::error::error(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

/// Keeps `gateway_service_count` current: every 5 s, each namespace's function list.
pub async fn poll_service_count(app: Arc<App>, ext: Arc<External>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let namespaces = match ext.own(Method::GET, "/system/namespaces", None).await {
            Ok((StatusCode::OK, b)) => serde_json::from_slice::<Vec<String>>(&b).unwrap_or_default(),
            _ => Vec::new(),
        };
        let namespaces = if namespaces.is_empty() { vec![app.cfg.function_namespace.clone()] } else { namespaces };
        for ns in namespaces {
            if let Ok((StatusCode::OK, b)) = ext.own(Method::GET, &format!("/system/functions?namespace={ns}"), None).await {
                for f in serde_json::from_slice::<Vec<FunctionStatus>>(&b).unwrap_or_default() {
                    let fns = if f.spec.namespace.is_empty() { ns.clone() } else { f.spec.namespace.clone() };
                    app.metrics.set_replicas(&format!("{}.{fns}", f.name), f.replicas);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => return,
        }
    }
}
