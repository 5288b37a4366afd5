//! Forwarding helpers shared by the watchdog's http mode and the gateway: a small keep-alive
//! connection pool over hyper's http1 client, and the hop-by-hop header rules.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::body::BoxError;

pub fn upstream_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    format!("upstream error: {reason}")
}

pub fn is_websocket(h: &HeaderMap) -> bool {
    h.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

pub fn is_bypass(h: &HeaderMap) -> bool {
    is_websocket(h)
        || h.get_all(header::ACCEPT).iter().any(|v| {
            let v = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
            v.contains("text/event-stream") || v.contains("application/x-ndjson")
        })
}

/// Removes `Connection`, the headers it names, and the fixed hop-by-hop set.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
    let hop = |n: &HeaderName| {
        n == header::CONNECTION
            || n == header::TE
            || n == header::TRAILER
            || n == header::TRANSFER_ENCODING
            || n == header::UPGRADE
            || n == KEEP_ALIVE
            || n == PROXY_CONNECTION
    };
    // Most messages carry none: one pass over the names instead of seven lookups.
    if !h.keys().any(hop) {
        return;
    }
    if h.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        h.remove(header::CONNECTION);
        for n in named {
            h.remove(n);
        }
    }
    for n in [&KEEP_ALIVE, &PROXY_CONNECTION, &header::TE, &header::TRAILER, &header::TRANSFER_ENCODING, &header::UPGRADE] {
        if h.contains_key(n) {
            h.remove(n);
        }
    }
}

pub fn append_forwarded_for(h: &mut HeaderMap, ip: IpAddr) {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let value = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {ip}"),
        _ => ip.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert("x-forwarded-for", v);
    }
}

/// Joins the client's upgraded connection to the upstream's (a WebSocket after `101`), copying
/// both ways until either side closes; `done` runs then.
pub fn tunnel<B>(client: hyper::upgrade::OnUpgrade, upstream: &mut Response<B>, done: impl FnOnce() + Send + 'static) {
    let upstream = hyper::upgrade::on(upstream);
    tokio::spawn(async move {
        if let (Ok(down), Ok(up)) = (client.await, upstream.await) {
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(down), &mut TokioIo::new(up)).await;
        }
        done();
    });
}

/// Keep-alive connections to one upstream address. A connection idle for 500 ms is not reused
/// (the peer may be about to close it) and is closed by the sweeper.
pub struct Pool<B> {
    idle: Mutex<Vec<(SendRequest<B>, Instant)>>,
    connect_timeout: Option<Duration>,
}

const POOL_IDLE: Duration = Duration::from_millis(500);

/// A connection in use; `release` returns it to the pool once its response is read.
pub struct Lease<B> {
    pool: Arc<Pool<B>>,
    sender: Option<SendRequest<B>>,
}

impl<B> Lease<B> {
    pub fn release(mut self) {
        if let Some(sender) = self.sender.take() {
            if !sender.is_closed() {
                self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push((sender, Instant::now()));
            }
        }
    }
}

impl<B> Pool<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    pub fn new(connect_timeout: Option<Duration>) -> Arc<Self> {
        Arc::new(Pool { idle: Mutex::new(Vec::new()), connect_timeout })
    }

    /// Sends `req` (its URI carries the upstream address) on an idle connection or a new one.
    pub async fn request(self: &Arc<Self>, req: Request<B>) -> Result<(Response<Incoming>, Lease<B>), String> {
        self.try_request(req).await.map_err(|(e, _)| e)
    }

    /// Like `request`, but a request that could not be sent because no connection could be
    /// made comes back unsent (its body untouched), so it can go to another upstream.
    pub async fn try_request(self: &Arc<Self>, mut req: Request<B>) -> Result<(Response<Incoming>, Lease<B>), (String, Option<Request<B>>)> {
        let mut sender = match self.checkout() {
            Some(s) => s,
            None => match self.connect(req.uri()).await {
                Ok(s) => s,
                Err(e) => return Err((e, Some(req))),
            },
        };
        // An HTTP/1.0 client may send no Host; HTTP/1.1 to the upstream needs one.
        if !req.headers().contains_key(header::HOST) {
            if let Some(a) = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
                req.headers_mut().insert(header::HOST, a);
            }
        }
        // On the wire the target is in origin form: path and query only.
        let origin = req.uri().path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(origin);
        let resp = sender.send_request(req).await.map_err(|e| (upstream_error(&e), None))?;
        // An upgraded connection belongs to the tunnel from now on.
        let keep = resp.status() != StatusCode::SWITCHING_PROTOCOLS;
        Ok((resp, Lease { pool: self.clone(), sender: keep.then_some(sender) }))
    }

    fn checkout(&self) -> Option<SendRequest<B>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        idle.retain(|(s, since)| !s.is_closed() && now.duration_since(*since) < POOL_IDLE);
        let i = idle.iter().rposition(|(s, _)| s.is_ready())?;
        Some(idle.swap_remove(i).0)
    }

    async fn connect(&self, uri: &Uri) -> Result<SendRequest<B>, String> {
        let authority = uri.authority().ok_or("upstream URL without an address")?.as_str();
        let connect = tokio::net::TcpStream::connect(authority);
        let stream = match self.connect_timeout {
            Some(t) => tokio::time::timeout(t, connect).await.map_err(|_| "upstream error: connect timed out".to_string())?,
            None => connect.await,
        }
        .map_err(|e| format!("upstream error: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| upstream_error(&e))?;
        tokio::spawn(conn.with_upgrades());
        Ok(sender)
    }

    /// Drops every idle connection (the upstream went away).
    pub fn clear(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Closes connections idle past `POOL_IDLE`, for as long as the pool is in use elsewhere.
    pub async fn sweep(self: Arc<Self>) {
        loop {
            tokio::time::sleep(POOL_IDLE).await;
            if Arc::strong_count(&self) == 1 {
                return;
            }
            let now = Instant::now();
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).retain(|(s, since)| !s.is_closed() && now.duration_since(*since) < POOL_IDLE);
        }
    }
}
