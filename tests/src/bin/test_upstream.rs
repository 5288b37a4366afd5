//! A small HTTP server the end-to-end tests and benchmarks run as an http-mode function.
//!
//! `test-upstream --port N [--delay-listen-ms N] [--ignore-sigterm] [--sigterm-exit CODE]`
//! Routes: `/` Hello (also any `/function/...` path, so that a gateway whose provider is this
//! server's watchdog gets the same answer: the OpenFaaS CE gateway keeps that prefix); `/echo` the body; `/info` method, target and headers as text;
//! `/status/NNN`; `/slow?ms=N`; `/sse?n=N&ms=M`; `/ready` 204; `/big?bytes=N`; `/pid`;
//! any `Upgrade: websocket` request is answered 101 and its bytes echoed raw.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

type Calls = std::sync::Mutex<std::collections::HashMap<u64, Vec<std::time::Instant>>>;
static CALLS: std::sync::LazyLock<Calls> = std::sync::LazyLock::new(Default::default);
/// Per key: calls running now, most at once.
static CONCURRENT: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<u64, (u64, u64)>>> = std::sync::LazyLock::new(Default::default);

fn query(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let upgrade = req.headers().get("upgrade").and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase);
    if upgrade.as_deref() == Some("websocket") {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .body(full(""))
            .unwrap());
    }
    let resp = match path.as_str() {
        "/" => Response::new(full("Hello")),
        p if p.starts_with("/function/") => Response::new(full("Hello")),
        "/echo" => {
            let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            Response::new(full(body))
        }
        p if p == "/info" || p.starts_with("/info/") => {
            let mut out = format!("method {}\ntarget {}\n", req.method(), req.uri());
            for (k, v) in req.headers() {
                out.push_str(&format!("{}: {}\n", k, String::from_utf8_lossy(v.as_bytes())));
            }
            let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            out.push_str(&format!("body-bytes {}\n", body.len()));
            Response::new(full(out))
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query(&req, "ms").unwrap_or(1000))).await;
            Response::new(full("slow"))
        }
        "/sse" => {
            let n = query(&req, "n").unwrap_or(3);
            let ms = query(&req, "ms").unwrap_or(200);
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
            tokio::spawn(async move {
                for i in 0..n {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    if tx.send(Bytes::from(format!("data: {i}\n\n"))).await.is_err() {
                        return;
                    }
                }
            });
            Response::builder().header("content-type", "text/event-stream").body(ChannelBody(rx).boxed_unsync()).unwrap()
        }
        "/ready" => Response::builder().status(StatusCode::NO_CONTENT).body(full("")).unwrap(),
        // A stand-in for Prometheus's query API: the CE gateway's list needs one to answer.
        "/api/v1/query" => Response::builder()
            .header("content-type", "application/json")
            .body(full(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#))
            .unwrap(),
        "/big" => Response::new(full(vec![b'x'; query(&req, "bytes").unwrap_or(0) as usize])),
        "/pid" => Response::new(full(std::process::id().to_string())),
        // Async tests: `/flaky?key=K&fail=N&code=C` answers C (503) to its first N calls per key,
        // then 200 with the body; `/flaky-log?key=K` lists the calls' times (ms since the first).
        "/flaky" => {
            let key = query(&req, "key").unwrap_or(0);
            let fail = query(&req, "fail").unwrap_or(0) as usize;
            let code = query(&req, "code").and_then(|c| StatusCode::from_u16(c as u16).ok()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let n = {
                let mut calls = CALLS.lock().unwrap();
                let v = calls.entry(key).or_default();
                v.push(std::time::Instant::now());
                v.len()
            };
            let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            if n <= fail {
                Response::builder().status(code).body(full(format!("failure {n}"))).unwrap()
            } else {
                Response::builder().header("x-attempt", n.to_string()).body(full(body)).unwrap()
            }
        }
        "/flaky-log" => {
            let key = query(&req, "key").unwrap_or(0);
            let calls = CALLS.lock().unwrap();
            let v = calls.get(&key).cloned().unwrap_or_default();
            let first = v.first().copied();
            let ms: Vec<String> = v.iter().map(|t| first.map(|f| t.duration_since(f).as_millis()).unwrap_or(0).to_string()).collect();
            Response::new(full(ms.join(" ")))
        }
        // `/concurrency?key=K&ms=N`: holds each call N ms and records the most at once per key;
        // `/concurrency-max?key=K` tells it.
        "/concurrency" => {
            let key = query(&req, "key").unwrap_or(0);
            let ms = query(&req, "ms").unwrap_or(200);
            {
                let mut c = CONCURRENT.lock().unwrap();
                let e = c.entry(key).or_default();
                e.0 += 1;
                e.1 = e.1.max(e.0);
            }
            tokio::time::sleep(Duration::from_millis(ms)).await;
            CONCURRENT.lock().unwrap().entry(key).or_default().0 -= 1;
            Response::new(full("done"))
        }
        "/concurrency-max" => {
            let key = query(&req, "key").unwrap_or(0);
            Response::new(full(CONCURRENT.lock().unwrap().get(&key).map(|e| e.1).unwrap_or(0).to_string()))
        }
        p if p.starts_with("/status/") => {
            let code = p[8..].parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::IM_A_TEAPOT);
            Response::builder().status(code).header("x-custom", "yes").body(full(format!("status {}", code.as_u16()))).unwrap()
        }
        _ => Response::builder().status(StatusCode::NOT_FOUND).body(full("not found")).unwrap(),
    };
    Ok(resp)
}

/// Frames from a channel, flushed one by one.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = arg(&args, "--port").or_else(|| std::env::var("http_port").ok()).or_else(|| std::env::var("PORT").ok()).and_then(|p| p.parse().ok()).unwrap_or(8000);
    if let Some(ms) = arg(&args, "--delay-listen-ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let ignore_term = args.iter().any(|a| a == "--ignore-sigterm");
    let term_exit: Option<i32> = arg(&args, "--sigterm-exit").and_then(|v| v.parse().ok());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("sigterm handler");
    tokio::spawn(async move {
        while term.recv().await.is_some() {
            eprintln!("test-upstream: got SIGTERM");
            if !ignore_term {
                std::process::exit(term_exit.unwrap_or(0));
            }
        }
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    eprintln!("test-upstream: listening on {port}");
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle))
                .with_upgrades()
                .await;
        });
    }
}
