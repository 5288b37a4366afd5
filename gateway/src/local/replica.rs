//! One replica: a supervised `fwatchdog` process on a loopback port, health-checked on
//! `/_/health`, restarted with backoff when it exits, and stopped so that no process of it
//! survives (spec §15.3).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
use tokio::time::Instant;
use watchdog::body::{full, RespBody};
use watchdog::process;
use watchdog::upstream::Pool;

use super::{Function, Runtime};

/// How one replica is run: everything but its ports and folders.
pub struct RunSpec {
    pub program: PathBuf,
    pub workdir: PathBuf,
    /// The built environment (gateway basics, template, envVars, fprocess), without the
    /// runtime's per-replica variables.
    pub env: Vec<(String, String)>,
    /// `upstream_url`'s path when the function runs in http mode.
    pub upstream_path: Option<String>,
    /// Secret files to expose: (name, source file).
    pub secrets: Vec<(String, PathBuf)>,
    /// SIGTERM to SIGKILL: the replica's write_timeout + child_grace_period.
    pub stop_bound: Duration,
}

pub struct Target {
    pub authority: http::uri::Authority,
    pub pool: Arc<Pool<RespBody>>,
}

pub struct Replica {
    pub no: u32,
    /// `<name>-<no>`, the `instance` of its log lines.
    pub instance: String,
    /// `OF_REPLICA` value every process of this replica inherits.
    pub marker: String,
    pub spec: Arc<RunSpec>,
    pub available: AtomicBool,
    pub in_flight: AtomicUsize,
    pub target: Mutex<Option<Arc<Target>>>,
    stop: watch::Sender<bool>,
    done: watch::Sender<bool>,
}

impl Replica {
    pub fn new(no: u32, instance: String, marker: String, spec: Arc<RunSpec>) -> Arc<Replica> {
        Arc::new(Replica {
            no,
            instance,
            marker,
            spec,
            available: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            target: Mutex::new(None),
            stop: watch::channel(false).0,
            done: watch::channel(false).0,
        })
    }

    pub fn target(&self) -> Option<Arc<Target>> {
        self.target.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes the replica out of rotation after it refused a connection; its health check puts
    /// it back once it answers again.
    pub fn out_of_rotation(&self, f: &Function) {
        self.set_available(f, None);
    }

    fn set_available(&self, f: &Function, target: Option<Arc<Target>>) {
        let up = target.is_some();
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = target;
        self.available.store(up, Ordering::Release);
        f.refresh_available();
    }

    /// Asks the supervisor to stop the replica, and waits until nothing of it runs.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let mut done = self.done.subscribe();
        let _ = done.wait_for(|d| *d).await;
    }
}

enum Ended {
    Stopped,
    Exited(String),
}

/// Runs the replica until it is stopped: start, watch, restart with backoff (1 s doubling to
/// 30 s, reset after 60 s of uptime).
pub async fn supervise(rt: Arc<Runtime>, f: Arc<Function>, r: Arc<Replica>) {
    let mut stop = r.stop.subscribe();
    let mut backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            break;
        }
        let started = Instant::now();
        match run_once(&rt, &f, &r, &mut stop).await {
            Ended::Stopped => break,
            Ended::Exited(why) => {
                watchdog::logs::warn(&format!("replica {}.{} exited: {why}", r.instance, f.namespace));
                f.logs.push(&r.instance, format!("replica exited: {why}"));
            }
        }
        sweep(&format!("OF_REPLICA={}", r.marker), true).await;
        if started.elapsed() >= Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
    r.set_available(&f, None);
    sweep(&format!("OF_REPLICA={}", r.marker), true).await;
    r.done.send_replace(true);
}

async fn run_once(rt: &Arc<Runtime>, f: &Arc<Function>, r: &Arc<Replica>, stop: &mut watch::Receiver<bool>) -> Ended {
    let spec = &r.spec;
    let Some(port) = rt.ports.alloc() else { return Ended::Exited("no free port in local_port_range".into()) };
    let http_port = match spec.upstream_path {
        Some(_) => match rt.ports.alloc() {
            Some(p) => Some(p),
            None => {
                rt.ports.release(port);
                return Ended::Exited("no free port in local_port_range".into());
            }
        },
        None => None,
    };
    let ended = run_ports(rt, f, r, stop, port, http_port).await;
    rt.ports.release(port);
    if let Some(p) = http_port {
        rt.ports.release(p);
    }
    ended
}

async fn run_ports(
    rt: &Arc<Runtime>,
    f: &Arc<Function>,
    r: &Arc<Replica>,
    stop: &mut watch::Receiver<bool>,
    port: u16,
    http_port: Option<u16>,
) -> Ended {
    let spec = &r.spec;
    let run_dir = rt.state_dir.join("run").join(&f.namespace).join(&r.instance);
    let tmp = run_dir.join("tmp");
    let _ = std::fs::remove_dir_all(&run_dir);
    if let Err(e) = std::fs::create_dir_all(&tmp) {
        return Ended::Exited(format!("cannot create {}: {e}", tmp.display()));
    }
    let mut env = spec.env.clone();
    let mut set = |k: &str, v: String| {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v));
    };
    set("port", port.to_string());
    set("metrics_port", "0".into());
    set("bind_address", "127.0.0.1".into());
    set("healthcheck_interval", "0s".into());
    set("TMPDIR", tmp.display().to_string());
    set("OF_REPLICA", r.marker.clone());
    if let (Some(p), Some(path)) = (http_port, &spec.upstream_path) {
        set("http_port", p.to_string());
        set("upstream_url", format!("http://127.0.0.1:{p}{path}"));
    }
    let mut bind_ro = None;
    if !spec.secrets.is_empty() {
        let dir = run_dir.join("secrets");
        if let Err(e) = copy_secrets(&dir, &spec.secrets) {
            return Ended::Exited(format!("cannot prepare secrets: {e}"));
        }
        set("secret_mount_path", dir.display().to_string());
        // As root, also where OpenFaaS functions look: /var/openfaas/secrets (spec §15.3).
        if secrets_mount_possible() {
            bind_ro = Some((dir, PathBuf::from(SECRETS_MOUNT)));
        }
    }
    let (out, w1, w2) = match process::shared_pipe() {
        Ok(p) => p,
        Err(e) => return Ended::Exited(format!("cannot create a pipe: {e}")),
    };
    let cmd = process::Cmd {
        program: spec.program.display().to_string(),
        args: Vec::new(),
        env: env.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        stdin: process::Io::Null,
        stdout: process::Io::Fd(w1),
        stderr: process::Io::Fd(w2),
        cwd: Some(spec.workdir.clone()),
        clear_env: true,
        bind_ro,
    };
    let with_bind = cmd.bind_ro.is_some();
    let spawned = match process::spawn(cmd) {
        Ok(s) => s,
        Err(e) if with_bind => {
            // No mount namespaces here (a container without CAP_SYS_ADMIN): secret_mount_path only.
            MOUNT_FAILED.store(true, Ordering::Relaxed);
            return Ended::Exited(format!("cannot mount secrets at {SECRETS_MOUNT} ({e}); from now on they are only at secret_mount_path"));
        }
        Err(e) => return Ended::Exited(format!("cannot start {}: {e}", spec.program.display())),
    };
    let pid = spawned.group.pid;
    {
        let f = f.clone();
        let instance = r.instance.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(out);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        f.logs.push(&instance, text.trim_end_matches(['\n', '\r']).to_string());
                    }
                }
            }
        });
    }
    let mut exit = spawned.exit;
    let authority: http::uri::Authority = match format!("127.0.0.1:{port}").parse() {
        Ok(a) => a,
        Err(e) => return Ended::Exited(format!("bad address: {e}")),
    };
    let target = Arc::new(Target { authority, pool: Pool::new(Some(Duration::from_secs(1))) });
    tokio::spawn(target.pool.clone().sweep());
    let started = Instant::now();
    let mut ever_ok = false;
    let mut fails = 0;
    loop {
        let interval = match (ever_ok, started.elapsed() < Duration::from_secs(1)) {
            (true, _) => Duration::from_secs(2),
            (false, true) => Duration::from_millis(5),
            (false, false) => Duration::from_millis(50),
        };
        tokio::select! {
            status = &mut exit => {
                r.set_available(f, None);
                target.pool.clear();
                let why = status.map(|s| s.describe()).unwrap_or_else(|_| "unknown".into());
                return Ended::Exited(why);
            }
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => {
                r.set_available(f, None);
                drain(r, spec.stop_bound).await;
                process::kill_pid(pid, libc::SIGTERM);
                if tokio::time::timeout(spec.stop_bound, &mut exit).await.is_err() {
                    process::kill_pid(pid, libc::SIGKILL);
                    let _ = exit.await;
                }
                target.pool.clear();
                return Ended::Stopped;
            }
            _ = tokio::time::sleep(interval) => {
                let ok = probe(&target).await;
                if ok {
                    fails = 0;
                    ever_ok = true;
                    if !r.available.load(Ordering::Acquire) {
                        r.set_available(f, Some(target.clone()));
                    }
                } else if ever_ok {
                    fails += 1;
                    if fails >= 3 && r.available.load(Ordering::Acquire) {
                        r.set_available(f, None);
                    }
                }
            }
        }
    }
}

const SECRETS_MOUNT: &str = "/var/openfaas/secrets";
static MOUNT_FAILED: AtomicBool = AtomicBool::new(false);

/// Root, a mount point that exists (created once), and no earlier failure.
fn secrets_mount_possible() -> bool {
    !MOUNT_FAILED.load(Ordering::Relaxed) && process::is_root() && std::fs::create_dir_all(SECRETS_MOUNT).is_ok()
}

/// Waits (bounded) for the calls already routed to the replica to finish.
async fn drain(r: &Replica, bound: Duration) {
    let until = Instant::now() + bound;
    while r.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `GET /_/health` → 200 within a second.
async fn probe(t: &Target) -> bool {
    let uri = format!("http://{}/_/health", t.authority);
    let Ok(req) = Request::get(uri).body(full(Bytes::new())) else { return false };
    let call = async {
        let (resp, lease) = t.pool.request(req).await.ok()?;
        let ok = resp.status() == StatusCode::OK;
        let _ = resp.into_body().collect().await.ok()?;
        lease.release();
        Some(ok)
    };
    matches!(tokio::time::timeout(Duration::from_secs(1), call).await, Ok(Some(true)))
}

fn copy_secrets(dir: &std::path::Path, secrets: &[(String, PathBuf)]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    for (name, src) in secrets {
        let data = std::fs::read(src)?;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(dir.join(name))?;
        std::io::Write::write_all(&mut f, &data)?;
    }
    Ok(())
}

/// SIGKILLs every process whose environment holds `needle` (`OF_REPLICA=<marker>`; with
/// `exact` false, any marker starting with it), until none is left.
pub async fn sweep(needle: &str, exact: bool) {
    for _ in 0..50 {
        let pids = marked(needle, exact);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            process::kill_pid(pid, libc::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Live (non-zombie) processes carrying the marker.
pub fn marked(needle: &str, exact: bool) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        let hit = environ.split(|b| *b == 0).any(|kv| if exact { kv == needle.as_bytes() } else { kv.starts_with(needle.as_bytes()) });
        if !hit {
            continue;
        }
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('Z')))
            .unwrap_or(true);
        if !zombie {
            out.push(pid);
        }
    }
    out
}

/// Loopback ports for replicas, from `local_port_range`; a port that cannot be bound now is
/// skipped.
pub struct Ports {
    range: (u16, u16),
    state: Mutex<(std::collections::HashSet<u16>, u16)>,
}

impl Ports {
    /// Starts at a random place in the range, so gateways sharing a host rarely race for a port.
    pub fn new(range: (u16, u16)) -> Ports {
        let span = u32::from(range.1 - range.0) + 1;
        let r = uuid::Uuid::new_v4().as_u128() as u32 % span;
        Ports { range, state: Mutex::new((Default::default(), range.0 + r as u16)) }
    }

    pub fn alloc(&self) -> Option<u16> {
        let (lo, hi) = self.range;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let span = u32::from(hi - lo) + 1;
        for _ in 0..span {
            let p = st.1;
            st.1 = if p >= hi { lo } else { p + 1 };
            if st.0.contains(&p) {
                continue;
            }
            if std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], p))).is_ok() {
                st.0.insert(p);
                return Some(p);
            }
        }
        None
    }

    pub fn release(&self, p: u16) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0.remove(&p);
    }
}
