//! The `/system` API over the embedded local runtime (spec §8, §9, §10.2, §10.5, §12).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use watchdog::body::{self, full, RespBody};

use crate::error::ApiError;
use crate::local::logs::time;
use crate::local::Runtime;
use crate::model::{self, split_name, DeleteFunctionRequest, FunctionDeployment, FunctionNamespace, ScaleServiceRequest, Secret};
use crate::server::App;

/// `/system/*` bodies are limited to 1 MiB (§9).
pub const MAX_SYSTEM_BODY: usize = 1 << 20;

/// `key=value` pairs of a query string, `+` and percent escapes decoded.
pub fn query(req_query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| String::from_utf8_lossy(&watchdog::modes::fork::percent_decode(&s.replace('+', " "))).into_owned();
    req_query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

pub fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.as_str())
}

/// Reads a whole `/system` body: 413 past the limit, 400 when it cannot be read.
pub async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match body::collect_limited(body, MAX_SYSTEM_BODY).await {
        Ok(b) => Ok(b),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::TooLarge(format!("request body exceeds the limit of {MAX_SYSTEM_BODY} bytes")))
        }
        Err(e) => Err(ApiError::BadRequest(format!("cannot read request body: {e}"))),
    }
}

pub fn parse<T: DeserializeOwned>(b: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(b).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

pub fn json(status: StatusCode, v: &impl serde::Serialize) -> Response<RespBody> {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn status(code: StatusCode) -> Response<RespBody> {
    body::status_only(code)
}

/// One `/system` call on the local runtime.
pub async fn system(app: &Arc<App>, rt: &Arc<Runtime>, req: Request<Incoming>) -> Result<Response<RespBody>, ApiError> {
    let path = req.uri().path().to_string();
    let q = query(req.uri().query());
    let ns_q = param(&q, "namespace").unwrap_or("").to_string();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/system/functions") => {
            let mut list = rt.list(&ns_q)?;
            for f in &mut list {
                f.invocation_count = app.metrics.invocations(&format!("{}.{}", f.name, f.spec.namespace)) as f64;
            }
            Ok(json(StatusCode::OK, &list))
        }
        (m @ (Method::POST | Method::PUT), "/system/functions") => {
            let d: FunctionDeployment = parse(&read_body(req.into_body()).await?)?;
            rt.deploy(d, m == Method::POST)?;
            Ok(status(StatusCode::ACCEPTED))
        }
        (Method::DELETE, "/system/functions") => {
            let d: DeleteFunctionRequest = parse(&read_body(req.into_body()).await?)?;
            if d.function_name.is_empty() {
                return Err(ApiError::BadRequest("functionName is required".into()));
            }
            model::check_function_name(&d.function_name).map_err(ApiError::BadRequest)?;
            rt.delete(&d.function_name, &d.namespace).await?;
            app.metrics.forget(&format!("{}.{}", d.function_name, rt.namespace(&d.namespace).unwrap_or_default()));
            Ok(status(StatusCode::ACCEPTED))
        }
        (Method::GET, p) if p.starts_with("/system/function/") => {
            let full = &p["/system/function/".len()..];
            let (name, ns) = if ns_q.is_empty() { split_name(full, rt.default_namespace()) } else { (full, ns_q.as_str()) };
            let mut st = rt.status(name, ns)?;
            st.invocation_count = app.metrics.invocations(&format!("{}.{}", st.name, st.spec.namespace)) as f64;
            Ok(json(StatusCode::OK, &st))
        }
        (Method::POST, p) if p.starts_with("/system/scale-function/") => {
            let full = p["/system/scale-function/".len()..].to_string();
            let b = read_body(req.into_body()).await?;
            let s: ScaleServiceRequest = parse(&b)?;
            let ns = if !ns_q.is_empty() { ns_q.clone() } else { s.namespace.clone() };
            let (name, ns) = if ns.is_empty() { split_name(&full, rt.default_namespace()) } else { (full.as_str(), ns.as_str()) };
            if !s.service_name.is_empty() && s.service_name != name && s.service_name != full {
                return Err(ApiError::BadRequest(format!("serviceName {:?} does not match the path's {name:?}", s.service_name)));
            }
            let replicas = match &s.replicas {
                None => return Err(ApiError::BadRequest("replicas is required".into())),
                Some(v) => model::replicas_value(v).ok_or_else(|| ApiError::BadRequest(format!("invalid replicas {v}: must be an integer >= 0")))?,
            };
            let ns = rt.namespace(ns).map_err(|_| ApiError::function_not_found(name, ns))?;
            let f = rt.lookup(name, &ns).ok_or_else(|| ApiError::function_not_found(name, &ns))?;
            let max = f.scaling().max;
            if replicas > max {
                return Err(ApiError::BadRequest(format!("replicas {replicas} exceeds com.openfaas.scale.max {max}")));
            }
            rt.scale(&f, replicas)?;
            Ok(status(StatusCode::ACCEPTED))
        }
        (Method::GET, "/system/secrets") => {
            let list: Vec<serde_json::Value> =
                rt.secrets(&ns_q)?.into_iter().map(|(name, namespace)| serde_json::json!({"name": name, "namespace": namespace})).collect();
            Ok(json(StatusCode::OK, &list))
        }
        (m @ (Method::POST | Method::PUT | Method::DELETE), "/system/secrets") => {
            let s: Secret = parse(&read_body(req.into_body()).await?)?;
            if s.name.is_empty() {
                return Err(ApiError::BadRequest("secret name is required".into()));
            }
            if m == Method::DELETE {
                rt.delete_secret(&s.name, &s.namespace)?;
                return Ok(status(StatusCode::ACCEPTED));
            }
            let value = match (&s.raw_value, &s.value) {
                (Some(raw), _) => {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD
                        .decode(raw.trim())
                        .map_err(|e| ApiError::BadRequest(format!("invalid rawValue: not base64: {e}")))?
                }
                (None, Some(v)) => v.clone().into_bytes(),
                (None, None) => Vec::new(),
            };
            let create = m == Method::POST;
            rt.put_secret(&s.name, &s.namespace, &value, create)?;
            Ok(status(if create { StatusCode::CREATED } else { StatusCode::ACCEPTED }))
        }
        (Method::GET, "/system/namespaces") => Ok(json(StatusCode::OK, &rt.namespaces())),
        (m, p) if p.starts_with("/system/namespace/") => {
            let ns = p["/system/namespace/".len()..].to_string();
            match m {
                Method::GET => Ok(json(StatusCode::OK, &rt.get_namespace(&ns)?)),
                Method::POST => {
                    let mut n: FunctionNamespace = parse(&read_body(req.into_body()).await?)?;
                    if n.name.is_empty() {
                        n.name = ns;
                    }
                    rt.put_namespace(n, true)?;
                    Ok(status(StatusCode::CREATED))
                }
                Method::PUT => {
                    let b = read_body(req.into_body()).await?;
                    let mut n: FunctionNamespace = if b.is_empty() { FunctionNamespace::default() } else { parse(&b)? };
                    if !n.name.is_empty() && n.name != ns {
                        return Err(ApiError::BadRequest(format!("namespace {:?} in the body does not match the path's {ns:?}", n.name)));
                    }
                    n.name = ns;
                    rt.put_namespace(n, false)?;
                    Ok(status(StatusCode::ACCEPTED))
                }
                Method::DELETE => {
                    rt.delete_namespace(&ns)?;
                    Ok(status(StatusCode::ACCEPTED))
                }
                _ => Err(ApiError::BadRequest("method not allowed".into())),
            }
        }
        (Method::GET, "/system/logs") => logs(app, rt, &q),
        (Method::POST, "/system/alert") => alert(rt, &read_body(req.into_body()).await?),
        _ => Err(ApiError::NotImplemented("not implemented yet in this gateway".into())),
    }
}

/// `/system/logs` (§12): kept lines, then (with `follow`) live ones, as NDJSON.
fn logs(app: &Arc<App>, rt: &Arc<Runtime>, q: &[(String, String)]) -> Result<Response<RespBody>, ApiError> {
    let name = param(q, "name").filter(|n| !n.is_empty()).ok_or_else(|| ApiError::BadRequest("name is required".into()))?;
    let ns_q = param(q, "namespace").unwrap_or("");
    let (name, ns) = if ns_q.is_empty() { split_name(name, rt.default_namespace()) } else { (name, ns_q) };
    let ns = rt.namespace(ns).map_err(|_| ApiError::function_not_found(name, ns))?;
    let f = rt.lookup(name, &ns).ok_or_else(|| ApiError::function_not_found(name, &ns))?;
    let tail = match param(q, "tail").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => {
            let n: i64 = t.parse().map_err(|_| ApiError::BadRequest(format!("invalid tail {t:?}: must be an integer")))?;
            n.max(0) as usize
        }
    };
    let follow = match param(q, "follow").unwrap_or("") {
        "" | "false" | "0" => false,
        "true" | "1" => true,
        other => return Err(ApiError::BadRequest(format!("invalid follow {other:?}: must be true or false"))),
    };
    let since = match param(q, "since").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(time::parse_rfc3339(s).ok_or_else(|| ApiError::BadRequest(format!("invalid since {s:?}: must be RFC 3339")))?),
    };
    let instance = param(q, "instance").filter(|i| !i.is_empty()).map(str::to_string);
    let (kept, mut live) = f.logs.snapshot(instance.as_deref(), since, tail);
    let line = {
        let name = name.to_string();
        let ns = ns.clone();
        move |l: &crate::local::logs::LogLine| {
            let mut s = serde_json::json!({"name": name, "namespace": ns, "instance": l.instance, "timestamp": l.timestamp, "text": l.text}).to_string();
            s.push('\n');
            Bytes::from(s)
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut shutdown = app.shutdown_signal();
    let write_timeout = app.cfg.write_timeout;
    tokio::spawn(async move {
        for l in &kept {
            if tx.send(line(l)).await.is_err() {
                return;
            }
        }
        if !follow {
            return;
        }
        let until = tokio::time::sleep(if write_timeout.is_zero() { std::time::Duration::from_secs(86_400 * 365) } else { write_timeout });
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => return,
                _ = async { shutdown.wait_for(|s| *s).await.is_ok() } => return,
                _ = tx.closed() => return,
                got = live.recv() => match got {
                    Ok(l) => {
                        if instance.as_deref().is_some_and(|i| i != l.instance) {
                            continue;
                        }
                        if tx.send(line(&l)).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                },
            }
        }
    });
    let mut resp = Response::new(body::boxed(watchdog::body::ChannelBody::new(rx)));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(resp)
}

#[derive(serde::Deserialize)]
struct AlertBody {
    #[serde(default)]
    alerts: Vec<Alert>,
}

#[derive(serde::Deserialize)]
struct Alert {
    #[serde(default)]
    status: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

/// The (function_name, status) pairs of an AlertManager webhook body.
pub fn parse_alerts(b: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let body: AlertBody = serde_json::from_slice(b).map_err(|_| ApiError::BadRequest("Unable to parse alert, bad format.".into()))?;
    Ok(body.alerts.into_iter().filter_map(|a| Some((a.labels.get("function_name")?.clone(), a.status))).collect())
}

/// Replicas after one alert (§10.5): `firing` adds ceil(max × factor / 100) up to max,
/// `resolved` returns to min; `None` when nothing changes.
pub fn alert_target(status: &str, s: crate::model::Scaling, current: u32) -> Option<u32> {
    match status {
        "firing" if s.factor == 0 => None,
        "firing" => Some((u64::from(current) + (u64::from(s.max) * u64::from(s.factor)).div_ceil(100)).min(u64::from(s.max)) as u32),
        "resolved" => Some(s.min),
        _ => None,
    }
}

/// AlertManager webhook on the local runtime.
fn alert(rt: &Arc<Runtime>, b: &[u8]) -> Result<Response<RespBody>, ApiError> {
    let mut errors = Vec::new();
    for (fname, status) in parse_alerts(b)? {
        let (name, ns) = split_name(&fname, rt.default_namespace());
        let Some(f) = rt.lookup(name, ns) else {
            errors.push(format!("function {name}.{ns} not found"));
            continue;
        };
        let current = f.desired();
        let Some(target) = alert_target(&status, f.scaling(), current) else { continue };
        if target != current {
            if let Err(e) = rt.scale(&f, target) {
                errors.push(format!("{}: {e}", f.key));
            }
        }
    }
    if errors.is_empty() {
        Ok(status(StatusCode::OK))
    } else {
        Err(ApiError::Internal(errors.join("; ")))
    }
}
