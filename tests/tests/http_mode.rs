//! http mode and static mode (checklist 22-32).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn c22_not_healthy_until_upstream_listens() {
    let (setup, _) = http_mode(&["--delay-listen-ms", "1500"]);
    let wd = setup.start();
    let r = wd.get("/_/health");
    assert_eq!(r.status, 503);
    assert!(!wd.lock_file().exists());
    // A request sent now waits for readiness, then succeeds.
    let started = Instant::now();
    let r = wd.get("/");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello"));
    assert!(started.elapsed() > Duration::from_millis(500));
    assert!(wd.lock_file().exists());
    assert_eq!(wd.get("/_/health").status, 200);
}

#[test]
fn c23_upstream_never_listens() {
    let out = watchdog("sleep 30")
        .env("mode", "http")
        .env("upstream_url", &format!("http://127.0.0.1:{}", free_port()))
        .env("startup_timeout", "1s")
        .run_to_exit(T);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("did not accept connections within 1s"), "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(4));
}

#[test]
fn c24_pass_through() {
    let (setup, _) = http_mode(&[]);
    let wd = setup.start();
    wd.wait_healthy(T);
    let r = wd.request("POST", "/status/201", &[("Host", "client.example")], b"");
    assert_eq!((r.status, r.text().as_str()), (201, "status 201"));
    assert_eq!(r.header("x-custom"), Some("yes"));
    assert!(r.header("x-duration-seconds").is_some());
    let r = wd.get("/info?q=1");
    let t = r.text();
    assert!(t.contains("target /info?q=1"), "{t}");
    assert!(t.contains("host: 127.0.0.1\n"), "Host is the client's: {t}");
    wd.wait_log("POST /status/201 - 201 Created - ContentLength: 10B", T);
}

#[test]
fn c25_chunked_by_default_content_length_when_buffered() {
    let (setup, _) = http_mode(&[]);
    let wd = setup.start();
    wd.wait_healthy(T);
    let t = wd.post("/info", b"0123456789").text();
    assert!(t.contains("transfer-encoding: chunked"), "{t}");
    assert!(t.contains("body-bytes 10"), "{t}");
    let t = wd.get("/info").text();
    assert!(!t.contains("transfer-encoding"), "GET without a body stays without one: {t}");
}

#[test]
fn c26_deadlines() {
    let (setup, _) = http_mode(&[]);
    let wd = setup.env("exec_timeout", "2s").start();
    wd.wait_healthy(T);
    let r = wd.get("/slow?ms=5000");
    assert_eq!(r.status, 504);
    assert!(r.elapsed >= Duration::from_millis(1900) && r.elapsed < Duration::from_millis(3000), "{:?}", r.elapsed);
    assert_eq!(r.header("x-openfaas-internal"), Some("of-watchdog"));
    assert!(r.header("x-duration-seconds").is_some());
    let r = wd.request("GET", "/slow?ms=5000", &[("X-Timeout", "500ms")], b"");
    assert_eq!(r.status, 504);
    assert!(r.elapsed < Duration::from_millis(1200), "{:?}", r.elapsed);
    let r = wd.request("GET", "/slow?ms=5000", &[("X-Timeout", "10s")], b"");
    assert_eq!(r.status, 504);
    assert!(r.elapsed < Duration::from_millis(3000), "{:?}", r.elapsed);
}

#[test]
fn c27_function_exit() {
    let (setup, _) = http_mode(&[]);
    let mut wd = setup.start();
    wd.wait_healthy(T);
    let pid: i32 = wd.get("/pid").text().parse().unwrap();
    unsafe_kill(pid, libc::SIGKILL);
    let status = wd.wait_exit(T).expect("watchdog exits");
    assert_eq!(status.code(), Some(1));
    assert!(wd.log().contains("Forked function has terminated: signal: killed"), "{}", wd.log());
    // A function that exits 0 after starting a server in the background leaves the watchdog up.
    let (wd, _server) = background_upstream();
    wd.wait_log("Forked function has terminated: exit status 0", T);
    assert_eq!(wd.get("/").text(), "Hello");
}

#[test]
fn c28_connection_refused_after_ready() {
    let (wd, server) = background_upstream();
    drop(server);
    std::thread::sleep(Duration::from_millis(700)); // past the idle pool timeout
    let r = wd.get("/");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-openfaas-internal"), Some("of-watchdog"));
    assert!(r.text().starts_with("upstream error: "), "{}", r.text());
}

#[test]
fn c29_sse_bypass() {
    let (setup, _) = http_mode(&[]);
    let wd = setup.env("exec_timeout", "1s").start();
    wd.wait_healthy(T);
    let mut s = TcpStream::connect(("127.0.0.1", wd.port)).unwrap();
    s.write_all(&raw_request("GET", "/sse?n=3&ms=700", &[("Accept", "text/event-stream")], b"")).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, "data: 0");
    assert!(started.elapsed() < Duration::from_millis(500), "first event flushed at once");
    s.read_to_end(&mut got).unwrap();
    let r = parse_response(&got, false).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("data: 2"), "not cut by exec_timeout=1s: {}", r.text());
    assert_eq!(r.header("x-duration-seconds"), None);
    let t = wd.request("GET", "/info", &[("Accept", "application/x-ndjson")], b"").text();
    assert!(t.contains("x-forwarded-for: 127.0.0.1"), "{t}");
    // Unreachable upstream on the bypass path: 502 (the server ran in the background, so the
    // watchdog stays up when it is killed).
    let (wd, server) = background_upstream();
    drop(server);
    std::thread::sleep(Duration::from_millis(700));
    let r = wd.request("GET", "/sse", &[("Accept", "text/event-stream")], b"");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("x-openfaas-internal"), Some("of-watchdog"));
    wd.wait_log("GET /sse - 502 Bad Gateway", T);
}

#[test]
fn c30_websocket_tunnel() {
    let (setup, _) = http_mode(&[]);
    let wd = setup.start();
    wd.wait_healthy(T);
    assert_websocket_echo(wd.port, "/ws");
}

#[test]
fn c31_localhost_upstream() {
    let port = free_port();
    let wd = watchdog(&format!("{} --port {}", upstream_path().display(), port))
        .env("mode", "http")
        .env("upstream_url", &format!("http://localhost:{port}/"))
        .start();
    wd.wait_healthy(T);
    let t = wd.get("/info").text();
    assert!(t.contains("target /info\n"), "no double slash with a trailing / in upstream_url: {t}");
}

#[test]
fn ten_megabytes_through_http_mode() {
    let big: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    for buffered in ["false", "true"] {
        let (setup, _) = http_mode(&[]);
        let wd = setup.env("http_buffer_req_body", buffered).start();
        wd.wait_healthy(T);
        let r = wd.post("/echo", &big);
        assert_eq!(r.status, 200);
        assert!(r.body == big, "buffered={buffered}: {} bytes back", r.body.len());
    }
}

#[test]
fn c32_static() {
    let dir = temp_dir("static");
    std::fs::write(dir.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(dir.join("style.css"), "body{}").unwrap();
    std::fs::create_dir(dir.join("empty")).unwrap();
    let secret = temp_dir("secret");
    std::fs::write(secret.join("x"), "secret").unwrap();
    std::os::unix::fs::symlink(secret.join("x"), dir.join("link")).unwrap();
    let wd = bare().env("mode", "static").env("static_path", dir.to_str().unwrap()).start();
    let r = wd.get("/style.css");
    assert_eq!((r.status, r.text().as_str()), (200, "body{}"));
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(r.header("last-modified").is_some());
    let r = wd.get("/");
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>home</h1>"));
    assert_eq!(wd.get("/index.html").status, 301);
    for bad in ["/../x", "/%2e%2e/x", "/a/%2E%2E/%2e%2e/x", "/link", "/empty/"] {
        assert_eq!(wd.get(bad).status, 404, "{bad}");
    }
    assert_eq!(wd.post("/style.css", b"").status, 405);
    let r = wd.request("GET", "/style.css", &[("Range", "bytes=0-3")], b"");
    assert_eq!((r.status, r.text().as_str()), (206, "body"));
    let lm = wd.get("/style.css").header("last-modified").unwrap().to_string();
    assert_eq!(wd.request("GET", "/style.css", &[("If-Modified-Since", &lm)], b"").status, 304);
    assert!(wd.log().contains(&format!("Serving files at: {}", dir.display())));
}

#[test]
fn ten_megabyte_static_file_and_concurrency() {
    let dir = temp_dir("static-big");
    let big: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 241) as u8).collect();
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    let wd = bare().env("mode", "static").env("static_path", dir.to_str().unwrap()).start();
    let r = wd.get("/big.bin");
    assert_eq!(r.status, 200);
    assert!(r.body == big, "{} bytes", r.body.len());
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
}

#[test]
fn two_hundred_concurrent_requests_http_mode() {
    let (setup, _) = http_mode(&[]);
    let wd = setup.start();
    wd.wait_healthy(T);
    let port = wd.port;
    let handles: Vec<_> = (0..200)
        .map(|i| std::thread::spawn(move || request(port, "POST", "/echo", &[], format!("req-{i}").as_bytes())))
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.join().unwrap();
        assert_eq!((r.status, r.text()), (200, format!("req-{i}")));
    }
}
