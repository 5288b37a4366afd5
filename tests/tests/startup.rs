//! Configuration and start-up through the real binary (checklist 1-13, 55).

use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn c01_defaults_with_only_fprocess() {
    let wd = watchdog("cat").env("metrics_port", &free_port().to_string()).start();
    let log = wd.log();
    assert!(log.contains("Watchdog mode: streaming\tfprocess: \"cat\""), "{log}");
    assert!(log.contains("Timeouts: read: 30s write: 30s hard: 30s health: 30s"), "{log}");
    let r = wd.post("/", b"x");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert!(wd.metrics().contains("http_requests_total"));
    // The defaults of the ports themselves, read off a run without port variables.
    let out = bare().env("fprocess", "cat").env("port", "").env("metrics_port", "").arg("--help").run_to_exit(T);
    assert_eq!(out.code(), Some(0));
    assert!(out.stdout.contains("[default: 8080]") && out.stdout.contains("[default: 8081]"), "{}", out.stdout);
}

#[test]
fn c01_default_ports_are_8080_and_8081() {
    // Only when both are free here: the defaults are then observable directly.
    if std::net::TcpListener::bind("0.0.0.0:8080").is_err() || std::net::TcpListener::bind("0.0.0.0:8081").is_err() {
        eprintln!("skipped: 8080 or 8081 busy on this machine");
        return;
    }
    let wd = bare().env("fprocess", "cat").env_remove_ports().start();
    assert_eq!(wd.port, 8080);
    assert_eq!(wd.metrics_port, Some(8081));
    assert_eq!(request(8081, "GET", "/metrics", &[], b"").status, 200);
}

trait NoPorts {
    fn env_remove_ports(self) -> Self;
}
impl NoPorts for Setup {
    fn env_remove_ports(self) -> Self {
        self.env("port", "").env("metrics_port", "")
    }
}

#[test]
fn c02_aliases_win() {
    let wd = watchdog("cat").env("function_process", "echo -n alias").start();
    assert_eq!(wd.post("/", b"x").text(), "alias");
    // http_upstream_url beats upstream_url: the bogus one would never come up.
    let (setup, port) = http_mode(&[]);
    let wd = setup
        .env("upstream_url", "http://127.0.0.1:1")
        .env("http_upstream_url", &format!("http://127.0.0.1:{port}"))
        .start();
    wd.wait_healthy(T);
    assert_eq!(wd.get("/").text(), "Hello");
}

#[test]
fn c03_buffer_http_aliases() {
    for var in ["buffer_http", "http_buffer_req_body"] {
        let (setup, _) = http_mode(&[]);
        let wd = setup.env(var, "true").start();
        wd.wait_healthy(T);
        let info = wd.post("/info", b"0123456789").text();
        assert!(info.contains("content-length: 10"), "{var}: {info}");
        assert!(!info.contains("transfer-encoding"), "{var}: {info}");
    }
}

#[test]
fn c04_log_callid_aliases() {
    for var in ["log_callid", "log_call_id"] {
        let wd = watchdog("cat").env(var, "true").start();
        wd.request("POST", "/", &[("X-Call-Id", "abc-123")], b"x");
        wd.post("/", b"x");
        wd.wait_log("[abc-123]", T);
        wd.wait_log("[none]", T);
    }
    let wd = watchdog("cat").start();
    wd.request("POST", "/", &[("X-Call-Id", "abc-123")], b"x");
    wd.wait_log("POST / - 200", T);
    assert!(!wd.log().contains("[abc-123]"));
}

#[test]
fn c05_durations() {
    let wd = watchdog("cat").env("read_timeout", "10").env("write_timeout", "1m30s").env("exec_timeout", "abc").env("healthcheck_interval", "").start();
    let log = wd.log();
    assert!(log.contains("Timeouts: read: 10s write: 1m30s hard: 30s health: 1m30s"), "{log}");
    assert!(log.contains("Invalid value for exec_timeout: \"abc\", using default 30s"), "{log}");
    let wd = watchdog("sh -c 'sleep 1.2; echo done'").env("exec_timeout", "0").start();
    let r = wd.post("/", b"");
    assert_eq!((r.status, r.text().as_str()), (200, "done\n"));
    assert!(wd.log().contains("hard: 0s"));
}

#[test]
fn c06_fatal_write_timeout_and_missing_fprocess() {
    let out = watchdog("cat").env("write_timeout", "0").no_wait().run_to_exit(T);
    assert_eq!(out.code(), Some(1));
    assert_eq!(out.stderr.trim(), "Error loading config: HTTP write timeout must be over 0s");
    let out = bare().no_wait().run_to_exit(T);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("provide a \"function_process\" or \"fprocess\" environmental variable for your function"));
}

#[test]
fn c07_unknown_modes_and_http_without_upstream() {
    for m in ["afterburn", "inproc", "bogus"] {
        let out = watchdog("cat").env("mode", m).no_wait().run_to_exit(T);
        assert_eq!(out.code(), Some(1), "{m}");
        assert_eq!(
            out.stderr.trim(),
            format!("Error loading config: unknown watchdog mode \"{m}\": use streaming, serializing, http, static or classic")
        );
        assert!(!out.stderr.contains("panic"));
    }
    let out = watchdog("cat").env("mode", "http").no_wait().run_to_exit(T);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("mode=http needs upstream_url: the address the function listens on"));
}

#[test]
fn c08_flag_beats_variable() {
    let p = free_port();
    let wd = watchdog("cat").env("port", &free_port().to_string()).arg("--port").arg(&p.to_string()).start();
    assert_eq!(wd.port, p);
    assert_eq!(wd.post("/", b"hi").text(), "hi");
    // Single-dash Go style and a flag for an aliased variable.
    let wd = watchdog("cat").env("function_process", "echo -n env").arg("-fprocess=echo -n flag").start();
    assert_eq!(wd.post("/", b"").text(), "flag");
    // A boolean flag without a value means true.
    let wd = watchdog("cat").arg("--suppress-lock").start();
    wd.wait_healthy(T);
    assert!(!wd.lock_file().exists());
    // Unknown flag: exit 2.
    let out = watchdog("cat").arg("--no-such-flag").no_wait().run_to_exit(T);
    assert_eq!(out.code(), Some(2));
}

#[test]
fn c09_version() {
    for flag in ["-version", "--version"] {
        let out = bare().arg(flag).no_wait().run_to_exit(T);
        assert_eq!(out.code(), Some(0));
        assert!(out.stdout.starts_with("Version: ") && out.stdout.contains("\tSHA: "), "{}", out.stdout);
    }
}

#[test]
fn c10_run_healthcheck() {
    let wd = watchdog("cat").start();
    wd.wait_healthy(T);
    let check = |tmp: &std::path::Path| bare().env("TMPDIR", tmp.to_str().unwrap()).arg("-run-healthcheck").no_wait().run_to_exit(T);
    assert_eq!(check(&wd.tmp).code(), Some(0));
    let empty = temp_dir("nolock");
    let out = check(&empty);
    assert_eq!(out.code(), Some(1));
    assert_eq!(out.stderr.trim(), "unable to find lock file.");
    // Ours: with suppress_lock it asks /_/health instead.
    let wd = watchdog("cat").env("suppress_lock", "true").start();
    let out = bare()
        .env("suppress_lock", "true")
        .env("port", &wd.port.to_string())
        .env("TMPDIR", empty.to_str().unwrap())
        .arg("--run-healthcheck")
        .no_wait()
        .run_to_exit(T);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
}

#[test]
fn c11_fprocess_quoting() {
    let wd = watchdog("sh -c 'echo a b'").start();
    assert_eq!(wd.post("/", b"").text(), "a b\n");
    let out = watchdog("sh -c 'echo a").no_wait().run_to_exit(T);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.starts_with("Error loading config: invalid fprocess: unterminated single quote"), "{}", out.stderr);
}

#[test]
fn c12_jwt_auth_unsupported() {
    let out = watchdog("cat").env("jwt_auth", "true").no_wait().run_to_exit(T);
    assert_eq!(out.code(), Some(1));
    assert_eq!(out.stderr.trim(), "Error loading config: jwt_auth is not supported by this watchdog");
}

#[test]
fn c13_metrics_off_and_two_side_by_side() {
    let wd = watchdog("cat").env("metrics_port", "0").start();
    assert!(!wd.log().contains("Metrics listening"));
    let a = watchdog("echo -n a").env("metrics_port", &free_port().to_string()).start();
    let b = watchdog("echo -n b").env("metrics_port", &free_port().to_string()).start();
    assert_ne!(a.tmp, b.tmp);
    assert_eq!(a.post("/", b"").text(), "a");
    assert_eq!(b.post("/", b"").text(), "b");
    assert!(a.metrics().contains("http_requests_total{code=\"200\",method=\"post\"} 1"));
    assert!(b.metrics().contains("http_requests_total{code=\"200\",method=\"post\"} 1"));
}

#[test]
fn c02_bad_values_are_fatal_or_default() {
    for (k, v, msg) in [
        ("port", "70000", "invalid port \"70000\""),
        ("metrics_port", "x", "invalid metrics_port \"x\""),
        ("log_buffer_size", "0", "invalid log_buffer_size"),
        ("bind_address", "nope", "invalid bind_address \"nope\": not an IP address"),
    ] {
        let out = watchdog("cat").env(k, v).no_wait().run_to_exit(T);
        assert_eq!(out.code(), Some(1), "{k}={v}");
        assert!(out.stderr.contains(msg), "{k}={v}: {}", out.stderr);
    }
    let wd = watchdog("cat").env("max_inflight", "many").env("prefix_logs", "maybe").start();
    assert!(wd.log().contains("Invalid value for max_inflight: \"many\", using default 0"));
    assert_eq!(wd.post("/", b"ok").text(), "ok");
}

#[test]
fn c55_bind_address() {
    let wd = watchdog("cat").env("bind_address", "127.0.0.1").start();
    assert_eq!(wd.post("/", b"x").status, 200);
    // Another local address of this machine: 127.0.0.2 is on lo but not bound.
    let other = std::net::TcpStream::connect_timeout(&format!("127.0.0.2:{}", wd.port).parse().unwrap(), Duration::from_secs(1));
    assert!(other.is_err(), "answered on 127.0.0.2");
    let wd2 = watchdog("cat").start();
    assert!(std::net::TcpStream::connect(format!("127.0.0.2:{}", wd2.port)).is_ok(), "default binds all interfaces");
}

#[test]
fn unwritable_tmpdir_exits_1() {
    let out = watchdog("cat").env("TMPDIR", "/proc/no-such-dir").no_wait().run_to_exit(T);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("cannot write /proc/no-such-dir/.lock") && out.stderr.contains("suppress_lock=true"), "{}", out.stderr);
}
