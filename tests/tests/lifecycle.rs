//! Health, readiness, limits, signals and processes (checklist 41-48, 56).

use std::time::{Duration, Instant};

use e2e::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn c41_health_follows_the_lock_file() {
    let wd = watchdog("cat").start();
    let r = wd.get("/_/health");
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    std::fs::remove_file(wd.lock_file()).unwrap();
    let r = wd.get("/_/health");
    assert_eq!(r.status, 503);
    assert!(r.body.is_empty());
    assert_eq!(wd.post("/_/health", b"").status, 405);
}

#[test]
fn c42_suppress_lock() {
    let wd = watchdog("cat").env("suppress_lock", "true").start();
    assert_eq!(wd.get("/_/health").status, 200);
    assert!(!wd.lock_file().exists());
    assert!(!wd.log().contains("Writing lock-file"));
}

#[test]
fn c43_ready() {
    let mut wd = watchdog("sleep 2").env("max_inflight", "1").env("healthcheck_interval", "3s").start();
    let r = wd.get("/_/ready");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let port = wd.port;
    let busy = std::thread::spawn(move || request(port, "POST", "/", &[], b""));
    assert!(eventually(T, || wd.get("/_/ready").status == 429));
    busy.join().unwrap();
    assert_eq!(wd.get("/_/ready").status, 200);
    wd.signal(libc::SIGTERM);
    assert!(eventually(T, || wd.get("/_/ready").status == 503));
    assert_eq!(wd.wait_exit(T).and_then(|s| s.code()), Some(0));

    let (setup, _) = http_mode(&[]);
    let wd = setup.env("ready_path", "/ready").start();
    wd.wait_healthy(T);
    assert_eq!(wd.get("/_/ready").status, 204);
}

#[test]
fn c44_max_inflight_429() {
    let wd = watchdog("sleep 1").env("max_inflight", "1").env("metrics_port", &free_port().to_string()).start();
    let port = wd.port;
    let busy = std::thread::spawn(move || request(port, "POST", "/", &[], b""));
    assert!(eventually(T, || wd.get("/_/ready").status == 429));
    let r = wd.post("/", b"");
    assert_eq!(r.status, 429);
    assert_eq!(r.text(), "Concurrent request limit exceeded. Max concurrent requests: 1\n");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("x-openfaas-internal"), Some("faas-middleware"));
    assert_eq!(busy.join().unwrap().status, 200);
    // c50: the 429 is counted.
    assert!(eventually(T, || wd.metrics().contains("http_requests_total{code=\"429\",method=\"post\"} 1")), "{}", wd.metrics());
}

#[test]
fn c45_sigterm_sequence() {
    let mut wd = watchdog("cat").env("healthcheck_interval", "1s").env("write_timeout", "2s").start();
    assert!(wd.lock_file().exists());
    wd.signal(libc::SIGTERM);
    assert!(eventually(Duration::from_millis(500), || !wd.lock_file().exists()), "lock file removed at once");
    assert_eq!(wd.get("/_/health").status, 503);
    // Still serving inside healthcheck_interval.
    let r = wd.post("/", b"late");
    assert_eq!((r.status, r.text().as_str()), (200, "late"));
    let started = Instant::now();
    let status = wd.wait_exit(T).expect("exits");
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(3));
    let log = wd.log();
    assert!(log.contains("SIGTERM: no new connections in 1s"), "{log}");
    assert!(log.contains("No new connections allowed, draining: 0 requests"), "{log}");
    assert!(log.contains("Exiting. Active connections: "), "{log}");
}

#[test]
fn c46_http_function_signalled_after_drain() {
    let (setup, _) = http_mode(&[]);
    let mut wd = setup.env("healthcheck_interval", "200ms").start();
    wd.wait_healthy(T);
    let port = wd.port;
    let slow = std::thread::spawn(move || request(port, "GET", "/slow?ms=1500", &[], b""));
    std::thread::sleep(Duration::from_millis(100));
    wd.signal(libc::SIGTERM);
    let r = slow.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slow"), "in-flight request completes");
    assert_eq!(wd.wait_exit(T).and_then(|s| s.code()), Some(0));
    let log = wd.log();
    let drained = log.find("No new connections allowed").unwrap();
    let term = log.find("test-upstream: got SIGTERM").expect("function got SIGTERM");
    assert!(term > drained, "SIGTERM only after the drain:\n{log}");

    // A function that ignores SIGTERM is SIGKILLed after child_grace_period.
    let (setup, _) = http_mode(&["--ignore-sigterm"]);
    let mut wd = setup.env("healthcheck_interval", "100ms").env("child_grace_period", "500ms").start();
    wd.wait_healthy(T);
    let fn_pid: i32 = wd.get("/pid").text().parse().unwrap();
    let started = Instant::now();
    wd.signal(libc::SIGTERM);
    assert_eq!(wd.wait_exit(T).and_then(|s| s.code()), Some(0));
    assert!(started.elapsed() >= Duration::from_millis(500), "{:?}", started.elapsed());
    assert!(eventually(Duration::from_secs(2), || !alive(fn_pid)), "function was not killed");
}

#[test]
fn c47_sigint_and_function_exit_1() {
    let (setup, _) = http_mode(&["--sigterm-exit", "1"]);
    let mut wd = setup.env("healthcheck_interval", "100ms").start();
    wd.wait_healthy(T);
    wd.signal(libc::SIGINT);
    assert_eq!(wd.wait_exit(T).and_then(|s| s.code()), Some(0));
    assert!(wd.log().contains("SIGINT: no new connections in 100ms"), "{}", wd.log());
    // A second signal hurries the sequence.
    let mut wd = watchdog("cat").env("healthcheck_interval", "30s").start();
    wd.signal(libc::SIGTERM);
    wd.wait_log("SIGTERM: no new connections", T);
    let started = Instant::now();
    wd.signal(libc::SIGTERM);
    assert_eq!(wd.wait_exit(T).and_then(|s| s.code()), Some(0));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn c48_no_zombies_from_orphans() {
    let wd = watchdog("sh -c 'sleep 0.2 & echo bye'").start();
    for _ in 0..5 {
        assert_eq!(wd.post("/", b"").text(), "bye\n");
    }
    std::thread::sleep(Duration::from_millis(600));
    assert!(eventually(Duration::from_secs(2), || zombies_of(wd.pid()) == 0), "zombies: {}", zombies_of(wd.pid()));
    // Under load too.
    let port = wd.port;
    let hs: Vec<_> = (0..50).map(|_| std::thread::spawn(move || request(port, "POST", "/", &[], b""))).collect();
    for h in hs {
        assert_eq!(h.join().unwrap().status, 200);
    }
    assert!(eventually(Duration::from_secs(3), || zombies_of(wd.pid()) == 0), "zombies: {}", zombies_of(wd.pid()));
}

#[test]
fn c56_sigkill_takes_the_function_along() {
    let (setup, _) = http_mode(&[]);
    let mut wd = setup.start();
    wd.wait_healthy(T);
    let fn_pid: i32 = wd.get("/pid").text().parse().unwrap();
    wd.signal(libc::SIGKILL);
    wd.wait_exit(T);
    assert!(eventually(Duration::from_secs(1), || !alive(fn_pid)), "http function outlived the watchdog");

    let marker = format!("sleep 9.{}", std::process::id() % 1000 + 3000);
    let mut wd = watchdog(&marker).start();
    let port = wd.port;
    std::thread::spawn(move || try_request(port, "POST", "/", &[], b""));
    assert!(eventually(T, || !pids_matching(&marker).is_empty()));
    wd.signal(libc::SIGKILL);
    wd.wait_exit(T);
    assert!(eventually(Duration::from_secs(1), || pids_matching(&marker).is_empty()), "fork-mode child outlived the watchdog");
}

#[test]
fn children_get_default_signals_and_their_own_group() {
    for mode in ["streaming", "serializing", "classic"] {
        let wd = watchdog("cat /proc/self/status /proc/self/stat").env("mode", mode).start();
        let t = wd.post("/", b"").text();
        let field = |name: &str| t.lines().find(|l| l.starts_with(name)).map(|l| l.split_whitespace().nth(1).unwrap().to_string());
        assert_eq!(field("SigBlk:").as_deref(), Some("0000000000000000"), "{mode}: empty mask\n{t}");
        // SIGPIPE (13, bit 12) is back to the default; what the watchdog's own parent ignored
        // stays ignored, as across any exec.
        let ignored = u64::from_str_radix(&field("SigIgn:").unwrap(), 16).unwrap();
        assert_eq!(ignored & (1 << 12), 0, "{mode}: SIGPIPE ignored\n{t}");
        assert_eq!(field("SigCgt:").as_deref(), Some("0000000000000000"), "{mode}: no handlers\n{t}");
        // /proc/self/stat: pid (comm) state ppid pgrp ... -- the child leads its own group.
        let stat = t.lines().last().unwrap();
        let rest: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        let pid = stat.split_whitespace().next().unwrap();
        assert_eq!(rest[2], pid, "{mode}: own process group");
        assert_eq!(rest[1], wd.pid().to_string(), "{mode}: child of the watchdog");
    }
}
