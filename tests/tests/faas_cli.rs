//! faas-cli against the gateway: the request sequences of gateway.md §16.2 replayed exactly as
//! faas-cli sends them (checklist 51-59), and the same commands through the real faas-cli when
//! it is present (`FAAS_CLI`, else `../shared/tools/faas-cli`; the test says when it skips).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::*;
use serde_json::json;

const T: Duration = Duration::from_secs(15);
const UA: (&str, &str) = ("User-Agent", "faas-cli/0.18.12");
const BEARER: (&str, &str) = ("Authorization", "Bearer ");

fn basic(gw: &Watchdog) -> String {
    basic_auth_from(&gw.tmp.join("secrets"))
}

/// A JSON body sent chunked, as faas-cli's Go client does.
fn send(gw: &Watchdog, method: &str, path: &str, auth: &str, body: &serde_json::Value) -> Resp {
    let b = body.to_string();
    let (x, y) = b.as_bytes().split_at(b.len() / 2);
    gw.request(
        method,
        path,
        &[UA, ("Authorization", auth), ("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")],
        &chunked(&[x, y]),
    )
}

#[test]
fn f51_to_f59_recorded_sequences() {
    let gw = gateway().start();
    let auth = basic(&gw);
    // 51 login
    let r = gw.request("GET", "/system/functions", &[UA, ("Authorization", &auth)], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "[]"));
    assert_eq!(gw.request("GET", "/system/functions", &[UA, ("Authorization", "Basic YWRtaW46bm9wZQ==")], b"").status, 401);
    // 53 deploy: PUT → 404 → POST → 202; the same PUT again → 202.
    let d = json!({"service": "echo", "image": "ghcr.io/openfaas/alpine:latest", "envProcess": "cat",
        "envVars": {"A": "1"}, "secrets": [], "labels": {"com.openfaas.scale.min": "1"},
        "annotations": {"topic": "x"}, "limits": {"memory": "128Mi"}, "requests": {"cpu": "100m"}, "readOnlyRootFilesystem": true});
    assert_eq!(send(&gw, "PUT", "/system/functions", &auth, &d).status, 404);
    assert_eq!(send(&gw, "POST", "/system/functions", &auth, &d).status, 202);
    assert_eq!(send(&gw, "PUT", "/system/functions", &auth, &d).status, 202);
    // 58 ready
    assert_eq!(gw.request("GET", "/healthz", &[UA], b"").status, 200);
    assert!(eventually(T, || {
        let r = gw.request("GET", "/system/function/echo?usage=1", &[UA, ("Authorization", &auth)], b"");
        r.status == 200 && r.json()["availableReplicas"].as_u64().unwrap_or(0) > 0
    }));
    let st = gw.request("GET", "/system/function/echo?namespace=openfaas-fn&usage=1", &[UA, ("Authorization", &auth)], b"").json();
    assert_eq!((st["limits"]["memory"].as_str(), st["requests"]["cpu"].as_str(), st["readOnlyRootFilesystem"].as_bool()), (Some("128Mi"), Some("100m"), Some(true)));
    // 55 invoke, no credentials.
    let r = gw.request("POST", "/function/echo.openfaas-fn", &[("User-Agent", "faas-cli/0.18.12 (openfaas; linux; amd64)"), ("Content-Type", "text/plain")], b"hi");
    assert_eq!((r.status, r.text().as_str()), (200, "hi"));
    let r = gw.request("POST", "/async-function/echo.openfaas-fn", &[("User-Agent", "faas-cli/0.18.12 (openfaas; linux; amd64)"), ("Content-Type", "text/plain")], b"hi");
    assert_eq!((r.status, r.body.len()), (202, 0));
    assert!(r.header("x-call-id").is_some());
    // 56 secrets
    assert_eq!(send(&gw, "POST", "/system/secrets", &auth, &json!({"name": "s1", "value": "s"})).status, 201);
    assert_eq!(send(&gw, "POST", "/system/secrets", &auth, &json!({"name": "s1", "value": "s"})).status, 409);
    assert_eq!(send(&gw, "PUT", "/system/secrets", &auth, &json!({"name": "s1", "value": "t"})).status, 202);
    let list = gw.request("GET", "/system/secrets", &[UA, ("Authorization", &auth)], b"").json();
    assert_eq!(list[0]["name"], "s1");
    assert_eq!(send(&gw, "DELETE", "/system/secrets", &auth, &json!({"name": "s1"})).status, 202);
    // 57 logs
    let r = gw.request("GET", "/system/logs?follow=false&name=echo&tail=-1", &[UA, ("Authorization", &auth)], b"");
    assert_eq!((r.status, r.header("content-type")), (200, Some("application/x-ndjson")));
    assert!(r.text().lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    assert!(!r.text().is_empty());
    // 59 namespaces (openfaas-go-sdk user agent)
    let sdk = ("User-Agent", "openfaas-go-sdk");
    let ns = json!({"name": "team", "labels": {"openfaas": "1"}, "annotations": {"openfaas": "1"}});
    let r = gw.request("POST", "/system/namespace/", &[sdk, ("Authorization", &auth), ("Content-Type", "application/json")], ns.to_string().as_bytes());
    assert_eq!(r.status, 201);
    assert_eq!(gw.request("GET", "/system/namespace/team", &[sdk, ("Authorization", &auth)], b"").status, 200);
    assert!(gw.request("GET", "/system/namespaces", &[sdk, ("Authorization", &auth)], b"").text().contains("team"));
    assert_eq!(gw.request("PUT", "/system/namespace/team", &[sdk, ("Authorization", &auth)], ns.to_string().as_bytes()).status, 202);
    assert_eq!(gw.request("DELETE", "/system/namespace/team", &[sdk, ("Authorization", &auth)], ns.to_string().as_bytes()).status, 202);
    // 54 remove
    let rm = json!({"functionName": "echo", "namespace": "openfaas-fn"});
    assert_eq!(send(&gw, "DELETE", "/system/functions", &auth, &rm).status, 202);
    assert_eq!(send(&gw, "DELETE", "/system/functions", &auth, &rm).status, 404);
    // 52 version with auth off and an empty bearer token.
    let open = open_gateway().start();
    let info = open.request("GET", "/system/info", &[UA, BEARER], b"").json();
    assert!(info["provider"]["version"]["release"].is_string(), "{info}");
}

#[test]
fn f60_real_faas_cli() {
    let Some(bin) = faas_cli() else {
        eprintln!("SKIPPED: the real faas-cli was not found (set FAAS_CLI); the recorded sequences of f51_to_f59 cover the same requests");
        return;
    };
    let gw = gateway().start();
    let cli = Cli::new(bin, &gw);
    let pass = std::fs::read_to_string(gw.tmp.join("secrets/basic-auth-password")).unwrap();
    let (code, text) = cli.run(&["login", "-u", "admin", "--password-stdin"], "wrong");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("Unable to login, either username or password is incorrect"), "{text}");
    assert!(cli.ok(&["login", "-u", "admin", "--password-stdin"], &pass).contains("credentials saved for admin"));
    let v = cli.ok(&["version", "--warn-update=false"], "");
    assert!(v.contains("name:          local") && v.contains("orchestration: process"), "{v}");
    assert!(cli.ok(&["deploy", "--image", "demo", "--name", "echo", "--fprocess", "cat", "-l", "com.openfaas.scale.min=1"], "").contains("Deployed. 202 Accepted."));
    assert!(cli.ok(&["ready", "echo"], "").contains("Function echo is ready"));
    assert!(cli.ok(&["list"], "").contains("echo"));
    let d = cli.ok(&["describe", "echo"], "");
    assert!(d.contains("Status:             Ready") && d.contains("Function Process:   cat"), "{d}");
    assert_eq!(cli.ok(&["invoke", "echo"], "hi\n"), "hi\n");
    assert!(cli.ok(&["invoke", "--async", "echo"], "later\n").contains("Function submitted asynchronously."));
    cli.ok(&["deploy", "--image", "demo", "--name", "envfn", "--fprocess", "env"], "");
    cli.ok(&["ready", "envfn"], "");
    let e = cli.ok(&["invoke", "envfn", "-m", "PUT", "-H", "X-A: 1", "--query", "q=1", "--content-type", "text/csv"], "body");
    for want in ["Http_X_A=1", "Http_Method=PUT", "Http_Query=q=1", "Http_Content_Type=text/csv"] {
        assert!(e.contains(want), "{want}: {e}");
    }
    assert!(cli.ok(&["deploy", "--image", "demo", "--name", "echo", "--fprocess", "cat"], "").contains("Deployed. 202 Accepted."), "update");
    // Secrets
    assert!(cli.ok(&["secret", "create", "s1", "--from-literal", "v1"], "").contains("Created: 201"));
    assert!(cli.ok(&["secret", "create", "s1", "--from-literal", "v1"], "").contains("already exists"));
    assert!(cli.ok(&["secret", "list"], "").contains("s1"));
    assert!(cli.ok(&["secret", "update", "s1", "--from-literal", "v2"], "").contains("Updated: 202"));
    cli.ok(&["secret", "remove", "s1"], "");
    assert!(!cli.ok(&["secret", "list"], "").contains("s1"));
    // Namespaces
    cli.ok(&["namespace", "create", "team"], "");
    assert!(cli.ok(&["namespace", "list"], "").contains("team"));
    assert!(cli.ok(&["namespace", "get", "team"], "").contains("Name: team"));
    cli.ok(&["namespace", "update", "team"], "");
    cli.ok(&["deploy", "--image", "demo", "--name", "teamfn", "--fprocess", "cat", "-n", "team"], "");
    cli.ok(&["ready", "teamfn", "-n", "team"], "");
    assert_eq!(cli.ok(&["invoke", "teamfn", "-n", "team"], "ns\n"), "ns\n");
    assert!(cli.ok(&["list", "-n", "team"], "").contains("teamfn"));
    cli.ok(&["remove", "teamfn", "-n", "team"], "");
    cli.ok(&["namespace", "delete", "team"], "");
    // Logs
    let logs = cli.ok(&["logs", "echo", "--tail=false"], "");
    assert!(logs.contains("Watchdog mode: streaming"), "{logs}");
    // Remove
    assert!(cli.ok(&["remove", "echo"], "").contains("Removing old function."));
    let (code, text) = cli.run(&["remove", "echo"], "");
    assert_eq!(code, 1);
    assert!(text.contains("No existing function to remove"), "{text}");
}

/// Serves one fixed body to every request (a function store file), until the test ends.
fn serve_static(body: String) -> u16 {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    port
}

/// `faas-cli up --shrinkwrap --skip-push` and `deploy -f stack.yml` against `gateway up` (which
/// knows how to run the stack's image on the host), and `store deploy` from a store file.
#[test]
fn f61_real_faas_cli_up_and_store_deploy() {
    let Some(bin) = faas_cli() else {
        eprintln!("SKIPPED: the real faas-cli was not found (set FAAS_CLI)");
        return;
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let dir = temp_dir("cli-up");
    copy_dir(&repo.join("template"), &dir.join("template"));
    copy_dir(&repo.join("examples/hello-bash"), &dir.join("examples/hello-bash"));
    std::fs::copy(repo.join("stack.yml"), dir.join("stack.yml")).unwrap();
    let stack = dir.join("stack.yml");
    let gw = open_gateway().arg("up").arg("-f").arg(stack.to_str().unwrap()).start();
    gw.wait_available("hello-bash", 1, T);
    let cli = Cli::new(bin, &gw);
    let run_in = |args: &[&str]| {
        let out = Command::new(&cli.bin)
            .args(args)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &cli.home)
            .env("OPENFAAS_URL", &cli.url)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "faas-cli {args:?}: {text}");
        text
    };
    let up = run_in(&["up", "--shrinkwrap", "--skip-push", "-f", "stack.yml"]);
    assert!(up.contains("hello-bash shrink-wrapped to build/hello-bash") && up.contains("Deployed. 202 Accepted."), "{up}");
    assert!(run_in(&["deploy", "-f", "stack.yml"]).contains("Deployed. 202 Accepted."));
    assert!(eventually(T, || gw.post("/function/hello-bash", b"Zed").text() == "Hello from bash: Zed\n"));
    assert_eq!(gw.get("/system/function/hello-bash").json()["envProcess"], "bash ./function/handler.sh", "the template's fprocess, sent by faas-cli");
    assert!(!gw.log().contains("exited"), "no replica died during the updates: {}", gw.log());

    let store = json!({"version": "0.2.0", "functions": [{"title": "Echo", "name": "echo-store", "description": "cat",
        "images": {"x86_64": "example/echo:latest", "arm64": "example/echo:latest", "armhf": "example/echo:latest"},
        "fprocess": "cat", "repo_url": "", "environment": {"A": "1"}, "labels": {}, "annotations": {}}]});
    let port = serve_static(store.to_string());
    let url = format!("http://127.0.0.1:{port}/store.json");
    assert!(cli.ok(&["store", "deploy", "echo-store", "--url", &url], "").contains("Deployed. 202 Accepted."));
    gw.wait_available("echo-store", 1, T);
    assert_eq!(gw.post("/function/echo-store", b"from the store").text(), "from the store");
    assert_eq!(gw.get("/system/function/echo-store").json()["envVars"]["A"], "1");
}
