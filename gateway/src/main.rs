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

fn main() -> ExitCode {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let a = a.trim_start_matches('-').replace('-', "_");
        match a.split_once('=') {
            Some((k, v)) => {
                env.insert(k.to_string(), v.to_string());
            }
            None if a == "version" => {
                println!("gateway version: {VERSION}\tSHA: {}", watchdog::GIT_SHA);
                return ExitCode::SUCCESS;
            }
            None if a == "help" || a == "h" => {
                println!("gateway [--port N] [--metrics-port N] [--basic-auth true|false] [--secret-mount-path DIR]\nEvery flag also reads the environment variable of the same name with _ (e.g. metrics_port).");
                return ExitCode::SUCCESS;
            }
            None => match args.next() {
                Some(v) => {
                    env.insert(a, v);
                }
                None => {
                    eprintln!("gateway: flag --{a} needs a value");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let (cfg, warnings) = match Config::from_env(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error loading config: {e}");
            return ExitCode::from(1);
        }
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
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
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
        let app = Arc::new(App::new(cfg, credentials, runtime));
        let shutdown = async {
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                return std::future::pending().await;
            };
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            logs::info("Shutting down");
        };
        server::run(listener, metrics, app, shutdown).await;
        ExitCode::SUCCESS
    })
}
