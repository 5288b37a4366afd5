//! `fwatchdog`: flags and environment → `Config` → serve until the shutdown sequence ends.
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, ArgAction, Command};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use watchdog::config::{aliases, Config, Mode, VARS};
use watchdog::format::go_duration;
use watchdog::modes::Handler;
use watchdog::server::App;
use watchdog::{logs, metrics, modes, process, server};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const SHA: &str = watchdog::GIT_SHA;

fn flag_name(var: &str) -> String {
    var.to_ascii_lowercase().replace('_', "-")
}

fn cli() -> Command {
    let mut cmd = Command::new("fwatchdog")
        .about("OpenFaaS-compatible function watchdog. Every option is also read from the environment variable named in brackets; a flag wins over its variable.")
        .disable_version_flag(true)
        .arg(Arg::new("version").long("version").action(ArgAction::SetTrue).help("Print version and exit"))
        .arg(
            Arg::new("run-healthcheck")
                .long("run-healthcheck")
                .action(ArgAction::SetTrue)
                .help("Exit 0 if the lock file exists (or /_/health is 200 with suppress_lock), else 1"),
        );
    for var in VARS {
        let mut arg = Arg::new(var.name)
            .long(&*Box::leak(flag_name(var.name).into_boxed_str()))
            .value_name("VALUE")
            .help(format!("{} [env: {}]", var.help, var.name));
        if var.boolean {
            arg = arg.num_args(0..=1).default_missing_value("true");
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// Go-style `-flag` becomes `--flag`, and `_` in a flag name becomes `-`.
fn normalize_args(args: impl Iterator<Item = String>) -> Vec<String> {
    args.enumerate()
        .map(|(i, a)| {
            if i == 0 || !a.starts_with('-') || a == "-" || a == "--" {
                return a;
            }
            let body = a.trim_start_matches('-');
            if !body.starts_with(|c: char| c.is_ascii_alphabetic()) || (a.len() == 2 && !a.starts_with("--")) {
                return a;
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let mut out = format!("--{}", name.replace('_', "-"));
            if let Some(v) = value {
                out.push('=');
                out.push_str(v);
            }
            out
        })
        .collect()
}

fn main() -> ExitCode {
    let matches = cli().get_matches_from(normalize_args(std::env::args()));
    if matches.get_flag("version") {
        println!("Version: {VERSION}\tSHA: {SHA}");
        return ExitCode::SUCCESS;
    }
    let mut env: HashMap<String, String> = std::env::vars().collect();
    for var in VARS {
        if let Some(v) = matches.get_one::<String>(var.name) {
            for alias in aliases(var.name) {
                env.remove(*alias);
            }
            env.insert(var.name.to_string(), v.clone());
        }
    }
    if matches.get_flag("run-healthcheck") {
        return run_healthcheck(&env);
    }
    let (cfg, warnings) = match Config::from_env(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error loading config: {e}");
            return ExitCode::from(1);
        }
    };
    logs::init(cfg.log_format, cfg.prefix_logs, cfg.log_buffer_size);
    logs::info(&format!("Version: {VERSION}\tSHA: {SHA}"));
    for w in &warnings {
        logs::warn(w);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            logs::error(&format!("cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(serve(cfg));
    runtime.shutdown_timeout(Duration::from_millis(100));
    ExitCode::from(code)
}

/// `-run-healthcheck`: the lock file, or with `suppress_lock` a GET of `/_/health`.
fn run_healthcheck(env: &HashMap<String, String>) -> ExitCode {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    if matches!(get("suppress_lock").as_deref(), Some("true" | "1")) {
        let port = get("port").and_then(|p| p.parse::<u16>().ok()).unwrap_or(8080);
        return match health_get(port) {
            Ok(true) => ExitCode::SUCCESS,
            _ => {
                eprintln!("/_/health is not 200 on port {port}");
                ExitCode::from(1)
            }
        };
    }
    let dir = get("TMPDIR").unwrap_or_else(|| "/tmp".into());
    if std::path::Path::new(&dir).join(".lock").exists() {
        ExitCode::SUCCESS
    } else {
        eprintln!("unable to find lock file.");
        ExitCode::from(1)
    }
}

fn health_get(port: u16) -> std::io::Result<bool> {
    use std::io::{Read, Write};
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let timeout = Duration::from_secs(1);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(b"GET /_/health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
}

async fn bind(ip: Option<IpAddr>, port: u16) -> std::io::Result<TcpListener> {
    match ip {
        Some(ip) => TcpListener::bind(SocketAddr::new(ip, port)).await,
        // [::] takes IPv4 too where the host has IPv6; otherwise plain IPv4.
        None => match TcpListener::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)).await {
            Ok(l) => Ok(l),
            Err(_) => TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)).await,
        },
    }
}

async fn serve(cfg: Config) -> u8 {
    if let Err(e) = process::start_reaper() {
        logs::warn(&format!("cannot become a child subreaper: {e}"));
    }
    let (sig_tx, sig_rx) = tokio::sync::mpsc::channel(4);
    for (kind, name) in [(SignalKind::terminate(), "SIGTERM"), (SignalKind::interrupt(), "SIGINT")] {
        match signal(kind) {
            Ok(mut s) => {
                let tx = sig_tx.clone();
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        let _ = tx.send(name).await;
                    }
                });
            }
            Err(e) => logs::warn(&format!("cannot handle {name}: {e}")),
        }
    }

    let listener = match bind(cfg.bind_address, cfg.port).await {
        Ok(l) => l,
        Err(e) => {
            logs::error(&format!("cannot listen on port {}: {e}", cfg.port));
            return 1;
        }
    };
    let metrics_listener = if cfg.metrics_port == 0 {
        None
    } else {
        match bind(cfg.bind_address, cfg.metrics_port).await {
            Ok(l) => Some(l),
            Err(e) => {
                logs::error(&format!("cannot listen on metrics port {}: {e}", cfg.metrics_port));
                return 1;
            }
        }
    };

    let handler = Handler::new(&cfg);
    let mode = cfg.mode;
    logs::info(&format!("Watchdog mode: {}\tfprocess: {:?}", mode.as_str(), cfg.fprocess));
    logs::info(&format!(
        "Timeouts: read: {} write: {} hard: {} health: {}",
        go_duration(cfg.read_timeout),
        go_duration(cfg.write_timeout),
        go_duration(cfg.exec_timeout),
        go_duration(cfg.healthcheck_interval)
    ));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(cfg.port);
    logs::info(&format!("Listening on port: {port}"));
    let app = App::new(cfg, handler);

    if mode == Mode::Http {
        tokio::spawn(modes::http::start_function(app.clone()));
    } else {
        if let Err(e) = app.write_lock_file() {
            logs::error(&e);
            return 1;
        }
        app.ready.send_replace(true);
    }
    if let Some(l) = metrics_listener {
        let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
        logs::info(&format!("Metrics listening on port: {port}"));
        tokio::spawn(metrics::serve(l, app.metrics.clone(), std::future::pending()));
    }
    server::run(listener, app, sig_rx).await;
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_flags() {
        let a = |v: &[&str]| normalize_args(v.iter().map(|s| s.to_string()));
        assert_eq!(a(&["x", "-version"]), ["x", "--version"]);
        assert_eq!(a(&["x", "-run-healthcheck"]), ["x", "--run-healthcheck"]);
        assert_eq!(a(&["x", "--exec_timeout=5s"]), ["x", "--exec-timeout=5s"]);
        assert_eq!(a(&["x", "--log-buffer-size", "-1"]), ["x", "--log-buffer-size", "-1"]);
        assert_eq!(a(&["x", "-h"]), ["x", "-h"]);
    }

    #[test]
    fn cli_is_consistent() {
        cli().debug_assert();
    }
}
