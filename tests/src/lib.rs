//! Helpers shared by the end-to-end tests: start the real `fwatchdog` binary on free ports with
//! its own TMPDIR, read its log, send raw HTTP/1.1 requests, and inspect processes.
//!
//! `FWATCHDOG` picks the binary under test (default: the workspace's debug build) and
//! `FWATCHDOG_RUNNER` an emulator to run it with (e.g. `qemu-aarch64-static`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The directory holding the workspace's built binaries (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") { dir.parent().unwrap().to_path_buf() } else { dir.to_path_buf() }
}

pub fn fwatchdog_path() -> PathBuf {
    std::env::var_os("FWATCHDOG").map(PathBuf::from).unwrap_or_else(|| bin_dir().join("fwatchdog"))
}

pub fn upstream_path() -> PathBuf {
    bin_dir().join("test-upstream")
}

/// A port that was free a moment ago, from 12000-19999: below the kernel's ephemeral range, so
/// a listener on port 0 elsewhere (every watchdog the tests start) cannot take it meanwhile.
pub fn free_port() -> u16 {
    static N: AtomicUsize = AtomicUsize::new(0);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as usize;
    for i in 0..1000 {
        let mix = seed ^ (std::process::id() as usize).wrapping_mul(2_654_435_761) ^ N.fetch_add(7919, Ordering::Relaxed) ^ i;
        let port = 12000 + (mix % 8000) as u16;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 12000-19999");
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!("fwd-{}-{}-{}", tag, std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A builder for a watchdog run: env pairs and flags.
pub struct Setup {
    env: Vec<(String, String)>,
    args: Vec<String>,
    wait_ready: bool,
    /// `None`: fwatchdog (with `FWATCHDOG_RUNNER`); otherwise this binary.
    bin: Option<PathBuf>,
}

pub fn watchdog(fprocess: &str) -> Setup {
    Setup { env: vec![("fprocess".into(), fprocess.into())], args: vec![], wait_ready: true, bin: None }
}

/// A watchdog setup without `fprocess`.
pub fn bare() -> Setup {
    Setup { env: vec![], args: vec![], wait_ready: true, bin: None }
}

/// The gateway binary, with its credentials folder in the run's temp dir.
pub fn gateway() -> Setup {
    Setup { env: vec![], args: vec![], wait_ready: true, bin: Some(bin_dir().join("gateway")) }
}

impl Setup {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }
    /// Don't wait for `Listening on port` (for runs expected to fail).
    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    fn command(&self, tmp: &Path) -> Command {
        let bin = fwatchdog_path();
        let mut cmd = match std::env::var_os("FWATCHDOG_RUNNER") {
            _ if self.bin.is_some() => Command::new(self.bin.as_ref().unwrap()),
            Some(runner) => {
                let mut c = Command::new(runner);
                c.arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.env_clear();
        for k in ["PATH", "HOME", "LANG"] {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        cmd.env("TMPDIR", tmp).env("port", "0").env("metrics_port", "0");
        cmd.env("secret_mount_path", tmp.join("secrets"));
        if self.bin.is_some() {
            cmd.env("state_dir", tmp.join("state")).env("watchdog_path", fwatchdog_path());
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.args(&self.args);
        cmd
    }

    /// Runs to completion (for start-up failures and one-shot flags).
    pub fn run_to_exit(self, limit: Duration) -> Outcome {
        let tmp = temp_dir("run");
        let mut child = self.command(&tmp).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn fwatchdog");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut stdout = String::new();
                let mut stderr = String::new();
                child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
                child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
                return Outcome { status, stdout, stderr, elapsed: started.elapsed() };
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                panic!("fwatchdog did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn start(self) -> Watchdog {
        let tmp = temp_dir("wd");
        let mut cmd = self.command(&tmp);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn fwatchdog");
        let log = Arc::new(Mutex::new(String::new()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).map(|n| n > 0).unwrap_or(false) {
                l.lock().unwrap().push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
        });
        let stdout = child.stdout.take().unwrap();
        let o = out.clone();
        std::thread::spawn(move || {
            let mut r = stdout;
            let mut buf = [0u8; 8192];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut wd = Watchdog { child, log, stdout: out, tmp, port: 0, metrics_port: None };
        if self.wait_ready {
            wd.wait_listening(Duration::from_secs(10));
            if self.env.iter().any(|(k, v)| k == "metrics_port" && v != "0") {
                wd.metrics_port = Some(port_after(&wd.wait_log("Metrics listening on port: ", Duration::from_secs(10))));
            }
        }
        wd
    }
}

/// The number right after the `...port: ` prefix of a log line (text or JSON).
fn port_after(line: &str) -> u16 {
    let rest = line.split("port: ").nth(1).unwrap_or("");
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().expect("port in log line")
}

pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// A running `fwatchdog`, killed when dropped.
pub struct Watchdog {
    pub child: Child,
    log: Arc<Mutex<String>>,
    stdout: Arc<Mutex<Vec<u8>>>,
    pub tmp: PathBuf,
    pub port: u16,
    pub metrics_port: Option<u16>,
}

impl Watchdog {
    /// Waits for the `Listening on port: N` line and takes N as the port (after a `no_wait`
    /// start, e.g. `gateway up` compiling functions first).
    pub fn wait_listening(&mut self, limit: Duration) {
        self.port = port_after(&self.wait_log("Listening on port: ", limit));
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
    pub fn stdout(&self) -> Vec<u8> {
        self.stdout.lock().unwrap().clone()
    }
    pub fn lock_file(&self) -> PathBuf {
        self.tmp.join(".lock")
    }

    /// Waits for a log line containing `needle`; returns the rest of that line from `needle` on.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                let i = line.find(needle).unwrap();
                return line[i..].to_string();
            }
            if started.elapsed() > limit {
                panic!("no log line with {needle:?} within {limit:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `/_/health` answers 200.
    pub fn wait_healthy(&self, limit: Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(r) = try_request(self.port, "GET", "/_/health", &[], b"") {
                if r.status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("not healthy within {limit:?}; log:\n{}", self.log());
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY-free: kill(1) through the shell would be slower; libc::kill is a plain syscall.
        unsafe_kill(self.pid(), sig);
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50)); // let the log readers drain
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(self.port, method, path, headers, body)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Resp {
        self.request("POST", path, &[], body)
    }

    pub fn metrics(&self) -> String {
        let r = request(self.metrics_port.expect("metrics port"), "GET", "/metrics", &[], b"");
        assert_eq!(r.status, 200);
        r.text()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

#[allow(unsafe_code)]
pub fn unsafe_is_root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[allow(unsafe_code)]
pub fn unsafe_kill(pid: i32, sig: i32) {
    // SAFETY: kill takes plain integers and touches no memory.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    try_request(port, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Builds the raw request bytes: `Content-Length` unless a `Transfer-Encoding` header is given,
/// in which case `body` must already be encoded.
pub fn raw_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    let chunked = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"));
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !chunked && (!body.is_empty() || method == "POST" || method == "PUT") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

pub fn try_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Resp> {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    // Write from another thread: a streamed echo answers while the body is still going out.
    let mut w = s.try_clone()?;
    let bytes = raw_request(method, path, headers, body);
    let writer = std::thread::spawn(move || w.write_all(&bytes));
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let _ = writer.join();
    let mut resp = parse_response(&raw, method == "HEAD")?;
    resp.elapsed = started.elapsed();
    Ok(resp)
}

pub fn parse_response(raw: &[u8], head: bool) -> std::io::Result<Resp> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no header end"))?;
    let head_text = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty"))?;
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if chunked && !head {
        body = dechunk(&body);
    }
    Ok(Resp { status, headers, body, elapsed: Duration::ZERO })
}

/// Decodes a chunked body (as much as is complete).
pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

/// Encodes `parts` as a chunked body.
pub fn chunked(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

/// Processes whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && alive(pid) {
                out.push(pid);
            }
        }
    }
    out
}

/// Zombie children of `pid`.
pub fn zombies_of(pid: i32) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            if let Some((_, rest)) = stat.rsplit_once(')') {
                let f: Vec<&str> = rest.split_whitespace().collect();
                if f.first() == Some(&"Z") && f.get(1).and_then(|x| x.parse::<i32>().ok()) == Some(pid) {
                    n += 1;
                }
            }
        }
    }
    n
}

/// Waits until `cond` holds or the limit passes; returns whether it held.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// A shell script in its own temp dir, made executable; returns its path.
pub fn script(body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("script");
    let path = dir.join("fn.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `KEY=value` lines (as printed by `env`) into a map.
pub fn env_map(text: &str) -> HashMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// An http-mode watchdog in front of `test-upstream` on a free port.
pub fn http_mode(extra: &[&str]) -> (Setup, u16) {
    let port = free_port();
    let mut fprocess = format!("{} --port {}", upstream_path().display(), port);
    for e in extra {
        fprocess.push(' ');
        fprocess.push_str(e);
    }
    let setup = watchdog(&fprocess).env("mode", "http").env("upstream_url", &format!("http://127.0.0.1:{port}"));
    (setup, port)
}

/// An http-mode watchdog whose fprocess starts `test-upstream` in the background and exits 0,
/// so the watchdog stays up whatever happens to the server. Returns it healthy, with the
/// server's pid (killed when dropped: no watchdog owns it).
pub fn background_upstream() -> (Watchdog, Pid) {
    let port = free_port();
    let wd = watchdog(&format!("sh -c '{} --port {} & exit 0'", upstream_path().display(), port))
        .env("mode", "http")
        .env("upstream_url", &format!("http://127.0.0.1:{port}"))
        .start();
    wd.wait_healthy(Duration::from_secs(10));
    let pid = wd.get("/pid").text().parse().expect("pid");
    (wd, Pid(pid))
}

/// A process id whose process is SIGKILLed when this is dropped.
pub struct Pid(pub i32);

impl Drop for Pid {
    fn drop(&mut self) {
        unsafe_kill(self.0, libc::SIGKILL);
    }
}

/// Live processes whose environment holds `needle` (e.g. `OF_REPLICA=<instance>/fn.ns-1`, or a
/// prefix of one).
pub fn pids_with_env(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
            if env.split(|b| *b == 0).any(|kv| kv.starts_with(needle.as_bytes())) && alive(pid) {
                out.push(pid);
            }
        }
    }
    out
}

/// The gateway with auth off, for API tests.
pub fn open_gateway() -> Setup {
    gateway().env("basic_auth", "false")
}

impl Watchdog {
    /// The gateway's state folder (set by `Setup::command`).
    pub fn state_dir(&self) -> PathBuf {
        self.tmp.join("state")
    }

    /// The local runtime's instance id, the first part of every replica marker.
    pub fn instance_id(&self) -> String {
        std::fs::read_to_string(self.state_dir().join("instance-id")).unwrap_or_default().trim().to_string()
    }

    pub fn json(&self, method: &str, path: &str, body: &serde_json::Value) -> Resp {
        let b = body.to_string();
        self.request(method, path, &[("Content-Type", "application/json")], b.as_bytes())
    }

    /// Waits until `/system/function/<name>` reports at least `n` available replicas.
    pub fn wait_available(&self, name: &str, n: u64, limit: Duration) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let ok = eventually(limit, || {
            let r = self.get(&format!("/system/function/{name}"));
            if r.status != 200 {
                return false;
            }
            last = serde_json::from_slice(&r.body).unwrap_or_default();
            last["availableReplicas"].as_u64().unwrap_or(0) >= n
        });
        assert!(ok, "{name}: fewer than {n} available replicas within {limit:?}: {last}\n{}", self.log());
        last
    }
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A deployment running `test-upstream` in http mode.
pub fn upstream_function(name: &str) -> serde_json::Value {
    serde_json::json!({
        "service": name,
        "image": "test-upstream:latest",
        "envProcess": upstream_path().display().to_string(),
        "envVars": {"mode": "http", "upstream_url": "http://127.0.0.1:1"},
        "labels": {},
        "annotations": {}
    })
}

/// `Basic base64(user:pass)` (the tests' own small encoder: no dependency for one header).
pub fn basic_auth(user: &str, pass: &str) -> String {
    const TBL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("Basic ");
    out.push_str(&base64(format!("{user}:{pass}").as_bytes(), TBL));
    out
}

/// Standard base64 with padding.
pub fn base64_std(raw: &[u8]) -> String {
    base64(raw, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
}

fn base64(raw: &[u8], tbl: &[u8]) -> String {
    let mut out = String::new();
    for c in raw.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= c.len() { tbl[((n >> (18 - 6 * i)) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// The Basic header for the credentials files in `dir` (`basic-auth-user`, `basic-auth-password`).
pub fn basic_auth_from(dir: &Path) -> String {
    let user = std::fs::read_to_string(dir.join("basic-auth-user")).unwrap();
    let pass = std::fs::read_to_string(dir.join("basic-auth-password")).unwrap();
    basic_auth(user.trim(), pass.trim())
}

/// Copies a folder tree (files and folders).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Reads from `s` into `got` until `needle` appears (panics at end of stream).
pub fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, needle: &str) {
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(got).contains(needle) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended before {needle:?}: {}", String::from_utf8_lossy(got));
        got.extend_from_slice(&buf[..n]);
    }
}

/// Opens a WebSocket upgrade on `path` (test-upstream echoes the tunnel's bytes) and checks two
/// messages come back through it.
pub fn assert_websocket_echo(port: u16, path: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, "\r\n\r\n");
    assert!(got.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&got));
    for msg in [&b"ping-1"[..], b"second message"] {
        s.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
}

/// A real `nats-server` with JetStream on a free port and its own store folder, killed when
/// dropped. `None` (with a note) when the binary is missing: `.ci/run` installs it.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    pub store: PathBuf,
}

pub fn nats_server_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"].iter().map(PathBuf::from).find(|p| p.is_file())
}

impl NatsServer {
    pub fn start() -> NatsServer {
        Self::start_on(free_port(), temp_dir("nats"))
    }

    /// Starts on a given port and store (a restart keeps the streams).
    pub fn start_on(port: u16, store: PathBuf) -> NatsServer {
        let bin = nats_server_path().expect("nats-server is not installed (apt-get install nats-server; scripts/test does)");
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd", store.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        assert!(eventually(Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", port)).is_ok()), "nats-server listening");
        NatsServer { child, port, store }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A clean shutdown (SIGTERM: the server flushes its state), as a restart does.
    pub fn shut_down(&mut self) {
        unsafe_kill(self.child.id() as i32, libc::SIGTERM);
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The real faas-cli: `FAAS_CLI`, else `../shared/tools/faas-cli` beside the checkout.
pub fn faas_cli() -> Option<PathBuf> {
    let p = std::env::var_os("FAAS_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/faas-cli"));
    p.is_file().then_some(p)
}

/// faas-cli with its own HOME and config folder (never a user's), run in `cwd`.
pub struct Cli {
    pub bin: PathBuf,
    pub home: PathBuf,
    pub url: String,
    pub cwd: Option<PathBuf>,
}

impl Cli {
    pub fn new(bin: PathBuf, gw: &Watchdog) -> Cli {
        Cli::at(bin, &format!("http://127.0.0.1:{}", gw.port))
    }

    pub fn at(bin: PathBuf, url: &str) -> Cli {
        Cli { bin, home: temp_dir("faas-cli-home"), url: url.to_string(), cwd: None }
    }

    /// Runs faas-cli; returns (exit code, stdout + stderr).
    pub fn run(&self, args: &[&str], stdin: &str) -> (i32, String) {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("OPENFAAS_CONFIG", self.home.join(".openfaas"))
            .env("OPENFAAS_URL", &self.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(d) = &self.cwd {
            cmd.current_dir(d);
        }
        let mut child = cmd.spawn().expect("run faas-cli");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    pub fn ok(&self, args: &[&str], stdin: &str) -> String {
        let (code, text) = self.run(args, stdin);
        assert_eq!(code, 0, "faas-cli {args:?}: {text}");
        text
    }
}
