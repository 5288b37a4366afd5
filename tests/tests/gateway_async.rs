//! Asynchronous invocation with the embedded queue (gateway.md §11; checklist 39-44, 62, 64):
//! the real gateway, real replicas, and a real HTTP callback receiver.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Command;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

/// One request received by the callback server.
#[derive(Debug, Clone)]
struct Callback {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// An HTTP server recording every POST; answers with `codes` in turn, then 200.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Callback>>>,
}

impl Receiver {
    fn start(codes: Vec<u16>) -> Receiver {
        Self::start_with(codes, None)
    }

    /// With `tls`, every connection is served over TLS with that configuration.
    fn start_with(codes: Vec<u16>, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<Callback>>> = Arc::default();
        let g = got.clone();
        let codes = Arc::new(Mutex::new(codes.into_iter()));
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let (g, codes, tls) = (g.clone(), codes.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    Some(cfg) => {
                        let conn = rustls::ServerConnection::new(cfg).unwrap();
                        serve_one(rustls::StreamOwned::new(conn, s), &g, &codes);
                    }
                    None => serve_one(s, &g, &codes),
                });
            }
        });
        Receiver { port, got }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cb", self.port)
    }

    fn wait(&self, n: usize) -> Vec<Callback> {
        assert!(eventually(T, || self.got.lock().unwrap().len() >= n), "{n} callbacks expected, got {:?}", self.got.lock().unwrap());
        self.got.lock().unwrap().clone()
    }
}

/// Reads one request (Content-Length or chunked body), records it, answers the next code.
fn serve_one<S: Read + Write>(s: S, got: &Mutex<Vec<Callback>>, codes: &Mutex<std::vec::IntoIter<u16>>) {
    let mut r = BufReader::new(s);
    let mut headers = HashMap::new();
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = Vec::new();
    if let Some(n) = headers.get("content-length").and_then(|n| n.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body).unwrap();
    } else if headers.get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let code = codes.lock().unwrap().next().unwrap_or(200);
    got.lock().unwrap().push(Callback { headers, body });
    let s = r.get_mut();
    let _ = write!(s, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = s.flush();
}

fn deploy_upstream(gw: &Watchdog, name: &str, labels: serde_json::Value) {
    let mut d = upstream_function(name);
    d["labels"] = labels;
    assert_eq!(gw.json("POST", "/system/functions", &d).status, 202);
    gw.wait_available(name, 1, T);
}

/// A unique key for test-upstream's per-key counters.
fn key() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    u64::from(std::process::id()) * 1000 + N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// `n` accepted async calls of 300 ms each, called back to `cb`; their call ids.
fn slow_calls(gw: &Watchdog, cb: &Receiver, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let r = gw.request("POST", &format!("/async-function/up/slow?ms=300&n={i}"), &[("X-Callback-Url", &cb.url())], b"");
            assert_eq!(r.status, 202);
            r.header("x-call-id").unwrap().to_string()
        })
        .collect()
}

fn fast_retries(s: Setup) -> Setup {
    s.env("async_retry_initial_wait", "200ms").env("async_retry_max_wait", "2s")
}

#[test]
fn a39_rejections_queue_nothing() {
    let gw = open_gateway().env("async_max_body_bytes", "1000").env("metrics_port", &free_port().to_string()).start();
    deploy_upstream(&gw, "up", json!({}));
    let r = gw.post("/async-function/missing", b"x");
    assert_eq!((r.status, r.header("x-openfaas-internal")), (404, Some("gateway")));
    assert_eq!(gw.post("/async-function/up.other", b"x").status, 404);
    let r = gw.post("/async-function/up", &[b'a'; 1001]);
    assert_eq!((r.status, r.text().as_str()), (413, "request body exceeds async limit of 1000 bytes\n"));
    for bad in ["", "ftp://x/y", "/relative", "http://"] {
        let r = gw.request("POST", "/async-function/up", &[("X-Callback-Url", bad)], b"x");
        assert_eq!(r.status, 400, "{bad:?}: {}", r.text());
    }
    assert_eq!(gw.post("/async-function/up", &[b'a'; 1000]).status, 202, "exactly the limit is accepted");
    let m = request(gw.metrics_port.unwrap(), "GET", "/metrics", &[], b"").text();
    assert!(m.contains("gateway_async_accepted_total{function_name=\"up.openfaas-fn\"} 1"), "{m}");
    for name in ["gateway_async_queue_depth ", "gateway_async_inflight "] {
        assert!(m.contains(name), "{name}: {m}");
    }
}

#[test]
fn a40_a41_call_runs_once_and_calls_back() {
    let gw = open_gateway().start();
    deploy_upstream(&gw, "up", json!({}));
    let cb = Receiver::start(vec![]);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = gw.request("POST", "/async-function/up/info?x=1", &[("X-Callback-Url", &cb.url()), ("traceparent", tp), ("X-Custom", "c")], b"payload");
    assert_eq!((r.status, r.body.len()), (202, 0));
    let id = r.header("x-call-id").expect("X-Call-Id").to_string();
    assert!(r.header("x-start-time").is_some());
    let got = cb.wait(1);
    let c = &got[0];
    let body = String::from_utf8_lossy(&c.body);
    assert!(body.starts_with("method POST\ntarget /info?x=1\n"), "{body}");
    assert!(body.contains("x-custom: c\n") && body.contains(&format!("x-call-id: {id}\n")) && body.contains("body-bytes 7\n"), "{body}");
    assert!(body.contains(&format!("traceparent: {tp}\n")), "{body}");
    assert_eq!(c.headers.get("x-function-status").map(String::as_str), Some("200"));
    assert_eq!(c.headers.get("x-function-name").map(String::as_str), Some("up.openfaas-fn"));
    assert_eq!(c.headers.get("x-call-id"), Some(&id));
    assert_eq!(c.headers.get("traceparent").map(String::as_str), Some(tp));
    let d = c.headers.get("x-duration-seconds").expect("X-Duration-Seconds");
    assert!(d.split_once('.').is_some_and(|(_, f)| f.len() == 6), "{d}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cb.got.lock().unwrap().len(), 1, "called back once");
}

#[test]
fn a42_a43_retries_with_growing_gaps_and_final_statuses() {
    let gw = fast_retries(open_gateway()).start();
    deploy_upstream(&gw, "up", json!({}));
    let cb = Receiver::start(vec![]);
    let k = key();
    assert_eq!(gw.request("POST", &format!("/async-function/up/flaky?key={k}&fail=2"), &[("X-Callback-Url", &cb.url())], b"ok").status, 202);
    let got = cb.wait(1);
    assert_eq!(got[0].headers.get("x-function-status").map(String::as_str), Some("200"));
    assert_eq!(got[0].body, b"ok");
    let log = gw.get(&format!("/function/up/flaky-log?key={k}")).text();
    let t: Vec<u64> = log.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(t.len(), 3, "three attempts: {log}");
    let (g1, g2) = (t[1] - t[0], t[2] - t[1]);
    assert!(g1 >= 150 && g2 > g1, "growing gaps: {g1} ms then {g2} ms");
    // 400 is final: one attempt, called back with 400.
    let k = key();
    assert_eq!(gw.request("POST", &format!("/async-function/up/flaky?key={k}&fail=9&code=400"), &[("X-Callback-Url", &cb.url())], b"").status, 202);
    let got = cb.wait(2);
    assert_eq!(got[1].headers.get("x-function-status").map(String::as_str), Some("400"));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(gw.get(&format!("/function/up/flaky-log?key={k}")).text().split_whitespace().count(), 1);
}

#[test]
fn a44_sigkill_after_202_still_runs_after_restart() {
    let state = temp_dir("async-kill");
    let s = state.to_str().unwrap();
    let mut gw = open_gateway().env("state_dir", s).start();
    deploy_upstream(&gw, "up", json!({}));
    let cb = Receiver::start(vec![]);
    let ids = slow_calls(&gw, &cb, 5);
    gw.signal(libc::SIGKILL);
    gw.wait_exit(T);
    let _gw = open_gateway().env("state_dir", s).start();
    let got = cb.wait(5);
    for id in &ids {
        assert!(got.iter().any(|c| c.headers.get("x-call-id") == Some(id) && c.headers.get("x-function-status").map(String::as_str) == Some("200")), "{id} delivered");
    }
}

#[test]
fn a62_dead_letters() {
    let gw = fast_retries(open_gateway()).env("async_max_retries", "2").env("metrics_port", &free_port().to_string()).start();
    deploy_upstream(&gw, "up", json!({}));
    let cb = Receiver::start(vec![]);
    let k = key();
    let r = gw.request("POST", &format!("/async-function/up/flaky?key={k}&fail=1000"), &[("X-Callback-Url", &cb.url())], b"");
    let id = r.header("x-call-id").unwrap().to_string();
    let got = cb.wait(1);
    assert_eq!(got[0].headers.get("x-function-status").map(String::as_str), Some("503"));
    assert_eq!(gw.get(&format!("/function/up/flaky-log?key={k}")).text().split_whitespace().count(), 3, "1 + 2 retries");
    let list = gw.get("/system/async/dead-letters").json();
    assert!(eventually(T, || gw.get("/system/async/dead-letters").json().as_array().is_some_and(|a| a.len() == 1)), "{list}");
    let dl = gw.get("/system/async/dead-letters?function=up.openfaas-fn").json()[0].clone();
    assert_eq!((dl["callId"].as_str(), dl["function"].as_str(), dl["namespace"].as_str()), (Some(id.as_str()), Some("up"), Some("openfaas-fn")));
    assert_eq!((dl["attempts"].as_u64(), dl["lastStatus"].as_u64()), (Some(3), Some(503)));
    assert!(dl["lastError"].as_str().unwrap().starts_with("status 503: failure 3"), "{dl}");
    assert!(dl["enqueuedAt"].as_str().unwrap().ends_with('Z') && dl["failedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(gw.get("/system/async/dead-letters?function=other").json(), json!([]));
    let m = request(gw.metrics_port.unwrap(), "GET", "/metrics", &[], b"").text();
    assert!(m.contains("gateway_async_dead_letters_total{function_name=\"up.openfaas-fn\"} 1"), "{m}");
    assert!(m.contains("gateway_async_retries_total{function_name=\"up.openfaas-fn\"} 2"), "{m}");
    // Retry: queued again with attempts reset; it fails again and is a dead letter again.
    assert_eq!(gw.post(&format!("/system/async/dead-letters/{id}/retry"), b"").status, 202);
    cb.wait(2);
    assert_eq!(gw.get(&format!("/function/up/flaky-log?key={k}")).text().split_whitespace().count(), 6);
    assert!(eventually(T, || gw.get("/system/async/dead-letters").json()[0]["attempts"] == 3));
    assert_eq!(gw.request("DELETE", &format!("/system/async/dead-letters/{id}"), &[], b"").status, 202);
    assert_eq!(gw.get("/system/async/dead-letters").json(), json!([]));
    assert_eq!(gw.request("DELETE", &format!("/system/async/dead-letters/{id}"), &[], b"").status, 404);
    assert_eq!(gw.post("/system/async/dead-letters/nope/retry", b"").status, 404);
}

#[test]
fn a64_per_function_max_inflight() {
    let gw = open_gateway().env("async_max_inflight", "8").start();
    deploy_upstream(&gw, "one", json!({"com.openfaas.async.max_inflight": "1"}));
    let cb = Receiver::start(vec![]);
    let k = key();
    let started = Instant::now();
    for _ in 0..20 {
        let r = gw.request("POST", &format!("/async-function/one/concurrency?key={k}&ms=200"), &[("X-Callback-Url", &cb.url())], b"");
        assert_eq!(r.status, 202);
    }
    cb.wait(20);
    assert!(started.elapsed() >= Duration::from_millis(3900), "serial: {:?}", started.elapsed());
    assert_eq!(gw.get(&format!("/function/one/concurrency-max?key={k}")).text(), "1", "never overlapped");
}

/// A failing callback is retried from the queue with the function's answer kept: the worker is
/// free for other calls meanwhile, the function does not run again, and a crash does not lose it.
#[test]
fn a65_callback_retries_are_queued_with_the_answer() {
    let state = temp_dir("async-callback");
    let s = state.to_str().unwrap();
    let start = || {
        open_gateway()
            .env("state_dir", s)
            .env("async_max_inflight", "1")
            .env("async_retry_initial_wait", "1s")
            .env("async_retry_max_wait", "2s")
            .env("metrics_port", &free_port().to_string())
            .start()
    };
    let mut gw = start();
    deploy_upstream(&gw, "up", json!({}));
    let (cb_a, cb_b) = (Receiver::start(vec![503, 502]), Receiver::start(vec![]));
    let (ka, kb) = (key(), key());
    let a = gw.request("POST", &format!("/async-function/up/flaky?key={ka}&fail=0"), &[("X-Callback-Url", &cb_a.url())], b"answer-a");
    let id_a = a.header("x-call-id").unwrap().to_string();
    cb_a.wait(1);
    // The one worker slot is free while A's callback waits for its retry.
    let b = Instant::now();
    assert_eq!(gw.request("POST", &format!("/async-function/up/flaky?key={kb}&fail=0"), &[("X-Callback-Url", &cb_b.url())], b"b").status, 202);
    cb_b.wait(1);
    assert!(b.elapsed() < Duration::from_millis(800), "B waited {:?} behind A's callback", b.elapsed());
    assert_eq!(cb_a.got.lock().unwrap().len(), 1, "A's retry is still pending");
    let m = request(gw.metrics_port.unwrap(), "GET", "/metrics", &[], b"").text();
    assert!(m.contains("gateway_async_retries_total{function_name=\"up.openfaas-fn\"} 1"), "{m}");
    assert_eq!(gw.get(&format!("/function/up/flaky-log?key={ka}")).text().split_whitespace().count(), 1);
    // A crash while A's callback waits: the restarted gateway delivers it, without a new call.
    gw.signal(libc::SIGKILL);
    gw.wait_exit(T);
    let _gw = start();
    let got = cb_a.wait(3);
    for c in &got {
        assert_eq!(c.headers.get("x-call-id"), Some(&id_a));
        assert_eq!(c.headers.get("x-function-status").map(String::as_str), Some("200"));
        assert_eq!(c.body, b"answer-a", "the kept answer");
    }
    // The restarted gateway's replica (a new process) never saw the call.
    assert_eq!(_gw.get(&format!("/function/up/flaky-log?key={ka}")).text().split_whitespace().count(), 0, "the function ran once");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cb_a.got.lock().unwrap().len(), 3, "no callback after the 200");
}

// ---- NATS JetStream (a real nats-server) ----

fn with_nats(s: Setup, nats: &NatsServer) -> Setup {
    s.env("faas_nats_address", "127.0.0.1").env("faas_nats_port", &nats.port.to_string())
}

#[test]
fn n40_to_n44_nats_calls_retries_and_a_killed_gateway() {
    let nats = NatsServer::start();
    let state = temp_dir("nats-gw");
    let s = state.to_str().unwrap();
    let mut gw = fast_retries(with_nats(open_gateway(), &nats)).env("state_dir", s).start();
    gw.wait_log("Async queue: NATS JetStream", T);
    deploy_upstream(&gw, "up", json!({}));
    let cb = Receiver::start(vec![]);
    // 40/41: runs once with body, path and query; called back with the spec's headers.
    let r = gw.request("POST", "/async-function/up/info?x=1", &[("X-Callback-Url", &cb.url())], b"payload");
    assert_eq!((r.status, r.body.len()), (202, 0));
    let id = r.header("x-call-id").unwrap().to_string();
    let got = cb.wait(1);
    let body = String::from_utf8_lossy(&got[0].body);
    assert!(body.starts_with("method POST\ntarget /info?x=1\n") && body.contains("body-bytes 7\n"), "{body}");
    assert_eq!(got[0].headers.get("x-call-id"), Some(&id));
    assert_eq!(got[0].headers.get("x-function-status").map(String::as_str), Some("200"));
    // 503 three times, then 200: four attempts, the callback gets 200.
    let k = key();
    assert_eq!(gw.request("POST", &format!("/async-function/up/flaky?key={k}&fail=3"), &[("X-Callback-Url", &cb.url())], b"ok").status, 202);
    let got = cb.wait(2);
    assert_eq!(got[1].headers.get("x-function-status").map(String::as_str), Some("200"));
    assert_eq!(gw.get(&format!("/function/up/flaky-log?key={k}")).text().split_whitespace().count(), 4);
    // 44: SIGKILL right after the 202s; a restarted gateway delivers them.
    let ids = slow_calls(&gw, &cb, 5);
    gw.signal(libc::SIGKILL);
    gw.wait_exit(T);
    let gw = fast_retries(with_nats(open_gateway(), &nats)).env("state_dir", s).env("async_max_retries", "2").start();
    // Calls in flight at the kill come back after the ack wait (30 s).
    let deadline = Duration::from_secs(45);
    assert!(
        eventually(deadline, || {
            let got = cb.got.lock().unwrap();
            ids.iter().all(|id| got.iter().any(|c| c.headers.get("x-call-id") == Some(id)))
        }),
        "every 202 delivered after the restart"
    );
    // Dead letters live in NATS too.
    let k = key();
    let r = gw.request("POST", &format!("/async-function/up/flaky?key={k}&fail=1000&code=502"), &[], b"");
    let id = r.header("x-call-id").unwrap().to_string();
    assert!(eventually(T, || gw.get("/system/async/dead-letters").text().contains(&id)), "{}", gw.get("/system/async/dead-letters").text());
    assert_eq!(gw.request("DELETE", &format!("/system/async/dead-letters/{id}"), &[], b"").status, 202);
    assert!(!gw.get("/system/async/dead-letters").text().contains(&id));
}

#[test]
fn n45_two_gateways_on_one_stream_run_each_call_once() {
    let nats = NatsServer::start();
    let a = with_nats(open_gateway(), &nats).start();
    let b = with_nats(open_gateway(), &nats).start();
    for gw in [&a, &b] {
        deploy_upstream(gw, "up", json!({}));
    }
    let cb = Receiver::start(vec![]);
    let mut ids = std::collections::HashSet::new();
    for i in 0..40 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = gw.request("POST", "/async-function/up/slow?ms=20", &[("X-Callback-Url", &cb.url())], b"");
        assert_eq!(r.status, 202);
        ids.insert(r.header("x-call-id").unwrap().to_string());
    }
    let got = cb.wait(40);
    std::thread::sleep(Duration::from_millis(500));
    let got_now = cb.got.lock().unwrap().clone();
    assert_eq!(got_now.len(), 40, "each call called back once: {}", got_now.len());
    let seen: std::collections::HashSet<String> = got.iter().filter_map(|c| c.headers.get("x-call-id").cloned()).collect();
    assert_eq!(seen, ids);
    let served_a = a.get("/system/functions").json()[0]["invocationCount"].as_f64().unwrap_or(0.0);
    let served_b = b.get("/system/functions").json()[0]["invocationCount"].as_f64().unwrap_or(0.0);
    assert_eq!(served_a + served_b, 40.0, "the work was shared: {served_a} + {served_b}");
}

#[test]
fn n63_queue_worker_runs_calls_and_replaces_a_killed_one() {
    let nats = NatsServer::start();
    let gw = with_nats(open_gateway(), &nats).env("async_workers", "false").start();
    deploy_upstream(&gw, "up", json!({}));
    let worker = |_: ()| {
        with_nats(open_gateway(), &nats)
            .arg("queue-worker")
            .env("gateway_url", &format!("http://127.0.0.1:{}", gw.port))
            .env("metrics_port", &free_port().to_string())
            .no_wait()
            .start()
    };
    let cb = Receiver::start(vec![]);
    let r = gw.request("POST", "/async-function/up/info", &[("X-Callback-Url", &cb.url())], b"w");
    assert_eq!(r.status, 202);
    std::thread::sleep(Duration::from_millis(500));
    assert!(cb.got.lock().unwrap().is_empty(), "the gateway has no workers");
    let mut w1 = worker(());
    let got = cb.wait(1);
    assert_eq!(got[0].headers.get("x-function-status").map(String::as_str), Some("200"));
    // A worker killed mid-call: the call runs again on another worker (after the ack wait).
    let k = key();
    let r = gw.request("POST", &format!("/async-function/up/flaky?key={k}&fail=0"), &[("X-Callback-Url", &cb.url())], b"");
    assert_eq!(r.status, 202);
    cb.wait(2);
    let r = gw.request("POST", "/async-function/up/slow?ms=3000", &[("X-Callback-Url", &cb.url())], b"");
    let id = r.header("x-call-id").unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1000));
    w1.signal(libc::SIGKILL);
    w1.wait_exit(T);
    let _w2 = worker(());
    assert!(
        eventually(Duration::from_secs(45), || cb.got.lock().unwrap().iter().any(|c| c.headers.get("x-call-id") == Some(&id))),
        "the interrupted call ran again"
    );
}

/// A `queue-worker` reads `com.openfaas.async.max_inflight` through `gateway_url` with the
/// gateway's credentials; calls held back by that limit do not use up their retries.
#[test]
fn n64_queue_worker_honours_max_inflight_and_keeps_attempts() {
    let nats = NatsServer::start();
    let gw = fast_retries(with_nats(gateway(), &nats)).env("async_workers", "false").start();
    let secrets = gw.tmp.join("secrets");
    let auth = basic_auth_from(&secrets);
    let mut d = upstream_function("one");
    d["labels"] = json!({"com.openfaas.async.max_inflight": "1"});
    let r = gw.request("POST", "/system/functions", &[("Authorization", &auth), ("Content-Type", "application/json")], d.to_string().as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(eventually(T, || gw.request("GET", "/function/one/info", &[], b"").status == 200), "deployed");
    // Without the credentials the worker refuses to start, with its reason.
    let empty = temp_dir("no-secrets");
    let out = with_nats(gateway(), &nats).arg("queue-worker").env("secret_mount_path", empty.to_str().unwrap()).no_wait().run_to_exit(T);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("basic_auth=true but no credentials in"), "{}", out.stderr);
    let cb = Receiver::start(vec![]);
    let k = key();
    let mut ids = Vec::new();
    for _ in 0..8 {
        let r = gw.request("POST", &format!("/async-function/one/concurrency?key={k}&ms=300"), &[("X-Callback-Url", &cb.url())], b"");
        ids.push(r.header("x-call-id").unwrap().to_string());
    }
    // Queued behind 2.4 s of serial calls: refused many times, then 503 once, then 200.
    for i in 0..4 {
        let r = gw.request("POST", &format!("/async-function/one/flaky?key={k}{i}&fail=1"), &[("X-Callback-Url", &cb.url())], b"");
        ids.push(r.header("x-call-id").unwrap().to_string());
    }
    let _worker = fast_retries(with_nats(gateway(), &nats))
        .arg("queue-worker")
        .env("secret_mount_path", secrets.to_str().unwrap())
        .env("async_max_inflight", "8")
        .env("async_max_retries", "1")
        .env("gateway_url", &format!("http://127.0.0.1:{}", gw.port))
        .env("metrics_port", &free_port().to_string())
        .no_wait()
        .start();
    let got = cb.wait(12);
    for c in &got {
        assert_eq!(c.headers.get("x-function-status").map(String::as_str), Some("200"), "{:?}", c.headers.get("x-call-id"));
    }
    assert_eq!(gw.get(&format!("/function/one/concurrency-max?key={k}")).text(), "1", "never overlapped");
}

// ---- bursts: 1,000 calls, crashes in the middle ----

/// Sends `n` async calls from 4 threads to `port`; returns (call id, body) of every 202.
fn burst(port: u16, n: usize, tag: &str, cb: &str) -> Vec<(String, String)> {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (tag, cb) = (tag.to_string(), cb.to_string());
            std::thread::spawn(move || {
                let mut ok = Vec::new();
                for i in (t..n).step_by(4) {
                    let body = format!("{tag}-{i}");
                    if let Ok(r) = try_request(port, "POST", "/async-function/up/echo", &[("X-Callback-Url", &cb)], body.as_bytes()) {
                        if r.status == 202 {
                            ok.push((r.header("x-call-id").unwrap().to_string(), body));
                        }
                    }
                }
                ok
            })
        })
        .collect();
    threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
}

/// Every accepted call called back with its own body; duplicates only up to `dup_allowed`.
fn check_delivery(cb: &Receiver, accepted: &[(String, String)], dup_allowed: usize, limit: Duration) {
    let ids: HashMap<&str, &str> = accepted.iter().map(|(i, b)| (i.as_str(), b.as_str())).collect();
    let all = eventually(limit, || {
        let got = cb.got.lock().unwrap();
        let seen: std::collections::HashSet<&str> = got.iter().filter_map(|c| c.headers.get("x-call-id").map(String::as_str)).collect();
        ids.keys().all(|i| seen.contains(i))
    });
    let got = cb.got.lock().unwrap().clone();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for c in &got {
        let id = c.headers.get("x-call-id").cloned().unwrap_or_default();
        if let Some(body) = ids.get(id.as_str()) {
            assert_eq!(String::from_utf8_lossy(&c.body), *body, "{id}: its own body");
            assert_eq!(c.headers.get("x-function-status").map(String::as_str), Some("200"), "{id}");
        }
        *per_id.entry(id).or_default() += 1;
    }
    let missing = ids.keys().filter(|i| !per_id.contains_key(**i)).count();
    assert!(all, "{missing} of {} accepted calls never called back", ids.len());
    let dups: usize = per_id.values().map(|n| n - 1).sum();
    eprintln!("{} accepted, {} callbacks, {dups} duplicates (allowed {dup_allowed})", ids.len(), got.len());
    assert!(dups <= dup_allowed, "{dups} duplicate callbacks");
}

#[test]
fn b01_thousand_calls_embedded_with_a_crash() {
    let state = temp_dir("burst-embedded");
    let s = state.to_str().unwrap();
    let mut gw = open_gateway().env("state_dir", s).env("async_max_inflight", "8").start();
    deploy_upstream(&gw, "up", json!({}));
    let cb = Receiver::start(vec![]);
    let mut accepted = burst(gw.port, 500, "a", &cb.url());
    assert_eq!(accepted.len(), 500, "every call accepted");
    gw.signal(libc::SIGKILL);
    gw.wait_exit(T);
    let gw = open_gateway().env("state_dir", s).env("async_max_inflight", "8").env("metrics_port", &free_port().to_string()).start();
    accepted.extend(burst(gw.port, 500, "b", &cb.url()));
    assert_eq!(accepted.len(), 1000);
    // Calls running at the kill may run again (at least once): at most async_max_inflight.
    check_delivery(&cb, &accepted, 8, Duration::from_secs(60));
    let m = gw.metrics_port.unwrap();
    assert!(
        eventually(T, || request(m, "GET", "/metrics", &[], b"").text().contains("gateway_async_queue_depth 0\n")),
        "drained queue reads 0: {}",
        request(m, "GET", "/metrics", &[], b"").text()
    );
}

#[test]
fn b02_thousand_calls_nats_with_restarts() {
    let port = free_port();
    let store = temp_dir("burst-nats");
    let mut nats = NatsServer::start_on(port, store.clone());
    let state = temp_dir("burst-nats-gw");
    let s = state.to_str().unwrap();
    let start = |nats: &NatsServer| with_nats(open_gateway(), nats).env("state_dir", s).env("async_max_inflight", "8").start();
    let mut gw = start(&nats);
    deploy_upstream(&gw, "up", json!({}));
    let cb = Receiver::start(vec![]);
    let mut accepted = burst(gw.port, 400, "a", &cb.url());
    assert_eq!(accepted.len(), 400);
    // NATS restarted mid-burst: calls during the gap get 503, none accepted is lost.
    let during = {
        let port = gw.port;
        let url = cb.url();
        std::thread::spawn(move || burst(port, 200, "b", &url))
    };
    nats.shut_down();
    std::thread::sleep(Duration::from_millis(300));
    let nats = NatsServer::start_on(port, store);
    accepted.extend(during.join().unwrap());
    // The gateway killed mid-burst, then restarted.
    accepted.extend(burst(gw.port, 200, "c", &cb.url()));
    // Calls that finished while NATS was down could not be acknowledged: they run again
    // (at least once), and the gateway logged each.
    let unacked = gw.log().matches("async queue:").count();
    gw.signal(libc::SIGKILL);
    gw.wait_exit(T);
    let gw = start(&nats);
    accepted.extend(burst(gw.port, 200, "d", &cb.url()));
    assert!(accepted.len() >= 800, "most calls accepted: {}", accepted.len());
    // Records handed out at the kill return after the ack wait (30 s).
    check_delivery(&cb, &accepted, 8 + unacked, Duration::from_secs(90));
}

#[test]
fn b03_thousand_calls_nats_with_a_worker_killed() {
    let nats = NatsServer::start();
    let gw = with_nats(open_gateway(), &nats).env("async_workers", "false").start();
    deploy_upstream(&gw, "up", json!({}));
    let worker = || {
        with_nats(open_gateway(), &nats)
            .arg("queue-worker")
            .env("async_max_inflight", "8")
            .env("gateway_url", &format!("http://127.0.0.1:{}", gw.port))
            .env("metrics_port", &free_port().to_string())
            .no_wait()
            .start()
    };
    let (mut w1, _w2) = (worker(), worker());
    let cb = Receiver::start(vec![]);
    let during = {
        let (port, url) = (gw.port, cb.url());
        std::thread::spawn(move || burst(port, 1000, "w", &url))
    };
    // Killed while the burst is being worked through, then replaced.
    assert!(eventually(T, || cb.got.lock().unwrap().len() >= 200), "workers started delivering");
    w1.signal(libc::SIGKILL);
    w1.wait_exit(T);
    let _w3 = worker();
    let accepted = during.join().unwrap();
    assert_eq!(accepted.len(), 1000, "every call accepted");
    // Records the killed worker held return after the ack wait (30 s).
    check_delivery(&cb, &accepted, 8, Duration::from_secs(90));
}

/// An https callback: verified against the trusted certificates (`SSL_CERT_FILE` here).
#[test]
fn a41_https_callback() {
    use rustls::pki_types::pem::PemObject;
    let dir = temp_dir("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(&cert).unwrap().map(Result::unwrap).collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let cb = Receiver::start_with(vec![], Some(Arc::new(cfg)));
    let gw = fast_retries(open_gateway()).env("async_max_retries", "1").env("SSL_CERT_FILE", cert.to_str().unwrap()).start();
    deploy_upstream(&gw, "up", json!({}));
    let url = format!("https://localhost:{}/cb", cb.port);
    let r = gw.request("POST", "/async-function/up/echo", &[("X-Callback-Url", &url)], b"secure");
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(eventually(Duration::from_secs(5), || !cb.got.lock().unwrap().is_empty()), "dead letters: {}", gw.get("/system/async/dead-letters").text());
    let got = cb.wait(1);
    assert_eq!((got[0].body.as_slice(), got[0].headers.get("x-function-status").map(String::as_str)), (&b"secure"[..], Some("200")));
    // An untrusted certificate is a callback failure (a dead letter once retries are spent).
    let gw2 = fast_retries(open_gateway()).env("async_max_retries", "1").start();
    deploy_upstream(&gw2, "up", json!({}));
    let r = gw2.request("POST", "/async-function/up/echo", &[("X-Callback-Url", &url)], b"x");
    let id = r.header("x-call-id").unwrap().to_string();
    assert!(eventually(T, || gw2.get("/system/async/dead-letters").text().contains(&id)));
    let dl = gw2.get("/system/async/dead-letters").json()[0].clone();
    assert!(dl["lastError"].as_str().unwrap().starts_with("callback failed: TLS"), "{dl}");
}
