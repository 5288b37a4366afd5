//! The gateway's first slice through the real binary: routing, errors and auth (gateway.md
//! checklist 1-6, 8, 18 for the local runtime).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use e2e::*;

fn basic(user: &str, pass: &str) -> String {
    basic_auth(user, pass)
}

fn password(gw: &Watchdog) -> String {
    std::fs::read_to_string(gw.tmp.join("secrets/basic-auth-password")).unwrap()
}

#[test]
fn g01_unknown_path_and_wrong_method() {
    let gw = gateway().start();
    let r = gw.get("/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-openfaas-internal"), Some("gateway"));
    let r = gw.request("PATCH", "/system/functions", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST, PUT, DELETE"));
    assert_eq!(r.header("x-openfaas-internal"), Some("gateway"));
    for trick in ["//system/info", "/system/../system/info", "/system/%2e%2e/info", "/SYSTEM/info"] {
        assert_eq!(gw.get(trick).status, 404, "{trick}");
    }
    assert_eq!(gw.get("/").text(), "no UI is included\n");
}

#[test]
fn g02_g03_auth_and_generated_credentials() {
    let gw = gateway().start();
    let log = gw.wait_log("Generated basic-auth credentials in ", Duration::from_secs(5));
    assert!(log.contains("(user: admin)"));
    let pass = password(&gw);
    assert!(!gw.log().contains(&pass), "password logged");
    for f in ["basic-auth-user", "basic-auth-password"] {
        let mode = std::fs::metadata(gw.tmp.join("secrets").join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let r = gw.get("/system/info");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"Restricted\""));
    assert_eq!(r.text().trim(), "invalid credentials");
    let r = gw.request("GET", "/system/info", &[("Authorization", &basic("root", &pass))], b"");
    assert_eq!(r.status, 401, "wrong user, right password");
    let r = gw.request("GET", "/system/info", &[("Authorization", &basic("admin", &pass))], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn g04_auth_off_accepts_empty_bearer() {
    let gw = gateway().env("basic_auth", "false").start();
    let r = gw.request("GET", "/system/info", &[("Authorization", "Bearer ")], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn g05_credentials_reused_and_half_present_fails() {
    let dir = temp_dir("gw-secrets");
    std::fs::write(dir.join("basic-auth-user"), "alice\n").unwrap();
    std::fs::write(dir.join("basic-auth-password"), " s3cret \n").unwrap();
    let gw = gateway().env("secret_mount_path", dir.to_str().unwrap()).start();
    let r = gw.request("GET", "/system/info", &[("Authorization", &basic("alice", "s3cret"))], b"");
    assert_eq!(r.status, 200, "whitespace trimmed");
    assert!(!gw.log().contains("Generated"));
    std::fs::remove_file(dir.join("basic-auth-user")).unwrap();
    let out = gateway().env("secret_mount_path", dir.to_str().unwrap()).no_wait().run_to_exit(Duration::from_secs(5));
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("provide both or neither"), "{}", out.stderr);
}

#[test]
fn g06_g08_public_routes_and_ports() {
    let gw = gateway().env("metrics_port", &free_port().to_string()).start();
    let r = gw.get("/healthz");
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    assert_eq!(gw.post("/healthz", b"").status, 405);
    let m = gw.metrics_port.unwrap();
    assert_eq!(request(m, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(request(m, "GET", "/metrics", &[], b"").status, 200);
    assert_eq!(gw.get("/metrics").status, 404, ":port/metrics is 404");
    // No credentials needed on invoke routes (served in a later slice).
    assert_ne!(gw.post("/function/fn", b"").status, 401);
    assert_ne!(gw.post("/async-function/fn", b"").status, 401);
}

#[test]
fn g18_info() {
    let gw = gateway().env("basic_auth", "false").start();
    let r = gw.get("/system/info");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!((v["provider"]["provider"].as_str(), v["provider"]["orchestration"].as_str()), (Some("local"), Some("process")), "{v}");
    assert!(v["provider"]["version"]["release"].is_string() && v["version"]["release"].is_string(), "{v}");
    assert_eq!(v["arch"], std::env::consts::ARCH, "{v}");
}

#[test]
fn g07_header_limit_log_format_and_queue_worker() {
    let gw = gateway().env("log_format", "json").start();
    let ok = "a".repeat(60 * 1024);
    assert_eq!(gw.request("GET", "/healthz", &[("X-Big", &ok)], b"").status, 200, "60 KiB of headers");
    let big = "a".repeat(70 * 1024);
    assert_eq!(gw.request("GET", "/healthz", &[("X-Big", &big)], b"").status, 431, "over 64 KiB");
    let first = gw.log().lines().next().unwrap_or("").to_string();
    assert!(first.starts_with('{') && first.contains("\"msg\""), "JSON log lines: {first}");
    let out = gateway().env("log_format", "yaml").no_wait().run_to_exit(Duration::from_secs(5));
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("invalid log_format"), "{}", out.stderr);
    // 63 (embedded queue part): queue-worker needs NATS.
    let out = gateway().arg("queue-worker").no_wait().run_to_exit(Duration::from_secs(5));
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("queue-worker needs faas_nats_address: the embedded queue belongs to one gateway"), "{}", out.stderr);
    let out = gateway().arg("bogus").no_wait().run_to_exit(Duration::from_secs(5));
    assert_eq!(out.code(), Some(2));
}
