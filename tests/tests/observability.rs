//! Metrics and logs (checklist 49-54).

use std::time::Duration;

use e2e::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn c49_metrics_after_one_post() {
    let wd = watchdog("cat").env("metrics_port", &free_port().to_string()).start();
    let before = wd.metrics();
    assert!(before.contains("http_requests_in_flight 0"), "{before}");
    assert_eq!(wd.get("/_/health").status, 200);
    assert_eq!(wd.post("/", b"x").status, 200);
    let m = wd.metrics();
    assert!(m.contains("http_requests_total{code=\"200\",method=\"post\"} 1\n"), "{m}");
    let buckets = m.lines().filter(|l| l.starts_with("http_request_duration_seconds_bucket{") && l.contains("code=\"200\"")).count();
    assert_eq!(buckets, 12, "11 buckets plus +Inf: {m}");
    for le in ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "2.5", "+Inf"] {
        assert!(m.contains(&format!("le=\"{le}\"")), "{le}: {m}");
    }
    assert!(m.contains("# TYPE http_request_duration_seconds histogram"));
    assert!(m.contains("# TYPE http_requests_in_flight gauge"));
    assert!(!m.contains("method=\"get\""), "/_/health is not counted: {m}");
}

#[test]
fn c50_metrics_other_paths_404() {
    let wd = watchdog("cat").env("metrics_port", &free_port().to_string()).start();
    let r = request(wd.metrics_port.unwrap(), "GET", "/other", &[], b"");
    assert_eq!(r.status, 404);
}

#[test]
fn c51_request_log_line() {
    let wd = watchdog("cat").start();
    wd.post("/path?q=1", b"hello");
    let line = wd.wait_log("POST /path?q=1 - 200 - ContentLength: 5B (", T);
    let secs = line.split('(').nth(1).unwrap().split("s)").next().unwrap();
    assert_eq!(secs.split('.').nth(1).map(str::len), Some(4), "{line}");
    wd.request("POST", "/probe", &[("User-Agent", "kube-probe/1.29")], b"x");
    wd.post("/after", b"");
    wd.wait_log("POST /after - 200", T);
    assert!(!wd.log().contains("/probe"), "kube-probe requests are not logged");
    let wd = watchdog("sh -c 'exit 2'").env("mode", "serializing").start();
    wd.post("/", b"");
    wd.wait_log("POST / - 500 - ContentLength: ", T);
}

#[test]
fn c52_long_stderr_line_split() {
    let wd = watchdog("sh -c 'head -c 100000 /dev/zero | tr \"\\\\0\" a >&2; echo >&2; echo after >&2; echo ok'").start();
    assert_eq!(wd.post("/", b"").text(), "ok\n");
    wd.wait_log("stderr: after", T);
    let log = wd.log();
    let pieces: Vec<usize> = log.lines().filter(|l| l.contains("stderr: aaaa")).map(|l| l.split("stderr: ").nth(1).unwrap().len()).collect();
    assert_eq!(pieces, vec![65536, 100000 - 65536], "{pieces:?}");
}

#[test]
fn c53_raw_relay_and_json_logs() {
    let wd = watchdog("sh -c 'printf \"raw line\\n\" >&2; echo ok'").env("prefix_logs", "false").start();
    wd.post("/", b"");
    wd.wait_log("POST / - 200", T);
    assert!(wd.log().lines().any(|l| l == "raw line"), "{}", wd.log());

    let wd = watchdog("sh -c 'echo to-stderr >&2; echo ok'").env("log_format", "json").start();
    wd.post("/", b"");
    wd.wait_log("\"msg\":\"request\"", T);
    let log = wd.log();
    for line in log.lines() {
        assert!(line.starts_with("{\"time\":\"") && line.contains("\"level\":\"") && line.contains("\"msg\":") && line.ends_with('}'), "not JSON: {line}");
    }
    assert!(log.contains("\"stream\":\"stderr\",\"msg\":\"to-stderr\""), "{log}");
    assert!(log.contains("\"method\":\"POST\"") && log.contains("\"status\":200"), "{log}");
}

#[test]
fn c54_stderr_precedes_summary_with_maxrss() {
    let wd = watchdog("sh -c 'for i in 1 2 3 4 5; do echo line-$i >&2; done; printf last >&2; echo ok'").start();
    for _ in 0..3 {
        wd.post("/", b"");
    }
    let log = wd.wait_log("MaxRSS: ", T);
    assert!(log.contains("MaxRSS: "));
    let full = wd.log();
    let lines: Vec<&str> = full.lines().collect();
    let summary = lines.iter().position(|l| l.contains("POST / - 200")).unwrap();
    let last = lines.iter().position(|l| l.ends_with("stderr: last")).expect("final line without newline is relayed");
    let first = lines.iter().position(|l| l.ends_with("stderr: line-1")).unwrap();
    assert!(first < summary && last < summary, "{full}");
}

#[test]
fn http_mode_relays_function_stdout() {
    let (setup, _) = http_mode(&[]);
    let wd = setup.start();
    wd.wait_healthy(T);
    wd.wait_log("stderr: test-upstream: listening on", T);
    let log = wd.log();
    assert!(log.contains("Forking: ") && log.contains("Started logging: stdout from function."), "{log}");
}
