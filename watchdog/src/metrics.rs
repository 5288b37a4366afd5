//! Prometheus metrics with the upstream names, types and labels (spec §11), and their listener.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    code: Cow<'static, str>,
    method: Cow<'static, str>,
}

const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
    pub in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        let durations: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(BUCKETS));
        let in_flight = Gauge::default();
        registry.register("http_requests", "total HTTP requests processed", requests.clone());
        registry.register("http_request_duration_seconds", "Seconds spent serving HTTP requests.", durations.clone());
        registry.register("http_requests_in_flight", "Current number of HTTP requests in flight", in_flight.clone());
        Metrics { registry, requests, durations, in_flight }
    }

    /// Counts one completed request to the function route.
    pub fn observe(&self, method: &http::Method, code: StatusCode, seconds: f64) {
        let labels = Labels { code: status_label(code), method: method_label(method) };
        self.requests.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(seconds);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn status_label(code: StatusCode) -> Cow<'static, str> {
    match code.as_u16() {
        200 => Cow::Borrowed("200"),
        429 => Cow::Borrowed("429"),
        500 => Cow::Borrowed("500"),
        n => Cow::Owned(n.to_string()),
    }
}

fn method_label(m: &http::Method) -> Cow<'static, str> {
    Cow::Borrowed(match *m {
        http::Method::GET => "get",
        http::Method::POST => "post",
        http::Method::PUT => "put",
        http::Method::DELETE => "delete",
        http::Method::PATCH => "patch",
        http::Method::HEAD => "head",
        http::Method::OPTIONS => "options",
        _ => return Cow::Owned(m.as_str().to_ascii_lowercase()),
    })
}

/// Serves `GET /metrics` until `stop` resolves; every other path is 404.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let m = metrics.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" && req.method() == http::Method::GET {
                        Response::builder()
                            .header(http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")
                            .body(Full::new(Bytes::from(m.encode())))
                    } else {
                        Response::builder().status(StatusCode::NOT_FOUND).body(Full::new(Bytes::from_static(b"404 page not found\n")))
                    };
                    Ok::<_, std::convert::Infallible>(resp.expect("static response parts are valid"))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_millis(500))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        });
    }
}
