//! The embedded local runtime (spec §15.3): functions as supervised `fwatchdog` replicas on
//! this machine, with secrets, namespaces, logs and state that survives a restart.

pub mod logs;
pub mod replica;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use watchdog::format::parse_duration;

use crate::config::Config;
use crate::error::ApiError;
use crate::model::{self, FunctionDeployment, FunctionNamespace, FunctionStatus, Scaling};
use replica::{Ports, Replica, RunSpec};

/// How `gateway up` runs an image on the host: its assembled folder, template environment and
/// command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LocalImage {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub fprocess: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredFunction {
    deployment: FunctionDeployment,
    replicas: u32,
    #[serde(rename = "createdAt")]
    created_at: String,
}

/// Everything written to `state_dir/state.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Stored {
    namespaces: BTreeMap<String, FunctionNamespace>,
    functions: Vec<StoredFunction>,
    secrets: BTreeSet<(String, String)>,
    images: BTreeMap<String, LocalImage>,
}

struct FnInner {
    deployment: FunctionDeployment,
    scaling: Scaling,
    spec: Arc<RunSpec>,
    desired: u32,
    replicas: Vec<Arc<Replica>>,
    /// Replicas of the previous version during a rolling update: routable until stopped.
    retiring: Vec<Arc<Replica>>,
    created_at: String,
}

impl FnInner {
    fn all(&self) -> impl Iterator<Item = &Arc<Replica>> {
        self.replicas.iter().chain(self.retiring.iter())
    }

    fn new_available(&self) -> usize {
        self.replicas.iter().filter(|r| r.available.load(Ordering::Acquire)).count()
    }
}

pub struct Function {
    pub name: String,
    pub namespace: String,
    /// `name.namespace`, the metrics label.
    pub key: String,
    inner: Mutex<FnInner>,
    /// Number of available replicas; waiters for scale-from-zero watch it.
    available: watch::Sender<usize>,
    rr: AtomicUsize,
    /// Calls in flight (sync and async), and when the last one ended: for scale to zero.
    pub in_flight: AtomicUsize,
    last_activity: Mutex<Instant>,
    pub logs: logs::LogStore,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Function {
    fn inner(&self) -> MutexGuard<'_, FnInner> {
        lock(&self.inner)
    }

    pub fn refresh_available(&self) {
        let n = self.inner().all().filter(|r| r.available.load(Ordering::Acquire)).count();
        self.available.send_replace(n);
    }

    pub fn scaling(&self) -> Scaling {
        self.inner().scaling
    }

    pub fn desired(&self) -> u32 {
        self.inner().desired
    }

    /// The available replica with the fewest calls in flight (ties: round robin), counted as
    /// one more in flight.
    pub fn pick(&self) -> Option<Arc<Replica>> {
        let inner = self.inner();
        let all: Vec<&Arc<Replica>> = inner.all().collect();
        let n = all.len();
        if n == 0 {
            return None;
        }
        let start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(&Arc<Replica>, usize)> = None;
        for i in 0..n {
            let r = all[(start + i) % n];
            if !r.available.load(Ordering::Acquire) {
                continue;
            }
            let load = r.in_flight.load(Ordering::Acquire);
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((r, load));
            }
        }
        best.map(|(r, _)| {
            r.in_flight.fetch_add(1, Ordering::AcqRel);
            r.clone()
        })
    }

    pub fn begin_call(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    pub fn end_call(&self) {
        *lock(&self.last_activity) = Instant::now();
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    fn status(&self) -> FunctionStatus {
        let inner = self.inner();
        let mut st = FunctionStatus::from_deployment(&inner.deployment);
        st.replicas = u64::from(inner.desired);
        st.available_replicas = inner.all().filter(|r| r.available.load(Ordering::Acquire)).count() as u64;
        st.created_at = inner.created_at.clone();
        st
    }
}

struct State {
    namespaces: BTreeMap<String, FunctionNamespace>,
    functions: HashMap<(String, String), Arc<Function>>,
    secrets: BTreeSet<(String, String)>,
    images: BTreeMap<String, LocalImage>,
}

pub struct Runtime {
    cfg: Config,
    pub state_dir: PathBuf,
    instance_id: String,
    pub ports: Ports,
    watchdog: PathBuf,
    state: Mutex<State>,
    /// Serialises state writes so the file on disk is always the latest state.
    write_lock: Mutex<()>,
}

/// The gateway's variables a replica inherits (spec §15.3); nothing else of its environment.
const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "TZ"];
/// Variables only the runtime sets: a deployment's `envVars` cannot override them.
const RESERVED: &[&str] =
    &["port", "metrics_port", "TMPDIR", "bind_address", "healthcheck_interval", "OF_REPLICA", "http_port", "secret_mount_path"];

impl Runtime {
    /// Opens (or creates) `state_dir`, kills what a crashed gateway left running, and restores
    /// the stored functions with their replicas.
    pub async fn start(cfg: &Config) -> Result<Arc<Runtime>, String> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = cfg.state_dir.clone();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create state_dir {}: {e}", dir.display()))?;
        let dir = dir.canonicalize().map_err(|e| format!("state_dir {}: {e}", dir.display()))?;
        let id_file = dir.join("instance-id");
        let instance_id = match std::fs::read_to_string(&id_file) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                write_atomic(&id_file, id.as_bytes()).map_err(|e| format!("cannot write {}: {e}", id_file.display()))?;
                id
            }
        };
        // Replicas of an earlier run of this state_dir (after a crash) go first.
        replica::sweep(&format!("OF_REPLICA={instance_id}/"), false).await;
        let stored: Stored = match std::fs::read(dir.join("state.json")) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("cannot read {}: {e}", dir.join("state.json").display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", dir.join("state.json").display())),
        };
        let watchdog = cfg.watchdog_path.clone().unwrap_or_else(default_watchdog);
        let mut namespaces = stored.namespaces;
        namespaces.entry(cfg.function_namespace.clone()).or_insert_with(|| FunctionNamespace {
            name: cfg.function_namespace.clone(),
            ..Default::default()
        });
        let rt = Arc::new(Runtime {
            cfg: cfg.clone(),
            state_dir: dir,
            instance_id,
            ports: Ports::new(cfg.local_port_range),
            watchdog,
            state: Mutex::new(State { namespaces, functions: HashMap::new(), secrets: stored.secrets, images: stored.images }),
            write_lock: Mutex::new(()),
        });
        for sf in stored.functions {
            let d = sf.deployment;
            let scaling = Scaling::from_labels(&d.spec.labels, cfg.default_scale_max, cfg.default_scale_zero_duration)
                .unwrap_or(Scaling { min: 1, max: cfg.default_scale_max, factor: 10, zero: false, zero_duration: cfg.default_scale_zero_duration });
            let spec = {
                let st = lock(&rt.state);
                match rt.run_spec(&st, &d) {
                    Ok(s) => s,
                    Err(e) => {
                        watchdog::logs::warn(&format!("cannot restore {}.{}: {e}", d.service, d.spec.namespace));
                        continue;
                    }
                }
            };
            let f = rt.new_function(d, scaling, spec, sf.replicas, sf.created_at);
            lock(&rt.state).functions.insert((f.name.clone(), f.namespace.clone()), f.clone());
            rt.reconcile(&f);
        }
        Ok(rt)
    }

    pub fn default_namespace(&self) -> &str {
        &self.cfg.function_namespace
    }

    fn new_function(&self, d: FunctionDeployment, scaling: Scaling, spec: Arc<RunSpec>, desired: u32, created_at: String) -> Arc<Function> {
        Arc::new(Function {
            name: d.service.clone(),
            namespace: d.spec.namespace.clone(),
            key: format!("{}.{}", d.service, d.spec.namespace),
            inner: Mutex::new(FnInner { deployment: d, scaling, spec, desired, replicas: Vec::new(), retiring: Vec::new(), created_at }),
            available: watch::channel(0).0,
            rr: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            last_activity: Mutex::new(Instant::now()),
            logs: logs::LogStore::default(),
        })
    }

    /// Writes the state atomically (write, fsync, rename).
    fn persist(&self) -> Result<(), ApiError> {
        let _w = lock(&self.write_lock);
        let stored = {
            let st = lock(&self.state);
            let mut functions: Vec<StoredFunction> = st
                .functions
                .values()
                .map(|f| {
                    let i = f.inner();
                    StoredFunction { deployment: i.deployment.clone(), replicas: i.desired, created_at: i.created_at.clone() }
                })
                .collect();
            functions.sort_by(|a, b| (&a.deployment.spec.namespace, &a.deployment.service).cmp(&(&b.deployment.spec.namespace, &b.deployment.service)));
            Stored { namespaces: st.namespaces.clone(), functions, secrets: st.secrets.clone(), images: st.images.clone() }
        };
        let bytes = serde_json::to_vec_pretty(&stored).map_err(|e| ApiError::Internal(format!("cannot encode state: {e}")))?;
        write_atomic(&self.state_dir.join("state.json"), &bytes).map_err(|e| ApiError::Internal(format!("cannot write state: {e}")))
    }

    /// Namespace of a request: empty → the default; must be valid and exist.
    pub fn namespace(&self, ns: &str) -> Result<String, ApiError> {
        let ns = if ns.is_empty() { self.cfg.function_namespace.as_str() } else { ns };
        model::check_namespace(ns).map_err(ApiError::BadRequest)?;
        if !lock(&self.state).namespaces.contains_key(ns) {
            return Err(ApiError::BadRequest(format!("namespace {ns} not found")));
        }
        Ok(ns.to_string())
    }

    pub fn lookup(&self, name: &str, ns: &str) -> Option<Arc<Function>> {
        lock(&self.state).functions.get(&(name.to_string(), ns.to_string())).cloned()
    }

    pub fn functions(&self) -> Vec<Arc<Function>> {
        lock(&self.state).functions.values().cloned().collect()
    }

    pub fn list(&self, ns: &str) -> Result<Vec<FunctionStatus>, ApiError> {
        let ns = self.namespace(ns)?;
        let mut out: Vec<FunctionStatus> = self.functions().iter().filter(|f| f.namespace == ns).map(|f| f.status()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn status(&self, name: &str, ns: &str) -> Result<FunctionStatus, ApiError> {
        let ns = self.namespace(ns).map_err(|_| ApiError::function_not_found(name, ns))?;
        self.lookup(name, &ns).map(|f| f.status()).ok_or_else(|| ApiError::function_not_found(name, &ns))
    }

    /// The replica command, folder and environment of a deployment (validated: something to run).
    fn run_spec(&self, st: &State, d: &FunctionDeployment) -> Result<Arc<RunSpec>, ApiError> {
        let image = st.images.get(&d.spec.image);
        let mut env: Vec<(String, String)> =
            INHERITED.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect();
        let set = |env: &mut Vec<(String, String)>, k: &str, v: &str| {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        };
        if let Some(img) = image {
            for (k, v) in &img.env {
                set(&mut env, k, v);
            }
            if !img.fprocess.is_empty() {
                set(&mut env, "fprocess", &img.fprocess);
            }
        }
        for (k, v) in &d.spec.env_vars {
            if !RESERVED.contains(&k.as_str()) {
                set(&mut env, k, v);
            }
        }
        if !d.spec.env_process.is_empty() {
            set(&mut env, "fprocess", &d.spec.env_process);
        }
        if !env.iter().any(|(k, v)| k == "fprocess" && !v.trim().is_empty()) && !env.iter().any(|(k, v)| k == "mode" && v == "static") {
            return Err(ApiError::BadRequest(format!(
                "function {}: no envProcess, and the local runtime does not know image {:?}",
                d.service, d.spec.image
            )));
        }
        let get = |k: &str| env.iter().rev().find(|(ek, _)| ek == k).map(|(_, v)| v.clone());
        let upstream_path = get("upstream_url").filter(|_| get("mode").as_deref() == Some("http")).map(|u| {
            let rest = u.split_once("://").map(|(_, r)| r).unwrap_or(&u);
            rest.find('/').map(|i| rest[i..].to_string()).unwrap_or_default()
        });
        let dur = |k: &str, d: u64| get(k).and_then(|v| parse_duration(&v)).unwrap_or(Duration::from_secs(d));
        let stop_bound = dur("write_timeout", 30) + dur("child_grace_period", 5) + Duration::from_secs(1);
        let workdir = match image {
            Some(img) => img.dir.clone(),
            None => self.state_dir.join("functions").join(&d.spec.namespace).join(&d.service),
        };
        let secrets = d.spec.secrets.iter().map(|s| (s.clone(), self.secret_path(&d.spec.namespace, s))).collect();
        Ok(Arc::new(RunSpec { program: self.watchdog.clone(), workdir, env, upstream_path, secrets, stop_bound }))
    }

    fn secret_path(&self, ns: &str, name: &str) -> PathBuf {
        self.state_dir.join("secrets").join(ns).join(name)
    }

    /// POST (`create`) or PUT of a deployment; validated completely before anything changes.
    pub fn deploy(self: &Arc<Self>, mut d: FunctionDeployment, create: bool) -> Result<(), ApiError> {
        model::check_function_name(&d.service).map_err(ApiError::BadRequest)?;
        d.spec.namespace = self.namespace(&d.spec.namespace)?;
        if d.spec.image.trim().is_empty() {
            return Err(ApiError::BadRequest(format!("function {}: image is required", d.service)));
        }
        let scaling = Scaling::from_labels(&d.spec.labels, self.cfg.default_scale_max, self.cfg.default_scale_zero_duration)
            .map_err(ApiError::BadRequest)?;
        let key = (d.service.clone(), d.spec.namespace.clone());
        let existing = {
            let st = lock(&self.state);
            for s in &d.spec.secrets {
                model::check_secret_name(s).map_err(ApiError::BadRequest)?;
                if !st.secrets.contains(&(d.spec.namespace.clone(), s.clone())) {
                    return Err(ApiError::BadRequest(format!("unable to find secret: {s}")));
                }
            }
            let existing = st.functions.get(&key).cloned();
            match (&existing, create) {
                (Some(_), true) => return Err(ApiError::Conflict(format!("function {}.{} already exists", d.service, d.spec.namespace))),
                (None, false) => return Err(ApiError::function_not_found(&d.service, &d.spec.namespace)),
                _ => {}
            }
            existing
        };
        let spec = self.run_spec(&lock(&self.state), &d)?;
        if spec.workdir.starts_with(self.state_dir.join("functions")) {
            std::fs::create_dir_all(&spec.workdir).map_err(|e| ApiError::Internal(format!("cannot create {}: {e}", spec.workdir.display())))?;
        }
        match existing {
            None => {
                let f = self.new_function(d, scaling, spec, scaling.min, logs::time::rfc3339(logs::time::now()));
                lock(&self.state).functions.insert(key, f.clone());
                self.persist()?;
                self.reconcile(&f);
            }
            Some(f) => {
                let old = {
                    let mut i = f.inner();
                    i.desired = i.desired.clamp(scaling.min, scaling.max);
                    i.deployment = d;
                    i.scaling = scaling;
                    i.spec = spec;
                    let old = std::mem::take(&mut i.replicas);
                    i.retiring.extend(old.iter().cloned());
                    old
                };
                self.persist()?;
                self.reconcile(&f);
                // Rolling replacement: the old replicas serve until the new ones are available.
                let f2 = f.clone();
                let bound = self.cfg.scale_from_zero_timeout.max(Duration::from_secs(5));
                tokio::spawn(async move {
                    let mut rx = f2.available.subscribe();
                    let ready = async {
                        loop {
                            let done = {
                                let i = f2.inner();
                                i.new_available() >= i.desired as usize
                            };
                            if done || rx.changed().await.is_err() {
                                return;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(bound, ready).await;
                    stop_retiring(f2, old).await;
                });
            }
        }
        Ok(())
    }

    /// Starts or stops replicas until their number matches the desired count.
    fn reconcile(self: &Arc<Self>, f: &Arc<Function>) {
        let mut stopping = Vec::new();
        {
            let mut i = f.inner();
            while (i.replicas.len() as u32) < i.desired {
                let no = (1..).find(|n| !i.all().any(|r| r.no == *n)).unwrap_or(1);
                let instance = format!("{}-{no}", f.name);
                let marker = format!("{}/{}.{}-{no}", self.instance_id, f.name, f.namespace);
                let r = Replica::new(no, instance, marker, i.spec.clone());
                i.replicas.push(r.clone());
                tokio::spawn(replica::supervise(self.clone(), f.clone(), r));
            }
            while (i.replicas.len() as u32) > i.desired {
                if let Some(r) = i.replicas.pop() {
                    i.retiring.push(r.clone());
                    stopping.push(r);
                }
            }
        }
        if !stopping.is_empty() {
            tokio::spawn(stop_retiring(f.clone(), stopping));
        }
    }

    pub async fn delete(&self, name: &str, ns: &str) -> Result<(), ApiError> {
        let ns = self.namespace(ns)?;
        let f = lock(&self.state).functions.remove(&(name.to_string(), ns.clone())).ok_or_else(|| ApiError::function_not_found(name, &ns))?;
        self.persist()?;
        let replicas = {
            let mut i = f.inner();
            let mut all = std::mem::take(&mut i.replicas);
            all.append(&mut i.retiring);
            all
        };
        f.refresh_available();
        futures_stop(replicas).await;
        let _ = std::fs::remove_dir_all(self.state_dir.join("run").join(&ns).join(name));
        Ok(())
    }

    /// Sets the desired replicas (manual scaling, alerts, scale from/to zero).
    pub fn scale(self: &Arc<Self>, f: &Arc<Function>, replicas: u32) -> Result<(), ApiError> {
        f.inner().desired = replicas;
        self.reconcile(f);
        self.persist()
    }

    /// Scale from zero (§10.3): an available replica, counted in flight, waiting (bounded) for
    /// one when none is ready.
    pub async fn acquire(self: &Arc<Self>, f: &Arc<Function>) -> Result<Arc<Replica>, ApiError> {
        if let Some(r) = f.pick() {
            return Ok(r);
        }
        if !self.cfg.scale_from_zero {
            return Err(ApiError::Unavailable(format!("no ready replica for {}", f.key)));
        }
        let bound = self.cfg.scale_from_zero_timeout;
        let deadline = Instant::now() + bound;
        let mut rx = f.available.subscribe();
        loop {
            if f.desired() == 0 {
                let min = f.scaling().min.max(1);
                self.scale(f, min)?;
            }
            if let Some(r) = f.pick() {
                return Ok(r);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => {
                    return f.pick().ok_or_else(|| {
                        ApiError::Unavailable(format!("no ready replica for {} after {}", f.key, watchdog::format::go_duration(bound)))
                    })
                }
            }
        }
    }

    /// Scales idle functions labelled `com.openfaas.scale.zero=true` to 0 (§10.4).
    pub fn scale_idle_to_zero(self: &Arc<Self>) {
        for f in self.functions() {
            let s = f.scaling();
            if !s.zero || f.desired() == 0 || f.in_flight.load(Ordering::Acquire) > 0 {
                continue;
            }
            if lock(&f.last_activity).elapsed() >= s.zero_duration {
                watchdog::logs::info(&format!("Scaling {} to zero after {} idle", f.key, watchdog::format::go_duration(s.zero_duration)));
                let _ = self.scale(&f, 0);
            }
        }
    }

    /// Stops every replica at once (shutdown); the stored desired counts stay.
    pub async fn shutdown(&self) {
        let all: Vec<Arc<Replica>> = self
            .functions()
            .iter()
            .flat_map(|f| {
                let mut i = f.inner();
                let mut all = std::mem::take(&mut i.replicas);
                all.append(&mut i.retiring);
                all
            })
            .collect();
        futures_stop(all).await;
    }

    // ---- secrets ----

    pub fn secrets(&self, ns: &str) -> Result<Vec<(String, String)>, ApiError> {
        let ns = self.namespace(ns)?;
        Ok(lock(&self.state).secrets.iter().filter(|(n, _)| *n == ns).map(|(n, s)| (s.clone(), n.clone())).collect())
    }

    /// Creates (`create`) or replaces a secret's value.
    pub fn put_secret(&self, name: &str, ns: &str, value: &[u8], create: bool) -> Result<(), ApiError> {
        model::check_secret_name(name).map_err(ApiError::BadRequest)?;
        let ns = self.namespace(ns)?;
        let key = (ns.clone(), name.to_string());
        {
            let st = lock(&self.state);
            match (st.secrets.contains(&key), create) {
                (true, true) => return Err(ApiError::Conflict(format!("secret {name} already exists"))),
                (false, false) => return Err(ApiError::NotFound(format!("secret {name} not found"))),
                _ => {}
            }
        }
        let path = self.secret_path(&ns, name);
        write_secret(&path, value).map_err(|e| ApiError::Internal(format!("cannot write secret: {e}")))?;
        lock(&self.state).secrets.insert(key);
        self.persist()
    }

    pub fn delete_secret(&self, name: &str, ns: &str) -> Result<(), ApiError> {
        model::check_secret_name(name).map_err(ApiError::BadRequest)?;
        let ns = self.namespace(ns)?;
        if !lock(&self.state).secrets.remove(&(ns.clone(), name.to_string())) {
            return Err(ApiError::NotFound(format!("secret {name} not found")));
        }
        let _ = std::fs::remove_file(self.secret_path(&ns, name));
        self.persist()
    }

    // ---- namespaces ----

    pub fn namespaces(&self) -> Vec<String> {
        lock(&self.state).namespaces.keys().cloned().collect()
    }

    pub fn get_namespace(&self, ns: &str) -> Result<FunctionNamespace, ApiError> {
        let mut n = lock(&self.state).namespaces.get(ns).cloned().ok_or_else(|| ApiError::NotFound(format!("namespace {ns} not found")))?;
        n.name = ns.to_string();
        Ok(n)
    }

    pub fn put_namespace(&self, n: FunctionNamespace, create: bool) -> Result<(), ApiError> {
        model::check_namespace(&n.name).map_err(ApiError::BadRequest)?;
        {
            let mut st = lock(&self.state);
            match (st.namespaces.contains_key(&n.name), create) {
                (true, true) => return Err(ApiError::Conflict(format!("namespace {} already exists", n.name))),
                (false, false) => return Err(ApiError::NotFound(format!("namespace {} not found", n.name))),
                _ => {}
            }
            st.namespaces.insert(n.name.clone(), n);
        }
        self.persist()
    }

    pub fn delete_namespace(&self, ns: &str) -> Result<(), ApiError> {
        if ns == self.cfg.function_namespace {
            return Err(ApiError::BadRequest(format!("namespace {ns} is the default namespace and cannot be deleted")));
        }
        {
            let mut st = lock(&self.state);
            if !st.namespaces.contains_key(ns) {
                return Err(ApiError::NotFound(format!("namespace {ns} not found")));
            }
            if st.functions.keys().any(|(_, n)| n == ns) || st.secrets.iter().any(|(n, _)| n == ns) {
                return Err(ApiError::Conflict(format!("namespace {ns} is not empty")));
            }
            st.namespaces.remove(ns);
        }
        self.persist()
    }

    // ---- gateway up ----

    pub fn local_image(&self, image: &str) -> Option<LocalImage> {
        lock(&self.state).images.get(image).cloned()
    }

    /// The stored deployment of a function.
    pub fn deployment(&self, name: &str, ns: &str) -> Option<FunctionDeployment> {
        self.lookup(name, ns).map(|f| f.inner().deployment.clone())
    }

    /// Registers how to run `image` on this host (from `gateway up`).
    pub fn register_image(&self, image: &str, local: LocalImage) -> Result<(), ApiError> {
        lock(&self.state).images.insert(image.to_string(), local);
        self.persist()
    }
}

/// Stops replicas of `f` that are in its retiring list, then forgets them: until then their
/// numbers (and so their markers) are not reused.
async fn stop_retiring(f: Arc<Function>, old: Vec<Arc<Replica>>) {
    futures_stop(old.clone()).await;
    f.inner().retiring.retain(|r| !old.iter().any(|o| Arc::ptr_eq(o, r)));
    f.refresh_available();
}

/// Stops replicas concurrently and waits for all of them.
async fn futures_stop(replicas: Vec<Arc<Replica>>) {
    let tasks: Vec<_> = replicas.into_iter().map(|r| tokio::spawn(async move { r.stop().await })).collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// `fwatchdog` beside the gateway binary, else the one on `PATH`.
fn default_watchdog() -> PathBuf {
    if let Some(beside) = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("fwatchdog"))) {
        if beside.is_file() {
            return beside;
        }
    }
    PathBuf::from("fwatchdog")
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn write_secret(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    write_atomic(path, data)
}
