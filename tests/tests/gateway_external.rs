//! External provider mode (gateway.md §15.2): our gateway in front of a second gateway of ours
//! (which speaks the provider API), and what a provider receives (checklist 7, 18).

use std::time::Duration;

use e2e::*;
use serde_json::json;

const T: Duration = Duration::from_secs(15);

struct Front<'a> {
    gw: &'a Watchdog,
    auth: String,
}

impl Front<'_> {
    fn call(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Resp {
        let b = body.map(|b| b.to_string()).unwrap_or_default();
        self.gw.request(method, path, &[("Authorization", &self.auth), ("Content-Type", "application/json")], b.as_bytes())
    }
}

#[test]
fn x01_ours_in_front_of_ours() {
    let back = gateway().start();
    let secrets = back.tmp.join("secrets");
    let mut back = back;
    let front_gw = gateway()
        .env("secret_mount_path", secrets.to_str().unwrap())
        .env("functions_provider_url", &format!("http://127.0.0.1:{}/", back.port))
        .env("metrics_port", &free_port().to_string())
        .start();
    let front = Front { gw: &front_gw, auth: basic_auth_from(&secrets) };
    // 18: info wraps the provider's nested provider object.
    let info = front.call("GET", "/system/info", None).json();
    assert_eq!((info["provider"]["provider"].as_str(), info["provider"]["orchestration"].as_str()), (Some("local"), Some("process")), "{info}");
    assert!(info["version"]["release"].is_string() && info["arch"].is_string());
    assert_eq!(front.call("GET", "/system/functions", None).text(), "[]");
    assert_eq!(front.gw.get("/healthz").status, 200);

    // Deploy sequence through the front gateway.
    let mut d = upstream_function("up");
    d["labels"] = json!({"com.openfaas.scale.max": "4"});
    assert_eq!(front.call("PUT", "/system/functions", Some(&d)).status, 404);
    assert_eq!(front.call("POST", "/system/functions", Some(&d)).status, 202);
    let bad = json!({"service": "Bad_Name", "image": "x", "envProcess": "cat"});
    let r = front.call("POST", "/system/functions", Some(&bad));
    assert_eq!((r.status, r.header("x-openfaas-internal")), (400, Some("gateway")), "validated by the front gateway");
    assert!(eventually(T, || front.call("GET", "/system/function/up", None).json()["availableReplicas"].as_u64().unwrap_or(0) >= 1));

    // Invocation: the provider gets the whole path; call id and trace context flow through.
    let r = front_gw.request("POST", "/function/up/info?x=1", &[("X-Call-Id", "abc")], b"body");
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.text();
    assert!(t.contains("target /info?x=1\n") && t.contains("x-call-id: abc\n") && t.contains("traceparent: 00-"), "{t}");
    assert!(!t.contains("authorization"), "no gateway credentials on /function/*: {t}");
    assert_eq!(r.header("x-call-id"), Some("abc"));
    assert_eq!(front_gw.get("/function/up.openfaas-fn").text(), "Hello");
    assert_eq!(front_gw.get("/function/nope").status, 404);
    let list = front.call("GET", "/system/functions", None).json();
    assert_eq!(list[0]["invocationCount"], 2, "the front gateway's own counters: {list}");

    // Scaling: validated here, forwarded without a clamp; scale from zero through the provider.
    let r = front.call("POST", "/system/scale-function/up", Some(&json!({"serviceName": "up", "replicas": 5})));
    assert_eq!((r.status, r.text().as_str()), (400, "replicas 5 exceeds com.openfaas.scale.max 4\n"));
    assert_eq!(front.call("POST", "/system/scale-function/up", Some(&json!({"serviceName": "up", "replicas": 0}))).status, 202);
    assert!(eventually(T, || back.get_auth_replicas("up", &front.auth) == Some((0, 0))));
    let r = front_gw.get("/function/up");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello"), "scaled from zero through the provider");
    // Alerts: computed here, applied through the provider.
    let alert = json!({"status": "firing", "receiver": "r", "alerts": [{"status": "firing", "labels": {"alertname": "a", "function_name": "up"}}]});
    assert_eq!(front.call("POST", "/system/alert", Some(&alert)).status, 200);
    assert_eq!(back.get_auth_replicas("up", &front.auth).map(|r| r.0), Some(2), "1 + ceil(4 * 10 / 100)");

    // Secrets, namespaces and logs forwarded.
    assert_eq!(front.call("POST", "/system/secrets", Some(&json!({"name": "s1", "value": "v"}))).status, 201);
    assert_eq!(front.call("GET", "/system/secrets", None).json()[0]["name"], "s1");
    assert_eq!(front.call("DELETE", "/system/secrets", Some(&json!({"name": "s1"}))).status, 202);
    assert_eq!(front.call("POST", "/system/namespace/", Some(&json!({"name": "team"}))).status, 201);
    assert!(front.call("GET", "/system/namespaces", None).text().contains("team"));
    let logs = front.call("GET", "/system/logs?name=up&tail=3", None);
    assert_eq!((logs.status, logs.header("content-type")), (200, Some("application/x-ndjson")));
    assert!(logs.text().lines().count() >= 1);
    // A provider 404 on logs means "no logs here" to the gateway (§12): 501.
    assert_eq!(front.call("GET", "/system/logs?name=nope", None).status, 501);
    // gateway_service_count, polled from the provider.
    let m = front_gw.metrics_port.unwrap();
    assert!(
        eventually(Duration::from_secs(8), || request(m, "GET", "/metrics", &[], b"").text().contains("gateway_service_count{function_name=\"up.openfaas-fn\"} 2")),
        "{}",
        request(m, "GET", "/metrics", &[], b"").text()
    );
    // Delete.
    assert_eq!(front.call("DELETE", "/system/functions", Some(&json!({"functionName": "up"}))).status, 202);
    assert_eq!(front.call("DELETE", "/system/functions", Some(&json!({"functionName": "up"}))).status, 404);

    // Provider gone: health 502, info still 200 with the unavailable provider, calls 502.
    back.signal(libc::SIGKILL);
    back.wait_exit(T);
    let r = front_gw.get("/healthz");
    assert_eq!((r.status, r.header("x-openfaas-internal")), (502, Some("gateway")));
    let info = front.call("GET", "/system/info", None);
    assert_eq!(info.status, 200);
    assert_eq!(info.json()["provider"], json!({"provider": "unavailable", "orchestration": "unknown", "version": {"sha": "", "release": ""}}));
    let r = front_gw.get("/function/up");
    assert_eq!((r.status, r.header("x-openfaas-internal")), (502, Some("gateway")), "{}", r.text());
}

trait Replicas {
    fn get_auth_replicas(&self, name: &str, auth: &str) -> Option<(u64, u64)>;
}

impl Replicas for Watchdog {
    /// (replicas, availableReplicas) as the provider itself reports them.
    fn get_auth_replicas(&self, name: &str, auth: &str) -> Option<(u64, u64)> {
        let r = self.request("GET", &format!("/system/function/{name}"), &[("Authorization", auth)], b"");
        (r.status == 200).then(|| {
            let v = r.json();
            (v["replicas"].as_u64().unwrap_or(0), v["availableReplicas"].as_u64().unwrap_or(0))
        })
    }
}

#[test]
fn x07_provider_receives_the_gateways_credentials() {
    // A recording "provider": test-upstream echoes every request under /info/.
    let port = free_port();
    let _provider = Proc(std::process::Command::new(upstream_path()).arg("--port").arg(port.to_string()).spawn().unwrap());
    assert!(eventually(T, || try_request(port, "GET", "/", &[], b"").is_ok()));
    let provider = format!("http://127.0.0.1:{port}/info");
    let gw = gateway().env("functions_provider_url", &provider).start();
    let auth = basic_auth_from(&gw.tmp.join("secrets"));
    let r = gw.request("GET", "/system/secrets?namespace=x", &[("Authorization", &auth)], b"");
    let t = r.text();
    assert!(t.contains("target /info/system/secrets?namespace=x\n"), "{t}");
    assert!(t.contains(&format!("authorization: {auth}\n")), "the gateway's Basic credentials: {t}");
    assert_eq!(gw.get("/system/secrets").status, 401, "the client still needs credentials");
    // Auth off: the client's header passes through unchanged.
    let open = open_gateway().env("functions_provider_url", &provider).start();
    let t = open.request("GET", "/system/secrets", &[("Authorization", "Bearer abc")], b"").text();
    assert!(t.contains("authorization: Bearer abc\n"), "{t}");
    // An https provider URL is refused at start with a reason.
    let out = open_gateway().env("functions_provider_url", "https://example.invalid").no_wait().run_to_exit(T);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("only http:// is supported"), "{}", out.stderr);
}

/// A child process killed and reaped when dropped.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn of_gateway() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("OF_GATEWAY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/of-gateway"));
    p.is_file().then_some(p)
}

/// The OpenFaaS CE gateway with ours as its `functions_provider_url`: ours speaks the provider
/// API. The CE gateway listens on the fixed ports 8080 and 8082, and its list needs a
/// Prometheus query API (test-upstream answers an empty vector).
#[test]
fn x03_ce_gateway_with_ours_as_provider() {
    let Some(bin) = of_gateway() else {
        eprintln!("SKIPPED: the OpenFaaS CE gateway was not found (set OF_GATEWAY)");
        return;
    };
    for p in [8080, 8082] {
        assert!(std::net::TcpListener::bind(("0.0.0.0", p)).is_ok(), "port {p} is busy: the CE gateway needs it");
    }
    let ours = open_gateway().start();
    let prom = free_port();
    let _prometheus = Proc(std::process::Command::new(upstream_path()).arg("--port").arg(prom.to_string()).spawn().unwrap());
    let _ce = Proc(
        std::process::Command::new(bin)
            .env_clear()
            .env("functions_provider_url", format!("http://127.0.0.1:{}/", ours.port))
            .env("basic_auth", "false")
            .env("faas_prometheus_host", "127.0.0.1")
            .env("faas_prometheus_port", prom.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(eventually(T, || try_request(8080, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)), "CE gateway up");
    let call = |method: &str, path: &str, body: serde_json::Value| request(8080, method, path, &[("Content-Type", "application/json")], body.to_string().as_bytes());
    // Deploy (faas-cli's sequence), list, status.
    assert_eq!(call("PUT", "/system/functions", upstream_function("up")).status, 404);
    assert_eq!(call("POST", "/system/functions", upstream_function("up")).status, 202);
    assert!(eventually(T, || {
        let r = request(8080, "GET", "/system/function/up", &[], b"");
        r.status == 200 && r.json()["availableReplicas"].as_u64().unwrap_or(0) >= 1
    }));
    let list = request(8080, "GET", "/system/functions", &[], b"");
    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(list.json()[0]["name"], "up");
    // Invoke: the CE gateway keeps the /function prefix; ours strips it for the replica.
    let r = request(8080, "POST", "/function/up/info?x=1", &[], b"hi");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("target /info?x=1\n"), "{}", r.text());
    // Scale (the CE gateway clamps to 1..5 before forwarding).
    assert_eq!(call("POST", "/system/scale-function/up", json!({"serviceName": "up", "replicas": 3})).status, 202);
    assert!(eventually(T, || ours.get("/system/function/up").json()["availableReplicas"] == 3));
    // Secrets through the CE gateway.
    assert!(call("POST", "/system/secrets", json!({"name": "s1", "value": "v"})).status < 300);
    assert_eq!(ours.get("/system/secrets").json()[0]["name"], "s1");
    // Remove.
    assert_eq!(call("DELETE", "/system/functions", json!({"functionName": "up"})).status, 202);
    assert_eq!(ours.get("/system/functions").text(), "[]");
}
