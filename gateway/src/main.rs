//! `gateway`: environment (and `--port`/`--metrics-port` flags) → `Config` → serve.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use gateway::auth::Credentials;
use gateway::config::{Config, IGNORED};
use gateway::local::Runtime;
use gateway::server::{self, App, VERSION};
use tokio::signal::unix::{signal, SignalKind};
use watchdog::logs;

const HELP: &str = "\
gateway [up [-f stack.yml] [--filter NAME] | queue-worker] [--NAME VALUE]...

Commands:
  (none)        serve the OpenFaaS API and /function routes (local runtime unless
                functions_provider_url is set)
  up            read a faas-cli stack file (default stack.yml, then stack.yaml), assemble and
                deploy each function to the local runtime, then serve
  queue-worker  run async workers alone (needs faas_nats_address)

Every environment variable of the gateway (port, metrics_port, basic_auth, state_dir,
functions_provider_url, upstream_timeout, ...) is also a flag: --upstream-timeout 30s.
A flag beats the variable.";

enum Command {
    Serve,
    Up { file: Option<std::path::PathBuf>, filter: Option<String> },
    QueueWorker,
}

fn main() -> ExitCode {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    let mut command = Command::Serve;
    let mut args = std::env::args().skip(1);
    while let Some(raw) = args.next() {
        if !raw.starts_with('-') {
            match (raw.as_str(), &command) {
                ("up", Command::Serve) => command = Command::Up { file: None, filter: None },
                ("queue-worker", Command::Serve) => command = Command::QueueWorker,
                _ => {
                    eprintln!("gateway: unknown command or argument {raw:?} (see --help)");
                    return ExitCode::from(2);
                }
            }
            continue;
        }
        let body = raw.trim_start_matches('-');
        let (key, inline) = match body.split_once('=') {
            Some((k, v)) => (k.replace('-', "_"), Some(v.to_string())),
            None => (body.replace('-', "_"), None),
        };
        match key.as_str() {
            "version" => {
                println!("gateway version: {VERSION}\tSHA: {}", watchdog::GIT_SHA);
                return ExitCode::SUCCESS;
            }
            "help" | "h" => {
                println!("{HELP}");
                return ExitCode::SUCCESS;
            }
            _ => {}
        }
        let Some(value) = inline.or_else(|| args.next()) else {
            eprintln!("gateway: flag --{key} needs a value");
            return ExitCode::from(2);
        };
        match (&mut command, key.as_str()) {
            (Command::Up { file, .. }, "f" | "file" | "yaml") => *file = Some(value.into()),
            (Command::Up { filter, .. }, "filter") => *filter = Some(value),
            _ => {
                env.insert(key, value);
            }
        }
    }
    let (cfg, warnings) = match Config::from_env(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error loading config: {e}");
            return ExitCode::from(1);
        }
    };
    logs::init(cfg.log_format, true, None);
    if let Command::QueueWorker = command {
        if cfg.faas_nats_address.is_none() {
            eprintln!("queue-worker needs faas_nats_address: the embedded queue belongs to one gateway");
            return ExitCode::from(1);
        }
        return queue_worker(cfg, env.contains_key("metrics_port"));
    }
    // `gateway up`: everything is read and assembled before anything starts.
    let planned = match &command {
        Command::Up { file, filter } => {
            if cfg.functions_provider_url.is_some() {
                eprintln!("gateway up runs functions on the local runtime: unset functions_provider_url");
                return ExitCode::from(1);
            }
            match gateway::up::plan(file.as_deref(), filter.as_deref(), &cfg.state_dir) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("gateway up: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        _ => None,
    };
    logs::info(&format!("gateway version: {VERSION}\tSHA: {}", watchdog::GIT_SHA));
    for w in &warnings {
        logs::warn(w);
    }
    for k in IGNORED {
        if env.contains_key(*k) {
            logs::info(&format!("{k} is set and ignored by this gateway"));
        }
    }
    let credentials = if cfg.basic_auth {
        match Credentials::load_or_generate(&cfg.secret_mount_path) {
            Ok((c, generated)) => {
                if generated {
                    logs::info(&format!("Generated basic-auth credentials in {} (user: admin)", cfg.secret_mount_path.display()));
                }
                Some(c)
            }
            Err(e) => {
                eprintln!("Error loading config: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let Some(runtime) = runtime() else { return ExitCode::from(1) };
    runtime.block_on(async move {
        let bind = |port: u16| tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
        let listener = match bind(cfg.port).await {
            Ok(l) => l,
            Err(e) => {
                logs::error(&format!("cannot listen on port {}: {e}", cfg.port));
                return ExitCode::from(1);
            }
        };
        let metrics = match cfg.metrics_port {
            0 => None,
            p => match bind(p).await {
                Ok(l) => Some(l),
                Err(e) => {
                    logs::error(&format!("cannot listen on metrics port {p}: {e}"));
                    return ExitCode::from(1);
                }
            },
        };
        logs::info(&format!("Listening on port: {}", listener.local_addr().map(|a| a.port()).unwrap_or(cfg.port)));
        if let Some(m) = &metrics {
            logs::info(&format!("Metrics listening on port: {}", m.local_addr().map(|a| a.port()).unwrap_or(0)));
        }
        let runtime = if cfg.functions_provider_url.is_none() {
            // Replicas' orphans are reparented to the gateway and collected here.
            if let Err(e) = watchdog::process::start_reaper() {
                logs::error(&format!("cannot become the replicas' subreaper: {e}"));
                return ExitCode::from(1);
            }
            match Runtime::start(&cfg).await {
                Ok(rt) => {
                    logs::info(&format!("Local runtime: state in {}", rt.state_dir.display()));
                    if let Some(planned) = planned {
                        if let Err(e) = gateway::up::apply(&rt, planned) {
                            eprintln!("gateway up: {e}");
                            rt.shutdown().await;
                            return ExitCode::from(1);
                        }
                    }
                    Some(rt)
                }
                Err(e) => {
                    logs::error(&e);
                    return ExitCode::from(1);
                }
            }
        } else {
            None
        };
        let external = match &cfg.functions_provider_url {
            Some(url) => {
                let logs_url = cfg.logs_provider_url.clone().unwrap_or_else(|| url.clone());
                let auth = credentials.as_ref().map(|c| c.header());
                match gateway::external::External::new(url, &logs_url, auth, cfg.upstream_timeout) {
                    Ok(e) => {
                        logs::info(&format!("Provider: {url}"));
                        Some(Arc::new(e))
                    }
                    Err(e) => {
                        logs::error(&e);
                        return ExitCode::from(1);
                    }
                }
            }
            None => None,
        };
        let queue = match open_queue(&cfg).await {
            Ok(q) => q,
            Err(e) => {
                logs::error(&format!("async queue: {e}"));
                return ExitCode::from(1);
            }
        };
        if !cfg.async_workers && cfg.faas_nats_address.is_none() {
            logs::warn("async_workers=false with the embedded queue: records wait for a gateway with workers on this state_dir");
        }
        let app = Arc::new(App::new(cfg, credentials, runtime, external, Some(queue)));
        server::run(listener, metrics, app, shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// NATS JetStream when `faas_nats_address` is set, else the embedded queue in `state_dir`.
async fn open_queue(cfg: &Config) -> Result<Arc<dyn gateway::queue::Backend>, gateway::queue::QueueError> {
    use gateway::queue::{embedded::Embedded, nats, QueueError};
    match &cfg.faas_nats_address {
        Some(address) => {
            let q = nats::Nats::connect(nats::Settings {
                address,
                port: cfg.faas_nats_port,
                subject: &cfg.faas_nats_channel,
                stream: &cfg.faas_nats_stream,
                durable: &cfg.faas_nats_queue_group,
            })
            .await?;
            let limit = q.max_body.min(cfg.async_max_body_bytes);
            logs::info(&format!("Async queue: NATS JetStream {address}:{}, stream {}, body limit {limit} bytes", cfg.faas_nats_port, cfg.faas_nats_stream));
            Ok(q)
        }
        None => {
            std::fs::create_dir_all(&cfg.state_dir).map_err(|e| QueueError::new(format!("cannot create {}: {e}", cfg.state_dir.display())))?;
            Ok(Embedded::open(&cfg.state_dir.join("queue.redb"))?)
        }
    }
}

/// `gateway queue-worker`: async workers alone (NATS only), invoking through `gateway_url`,
/// with `/metrics` and `/healthz` on `metrics_port` (default 8083).
fn queue_worker(mut cfg: Config, metrics_port_set: bool) -> ExitCode {
    if !metrics_port_set {
        cfg.metrics_port = 8083;
    }
    // Functions' labels are read from the gateway's API, which needs its credentials.
    let auth = match cfg.basic_auth {
        false => None,
        true if !cfg.secret_mount_path.join(gateway::auth::USER_FILE).exists() => {
            eprintln!("queue-worker: basic_auth=true but no credentials in {}", cfg.secret_mount_path.display());
            return ExitCode::from(1);
        }
        true => match Credentials::load_or_generate(&cfg.secret_mount_path) {
            Ok((c, _)) => Some(c.header()),
            Err(e) => {
                eprintln!("Error loading config: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let Some(runtime) = runtime() else { return ExitCode::from(1) };
    runtime.block_on(async move {
        let queue = match open_queue(&cfg).await {
            Ok(q) => q,
            Err(e) => {
                logs::error(&format!("async queue: {e}"));
                return ExitCode::from(1);
            }
        };
        let metrics = match cfg.metrics_port {
            0 => None,
            p => match tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), p)).await {
                Ok(l) => {
                    logs::info(&format!("Metrics listening on port: {}", l.local_addr().map(|a| a.port()).unwrap_or(p)));
                    Some(l)
                }
                Err(e) => {
                    logs::error(&format!("cannot listen on metrics port {p}: {e}"));
                    return ExitCode::from(1);
                }
            },
        };
        logs::info(&format!("Queue worker: invoking through {}", cfg.gateway_url));
        let directory = match gateway::external::External::new(&cfg.gateway_url, &cfg.gateway_url, auth, cfg.upstream_timeout) {
            Ok(d) => d,
            Err(e) => {
                logs::error(&format!("gateway_url: {e}"));
                return ExitCode::from(1);
            }
        };
        let mut app = App::new(cfg, None, None, None, Some(queue));
        app.directory = Some(Arc::new(directory));
        let app = Arc::new(app);
        server::run_worker(metrics, app, shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    logs::info("Shutting down");
}

/// One runtime thread: replicas are spawned from it (their parent-death signal follows the
/// spawning thread), and a 2-core board has no core to spare for a second.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            None
        }
    }
}
