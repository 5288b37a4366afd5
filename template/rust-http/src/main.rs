//! The rust-http entry program: an HTTP/1.1 server on `$http_port` (else the port of
//! `upstream_url`, else 8082) that reads each request whole and hands it to
//! `handler::handle`. The watchdog in front of it owns timeouts and concurrency limits.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// Requests larger than this get 413 (override with `max_body_bytes`).
const DEFAULT_MAX_BODY: usize = 16 << 20;

fn port() -> u16 {
    let from_url = || {
        let url = std::env::var("upstream_url").ok()?;
        let rest = url.split("://").nth(1)?;
        let authority = rest.split('/').next()?;
        authority.rsplit_once(':')?.1.parse().ok()
    };
    std::env::var("http_port").ok().and_then(|p| p.parse().ok()).or_else(from_url).unwrap_or(8082)
}

fn text(status: StatusCode, msg: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(msg)));
    *r.status_mut() = status;
    r
}

async fn serve(req: Request<Incoming>, limit: usize) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(text(StatusCode::PAYLOAD_TOO_LARGE, format!("request body over {limit} bytes\n")))
        }
        Err(e) => return Ok(text(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}\n"))),
    };
    let resp = handler::handle(Request::from_parts(parts, body)).await.unwrap_or_else(|e| {
        let mut r = Response::new(Bytes::from(format!("{e}\n")));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    });
    Ok(resp.map(Full::new))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let limit = std::env::var("max_body_bytes").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MAX_BODY);
    let addr = SocketAddr::from(([127, 0, 0, 1], port()));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("rust-http listening on {addr}");
    let accept = async {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let svc = service_fn(move |req| serve(req, limit));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => { s.recv().await; }
                Err(_) => std::future::pending::<()>().await,
            }
        } => {}
    }
}
