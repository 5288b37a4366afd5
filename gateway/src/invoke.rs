//! Synchronous invocation (`/function/{name}[/path]`, spec §7): resolve, call-id, start time
//! and trace context, hold until a replica is ready, then stream both ways.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use tokio::time::Instant;
use watchdog::body::{self, OnDone, RespBody, Timed};
use watchdog::upstream::{append_forwarded_for, is_websocket, strip_hop_by_hop};

use crate::error::ApiError;
use crate::local::Function;
use crate::model::split_name;
use crate::server::App;

pub const X_CALL_ID: &str = "x-call-id";
pub const X_START_TIME: &str = "x-start-time";
pub const TRACEPARENT: &str = "traceparent";

/// `00-<32 hex>-<16 hex>-<2 hex>` with non-zero ids (W3C trace context, version 00).
pub fn valid_traceparent(v: &str) -> bool {
    let p: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    p.len() == 4
        && hex(p[0], 2)
        && p[0] != "ff"
        && hex(p[1], 32)
        && hex(p[2], 16)
        && hex(p[3], 2)
        && p[1].bytes().any(|b| b != b'0')
        && p[2].bytes().any(|b| b != b'0')
}

pub fn new_traceparent() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("00-{a}-{}-00", &b[..16])
}

/// The call's identity headers: kept or generated call id, start time, trace context.
pub struct CallHeaders {
    pub call_id: HeaderValue,
    pub start_time: HeaderValue,
    pub traceparent: HeaderValue,
}

impl CallHeaders {
    pub fn from_request(h: &HeaderMap) -> CallHeaders {
        let call_id = h
            .get(X_CALL_ID)
            .filter(|v| !v.is_empty() && v.len() <= 256)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a valid header value"));
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let start_time = HeaderValue::from(nanos as u64);
        let traceparent = h
            .get(TRACEPARENT)
            .filter(|v| v.to_str().is_ok_and(valid_traceparent))
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_str(&new_traceparent()).expect("hex is a valid header value"));
        CallHeaders { call_id, start_time, traceparent }
    }

    /// On the forwarded request; a generated trace context replaces an invalid `tracestate` too.
    pub fn apply_request(&self, h: &mut HeaderMap) {
        if h.get(TRACEPARENT) != Some(&self.traceparent) {
            h.remove("tracestate");
        }
        h.insert(X_CALL_ID, self.call_id.clone());
        h.insert(X_START_TIME, self.start_time.clone());
        h.insert(TRACEPARENT, self.traceparent.clone());
    }

    pub fn apply_response(&self, h: &mut HeaderMap) {
        h.insert(X_CALL_ID, self.call_id.clone());
        h.insert(X_START_TIME, self.start_time.clone());
    }
}

fn served_by() -> HeaderValue {
    HeaderValue::from_static(concat!("fwatchdog-gateway/", env!("CARGO_PKG_VERSION")))
}

/// The watchdog's hop-by-hop set plus the two proxy credentials headers (spec §7).
pub fn strip_hop_headers(h: &mut HeaderMap) {
    strip_hop_by_hop(h);
    h.remove(header::PROXY_AUTHORIZATION);
    h.remove(header::PROXY_AUTHENTICATE);
}

/// `/function/<full>[rest]` where `rest` is `""` or starts with `/`.
pub async fn invoke<B>(app: &Arc<App>, mut req: Request<B>, peer: SocketAddr, full: &str, rest: &str) -> Response<RespBody>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<watchdog::body::BoxError>,
{
    let start = Instant::now();
    let ids = CallHeaders::from_request(req.headers());
    let (name, ns) = split_name(full, &app.cfg.function_namespace);
    if name.is_empty() {
        return ApiError::BadRequest(format!("invalid function name {full:?}: the name is empty")).response();
    }
    let key = format!("{name}.{ns}");

    // Where the call goes: a local replica (path after the name) or the provider (whole path).
    enum Via {
        Replica(Arc<crate::local::Runtime>, Arc<Function>, Arc<crate::local::replica::Target>),
        Provider(Arc<crate::external::External>),
    }
    let mut guard = CallGuard { f: None, replica: None };
    let via = if let Some(rt) = &app.runtime {
        let Some(f) = rt.lookup(name, ns) else {
            return ApiError::function_not_found(name, ns).response();
        };
        app.metrics.started(&key);
        f.begin_call();
        guard.f = Some(f.clone());
        let replica = match rt.acquire(&f).await {
            Ok(r) => r,
            Err(e) => return finish_error(app, &key, guard, e, start, &ids),
        };
        guard.replica = Some(replica.clone());
        match replica.target() {
            Some(t) => Via::Replica(rt.clone(), f, t),
            None => return finish_error(app, &key, guard, ApiError::Upstream("upstream error: replica went away".into()), start, &ids),
        }
    } else if let Some(ext) = &app.external {
        // Unknown functions are not counted (no label explosion from random names).
        if let Err(e) = ext.status(name, ns).await {
            return e.response();
        }
        app.metrics.started(&key);
        if let Err(e) = ext.wait_ready(name, ns, app.cfg.scale_from_zero, app.cfg.scale_from_zero_timeout).await {
            return finish_error(app, &key, guard, e, start, &ids);
        }
        Via::Provider(ext.clone())
    } else {
        return ApiError::NotImplemented("no provider".into()).response();
    };

    let websocket = is_websocket(req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let (parts, incoming) = req.into_parts();
    let mut headers = parts.headers;
    let upgrade = headers.get(header::UPGRADE).cloned();
    let content_type = headers.get(header::CONTENT_TYPE).cloned();
    strip_hop_headers(&mut headers);
    if !headers.contains_key("x-forwarded-host") {
        if let Some(host) = headers.get(header::HOST).cloned() {
            headers.insert("x-forwarded-host", host);
        }
    }
    append_forwarded_for(&mut headers, peer.ip());
    ids.apply_request(&mut headers);
    headers.remove(header::HOST);
    if let (true, Some(u)) = (websocket, upgrade) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, u);
    }
    let timeout = app.cfg.upstream_timeout;
    let timed_out = || ApiError::Timeout(format!("{key} did not respond within {}", watchdog::format::go_duration(timeout)));
    let result: Result<Response<RespBody>, ApiError> = match via {
        Via::Replica(rt, f, mut target) => {
            let mut path = if rest.is_empty() { "/".to_string() } else { rest.to_string() };
            if let Some(q) = parts.uri.query() {
                path.push('?');
                path.push_str(q);
            }
            let uri_for = |t: &crate::local::replica::Target| Uri::builder().scheme("http").authority(t.authority.clone()).path_and_query(path.as_str()).build();
            let uri = match uri_for(&target) {
                Ok(u) => u,
                Err(e) => return finish_error(app, &key, guard, ApiError::BadRequest(format!("bad request path: {e}")), start, &ids),
            };
            if app.cfg.write_request_uri {
                watchdog::logs::info(&format!("Forwarding request to: {uri}"));
            }
            let mut up = Request::new(body::boxed(incoming));
            *up.method_mut() = parts.method;
            *up.uri_mut() = uri;
            *up.headers_mut() = headers;
            let deadline = (!timeout.is_zero()).then(|| start + timeout);
            let mut retries = 0;
            loop {
                let sent = target.pool.try_request(up);
                let outcome = match deadline {
                    Some(d) => tokio::time::timeout_at(d, sent).await,
                    None => Ok(sent.await),
                };
                match outcome {
                    Ok(Ok((resp, lease))) => break Ok(resp.map(|b| body::boxed(OnDone::new(b, move |_| lease.release())))),
                    // Nothing was sent: the replica is gone (killed, restarting). Route around it.
                    Ok(Err((e, Some(back)))) if retries < 2 => {
                        retries += 1;
                        if let Some(r) = guard.replica.take() {
                            r.in_flight.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                            r.out_of_rotation(&f);
                        }
                        watchdog::logs::warn(&format!("{key}: {e}; trying another replica"));
                        let next = match rt.acquire(&f).await {
                            Ok(r) => r,
                            Err(e) => break Err(e),
                        };
                        guard.replica = Some(next.clone());
                        let Some(t) = next.target() else { break Err(ApiError::Upstream("upstream error: replica went away".into())) };
                        target = t;
                        up = back;
                        match uri_for(&target) {
                            Ok(u) => *up.uri_mut() = u,
                            Err(e) => break Err(ApiError::BadRequest(format!("bad request path: {e}"))),
                        }
                    }
                    Ok(Err((e, _))) => break Err(ApiError::Upstream(e)),
                    Err(_) => break Err(timed_out()),
                }
            }
        }
        Via::Provider(ext) => {
            let target = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
            if app.cfg.write_request_uri {
                watchdog::logs::info(&format!("Forwarding request to: {target}"));
            }
            match ext.forward_call(parts.method, &target, headers, body::boxed(incoming)).await {
                Err(ApiError::Timeout(_)) => Err(timed_out()),
                other => other,
            }
        }
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => return finish_error(app, &key, guard, e, start, &ids),
    };
    app.metrics.completed(&key, resp.status().as_u16(), start.elapsed().as_secs_f64());
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            watchdog::upstream::tunnel(client_upgrade, &mut resp, move || drop(guard));
            let (mut parts, _) = resp.into_parts();
            ids.apply_response(&mut parts.headers);
            return Response::from_parts(parts, body::empty());
        }
    }
    let (mut parts, incoming) = resp.into_parts();
    strip_hop_headers(&mut parts.headers);
    ids.apply_response(&mut parts.headers);
    parts.headers.insert("x-served-by", served_by());
    if !parts.headers.contains_key(header::CONTENT_TYPE) {
        parts.headers.insert(header::CONTENT_TYPE, content_type.unwrap_or(HeaderValue::from_static("text/plain")));
    }
    let write_deadline = (!app.cfg.write_timeout.is_zero()).then(|| start + app.cfg.write_timeout);
    let timed = Timed::new(incoming, write_deadline, "write_timeout exceeded while copying the response");
    let body = OnDone::new(timed, move |_| drop(guard));
    Response::from_parts(parts, body::boxed(body))
}

/// Ends the call's accounting whatever way it ends.
struct CallGuard {
    f: Option<Arc<Function>>,
    replica: Option<Arc<crate::local::replica::Replica>>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(r) = &self.replica {
            r.in_flight.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
        if let Some(f) = &self.f {
            f.end_call();
        }
    }
}

fn finish_error(app: &App, key: &str, guard: CallGuard, e: ApiError, start: Instant, ids: &CallHeaders) -> Response<RespBody> {
    drop(guard);
    watchdog::logs::error(&format!("{key}: {e}"));
    app.metrics.completed(key, e.status().as_u16(), start.elapsed().as_secs_f64());
    let mut resp = e.response();
    ids.apply_response(resp.headers_mut());
    resp
}
