//! streaming, serializing and classic modes, and the CGI environment (checklist 14-21, 33-40).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn c14_streaming_cat() {
    let wd = watchdog("cat").env("content_type", "text/x-test").start();
    let r = wd.post("/", b"hello body");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello body");
    assert_eq!(r.header("content-type"), Some("text/x-test"));
    assert_eq!(r.header("x-duration-seconds"), None);
}

#[test]
fn c15_streaming_failures_before_output() {
    let wd = watchdog("sh -c 'exit 3'").start();
    let r = wd.post("/", b"");
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), "exit status 3\n");
    assert_eq!(r.header("x-openfaas-internal"), Some("of-watchdog"));
    assert!(r.header("x-duration-seconds").is_some());
    let wd = watchdog("/no/such/program").start();
    let r = wd.post("/", b"");
    assert_eq!(r.status, 500);
    assert!(r.text().starts_with("cannot start /no/such/program: "), "{}", r.text());
}

#[test]
fn c16_streaming_timeout_before_output() {
    let wd = watchdog("sleep 5").env("exec_timeout", "1s").start();
    let r = wd.post("/", b"");
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), "exec_timeout exceeded after 1s\n");
    assert!(r.elapsed >= Duration::from_millis(900) && r.elapsed < Duration::from_millis(2500), "{:?}", r.elapsed);
}

#[test]
fn c17_streaming_output_then_failure() {
    let wd = watchdog("sh -c 'echo partial; exit 3'").start();
    let r = wd.post("/", b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "partial\n");
    wd.wait_log("exit status 3", T);
}

#[test]
fn c18_streaming_timeout_kills_the_group() {
    let marker = format!("sleep 5.{}", std::process::id() % 1000 + 1000);
    let wd = watchdog(&format!("sh -c 'echo x; {marker}'")).env("exec_timeout", "1s").start();
    let r = wd.post("/", b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "x\n");
    assert!(r.elapsed < Duration::from_millis(2500), "{:?}", r.elapsed);
    assert!(eventually(Duration::from_secs(2), || pids_matching(&marker).is_empty()), "sleep survived");
}

#[test]
fn grandchild_holding_stdout_past_the_timeout() {
    // The direct child exits at once; a background grandchild keeps stdout open.
    let marker = format!("sleep 7.{}", std::process::id() % 1000 + 2000);
    let wd = watchdog(&format!("sh -c 'echo start; {marker} & exit 0'")).env("exec_timeout", "1s").start();
    let r = wd.post("/", b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "start\n");
    assert!(r.elapsed < Duration::from_millis(2500), "{:?}", r.elapsed);
    assert!(eventually(Duration::from_secs(2), || pids_matching(&marker).is_empty()), "grandchild survived");
}

#[test]
fn c19_streaming_chunk_before_exit() {
    let wd = watchdog("sh -c 'echo first; sleep 1; echo second'").start();
    let mut s = TcpStream::connect(("127.0.0.1", wd.port)).unwrap();
    s.write_all(&raw_request("POST", "/", &[], b"")).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("first") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(started.elapsed() < Duration::from_millis(700), "first chunk took {:?}", started.elapsed());
    assert!(!String::from_utf8_lossy(&got).contains("second"));
    s.read_to_end(&mut got).unwrap();
    assert!(String::from_utf8_lossy(&got).contains("second"));
}

#[test]
fn c20_serializing() {
    let wd = watchdog("cat").env("mode", "serializing").start();
    let r = wd.post("/", b"data");
    assert_eq!((r.status, r.text().as_str()), (200, "data"));
    let d = r.header("x-duration-seconds").unwrap();
    assert_eq!(d.split('.').nth(1).map(str::len), Some(6), "{d}");
    let wd = watchdog("sh -c 'echo out; exit 3'").env("mode", "serializing").start();
    let r = wd.post("/", b"");
    assert_eq!((r.status, r.text().as_str()), (500, "exit status 3\n"));
    assert!(r.header("x-duration-seconds").is_some());
    wd.wait_log("POST / - 500", T);
    let wd = watchdog("sleep 5").env("mode", "serializing").env("exec_timeout", "500ms").start();
    let r = wd.post("/", b"");
    assert_eq!(r.status, 504);
    assert!(r.elapsed < Duration::from_millis(2000));
}

#[test]
fn c21_serializing_chunked_body() {
    let wd = watchdog("cat").env("mode", "serializing").start();
    let body = chunked(&[b"hello ", b"chunked ", b"world"]);
    let r = wd.request("POST", "/", &[("Transfer-Encoding", "chunked")], &body);
    assert_eq!(r.text(), "hello chunked world");
}

#[test]
fn ten_megabytes_through_every_fork_mode() {
    let big: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    for mode in ["streaming", "serializing", "classic"] {
        let wd = watchdog("cat").env("mode", mode).start();
        let r = wd.post("/", &big);
        assert_eq!(r.status, 200, "{mode}");
        assert!(r.body == big, "{mode}: {} bytes back", r.body.len());
    }
}

#[test]
fn two_hundred_concurrent_requests() {
    let wd = watchdog("cat").start();
    let port = wd.port;
    let handles: Vec<_> = (0..200)
        .map(|i| std::thread::spawn(move || request(port, "POST", "/", &[], format!("req-{i}").as_bytes())))
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.join().unwrap();
        assert_eq!((r.status, r.text()), (200, format!("req-{i}")));
    }
}

#[test]
fn c33_classic_cat() {
    let wd = watchdog("cat").env("mode", "classic").start();
    let r = wd.request("POST", "/", &[("Content-Type", "application/x-thing")], b"classic");
    assert_eq!((r.status, r.text().as_str()), (200, "classic"));
    assert_eq!(r.header("content-type"), Some("application/x-thing"));
    assert!(r.header("x-duration-seconds").is_some());
    wd.wait_log("Forking fprocess.", T);
    wd.wait_log("Wrote 7 Bytes - Duration: ", T);
    for m in ["HEAD", "OPTIONS", "UNKNOWN"] {
        let r = wd.request(m, "/", &[], b"");
        assert_eq!(r.status, 405, "{m}");
        assert!(r.body.is_empty());
    }
}

#[test]
fn c34_classic_timeout() {
    let wd = watchdog("sleep 2").env("mode", "classic").env("exec_timeout", "100ms").start();
    let r = wd.post("/", b"");
    assert_eq!((r.status, r.text().as_str()), (408, "Killed process.\n"));
    assert!(r.elapsed < Duration::from_millis(800), "{:?}", r.elapsed);
    wd.wait_log("Killing process: sleep 2", T);
}

#[test]
fn c35_classic_failures() {
    let wd = watchdog("sh -c 'echo out; echo err >&2; exit 3'").env("mode", "classic").start();
    let r = wd.post("/", b"");
    assert_eq!(r.status, 500);
    let t = r.text();
    assert!(t.starts_with("exit status 3\n") && t.contains("out\n") && t.contains("err\n"), "{t}");
    let wd = watchdog("sh -c 'echo out; echo err >&2'").env("mode", "classic").env("combine_output", "false").start();
    let r = wd.post("/", b"");
    assert_eq!((r.status, r.text().as_str()), (200, "out\n"));
    wd.wait_log("stderr: err", T);
}

#[test]
fn c36_classic_marshal_and_ready_forked() {
    let wd = watchdog("cat").env("mode", "classic").env("marshal_request", "true").start();
    let r = wd.request("POST", "/", &[("X-Test", "1")], b"hi");
    let t = r.text();
    assert!(t.contains("\"X-Test\":[\"1\"]"), "{t}");
    assert!(t.contains("\"body\":{\"raw\":\"aGk=\"}"), "{t}");
    let wd = watchdog("sh -c 'echo path=$Http_Path'").env("mode", "classic").start();
    let r = wd.get("/_/ready");
    assert_eq!((r.status, r.text().as_str()), (200, "path=/_/ready\n"));
}

fn env_of(wd: &Watchdog, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::collections::HashMap<String, String> {
    let r = wd.request(method, path, headers, body);
    assert_eq!(r.status, 200, "{}", r.text());
    env_map(&r.text())
}

#[test]
fn c37_c38_cgi_headers_path_query() {
    for mode in ["streaming", "serializing", "classic"] {
        let wd = watchdog("env").env("mode", mode).start();
        let mut s = TcpStream::connect(("127.0.0.1", wd.port)).unwrap();
        s.write_all(b"POST /a/b%20c?x=1 HTTP/1.1\r\nHost: h\r\nX-Custom-Header: v\r\nX-Custom-Header: w\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let env = env_map(&parse_response(&raw, false).unwrap().text());
        assert_eq!(env.get("Http_X_Custom_Header").map(String::as_str), Some("v"), "{mode}");
        assert_eq!(env.get("Http_Path").map(String::as_str), Some("/a/b c"), "{mode}");
        assert_eq!(env.get("Http_Query").map(String::as_str), Some("x=1"), "{mode}");
        assert_eq!(env.get("Http_Method").map(String::as_str), Some("POST"), "{mode}");
    }
}

#[test]
fn c39_streaming_lengths() {
    for mode in ["streaming", "serializing"] {
        let wd = watchdog("env").env("mode", mode).start();
        let env = env_of(&wd, "POST", "/", &[], b"test");
        assert_eq!(env.get("Http_Content_Length").map(String::as_str), Some("4"));
        assert!(!env.contains_key("Http_Host") && !env.contains_key("Http_ContentLength"), "{mode}");
        let env = env_of(&wd, "POST", "/", &[("Transfer-Encoding", "chunked")], &chunked(&[b"te", b"st"]));
        assert_eq!(env.get("Http_Transfer_Encoding").map(String::as_str), Some("chunked"), "{mode}");
    }
}

#[test]
fn c40_classic_host_and_lengths() {
    let wd = watchdog("env").env("mode", "classic").start();
    let env = env_of(&wd, "POST", "/", &[], b"test");
    assert_eq!(env.get("Http_Host").map(String::as_str), Some("127.0.0.1"));
    assert_eq!(env.get("Http_ContentLength").map(String::as_str), Some("4"));
    assert_eq!(env.get("Http_Content_Length").map(String::as_str), Some("4"));
    let env = env_of(&wd, "POST", "/", &[("Transfer-Encoding", "chunked")], &chunked(&[b"x"]));
    assert_eq!(env.get("Http_ContentLength").map(String::as_str), Some("-1"));
    assert_eq!(env.get("Http_Content_Length").map(String::as_str), Some("-1"));
    let wd = watchdog("env").env("mode", "classic").env("cgi_headers", "false").start();
    let env = env_of(&wd, "POST", "/", &[("X-A", "1")], b"");
    assert!(env.keys().all(|k| !k.starts_with("Http_")), "{env:?}");
}

#[test]
fn header_limits() {
    let wd = watchdog("cat").start();
    let ok = "a".repeat(60 * 1024);
    let r = wd.request("POST", "/", &[("X-Big", &ok)], b"x");
    assert_eq!(r.status, 200, "60 KiB of headers are accepted");
    let big = "a".repeat(200 * 1024);
    let r = wd.request("POST", "/", &[("X-Big", &big)], b"x");
    assert_eq!(r.status, 431);
}

#[test]
fn read_timeout_bounds_a_stalled_body() {
    let wd = watchdog("cat").env("read_timeout", "1s").env("mode", "serializing").start();
    let mut s = TcpStream::connect(("127.0.0.1", wd.port)).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part").unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    s.set_read_timeout(Some(T)).unwrap();
    let _ = s.read_to_end(&mut got);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let r = parse_response(&got, false).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
}
