//! Configuration: the OpenFaaS environment variables (names byte for byte), their value formats
//! (spec §1) and the fatal errors (spec §2). Flags are merged into the same source by `main`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::format::{go_duration, parse_duration};
use crate::shellwords;

/// Where variables come from: the process environment, or a map in tests.
pub trait EnvSource {
    fn get(&self, key: &str) -> Option<String>;
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

/// The watchdog's own process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Streaming,
    Serializing,
    Http,
    Static,
    Classic,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Streaming => "streaming",
            Mode::Serializing => "serializing",
            Mode::Http => "http",
            Mode::Static => "static",
            Mode::Classic => "classic",
        }
    }
    pub fn forks(self) -> bool {
        matches!(self, Mode::Streaming | Mode::Serializing | Mode::Classic)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The http-mode upstream, split so the host can be resolved once at start-up.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The value as configured, for log lines.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing `/` (empty when none).
    pub prefix: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub fprocess: String,
    pub argv: Vec<String>,
    pub port: u16,
    pub metrics_port: u16,
    pub bind_address: Option<IpAddr>,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub exec_timeout: Duration,
    pub healthcheck_interval: Duration,
    pub max_inflight: usize,
    pub suppress_lock: bool,
    pub content_type: String,
    pub prefix_logs: bool,
    /// `None` relays lines whole however long.
    pub log_buffer_size: Option<usize>,
    pub ready_path: Option<String>,
    pub log_callid: bool,
    pub tmpdir: PathBuf,
    pub upstream: Option<Upstream>,
    pub buffer_req_body: bool,
    pub static_path: PathBuf,
    pub cgi_headers: bool,
    pub combine_output: bool,
    pub marshal_request: bool,
    pub write_debug: bool,
    pub debug_headers: bool,
    pub log_format: LogFormat,
    pub startup_timeout: Duration,
    pub child_grace_period: Duration,
}

impl Config {
    pub fn lock_path(&self) -> PathBuf {
        self.tmpdir.join(".lock")
    }
}

/// Fatal configuration errors: the only values that stop the watchdog (spec §2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("HTTP write timeout must be over 0s")]
    WriteTimeoutZero,
    #[error("provide a \"function_process\" or \"fprocess\" environmental variable for your function")]
    MissingFprocess,
    #[error("unknown watchdog mode \"{0}\": use streaming, serializing, http, static or classic")]
    UnknownMode(String),
    #[error("invalid log_buffer_size \"{0}\": must be a non-zero integer (-1 for unbounded)")]
    LogBufferSize(String),
    #[error("invalid fprocess: {0}")]
    Fprocess(#[from] shellwords::SplitError),
    #[error("mode=http needs upstream_url: the address the function listens on")]
    MissingUpstream,
    #[error("invalid upstream_url \"{0}\": {1}")]
    BadUpstream(String, &'static str),
    #[error("invalid {0} \"{1}\": must be an integer in 0..65535")]
    BadPort(&'static str, String),
    #[error("invalid bind_address \"{0}\": not an IP address")]
    BadBindAddress(String),
    #[error("invalid log_format \"{0}\": use text or json")]
    BadLogFormat(String),
    #[error("jwt_auth is not supported by this watchdog")]
    JwtAuth,
}

/// One variable the watchdog reads, for `--help` and for flag merging.
pub struct Var {
    pub name: &'static str,
    pub boolean: bool,
    pub help: &'static str,
}

/// Every variable with a flag of its own (aliases are environment-only, spec §2).
pub const VARS: &[Var] = &[
    Var { name: "fprocess", boolean: false, help: "Command to run (alias env function_process, which wins)" },
    Var { name: "mode", boolean: false, help: "streaming (default), serializing, http, static or classic" },
    Var { name: "port", boolean: false, help: "Listen port [default: 8080]" },
    Var { name: "bind_address", boolean: false, help: "Listen on this IP only (main and metrics) [default: all]" },
    Var { name: "read_timeout", boolean: false, help: "Time to read a whole request [default: 30s]" },
    Var { name: "write_timeout", boolean: false, help: "Time to write a whole response; drain limit [default: 30s]" },
    Var { name: "exec_timeout", boolean: false, help: "Per-invocation hard limit, 0 = none [default: 30s, classic 0]" },
    Var { name: "healthcheck_interval", boolean: false, help: "Serving time after SIGTERM [default: write_timeout]" },
    Var { name: "max_inflight", boolean: false, help: "Concurrent request limit, 0 = unlimited [default: 0]" },
    Var { name: "suppress_lock", boolean: true, help: "Do not write the lock file [default: false]" },
    Var { name: "content_type", boolean: false, help: "Response Content-Type of fork modes [default: application/octet-stream]" },
    Var { name: "prefix_logs", boolean: true, help: "Prefix relayed function output with time and stream [default: true]" },
    Var { name: "log_buffer_size", boolean: false, help: "Longest relayed log line, -1 = unbounded [default: 65536]" },
    Var { name: "ready_path", boolean: false, help: "Path on the function that /_/ready asks" },
    Var { name: "log_callid", boolean: true, help: "Add [X-Call-Id] to request log lines (alias env log_call_id)" },
    Var { name: "TMPDIR", boolean: false, help: "Directory of the lock file (flag --tmpdir) [default: /tmp]" },
    Var { name: "upstream_url", boolean: false, help: "http mode: where requests go (alias env http_upstream_url, which wins)" },
    Var { name: "http_buffer_req_body", boolean: true, help: "http mode: buffer request bodies (alias env buffer_http) [default: false]" },
    Var { name: "static_path", boolean: false, help: "static mode: directory served [default: /home/app/public]" },
    Var { name: "cgi_headers", boolean: true, help: "classic mode: Http_* environment [default: true]" },
    Var { name: "combine_output", boolean: true, help: "classic mode: stderr in the response [default: true]" },
    Var { name: "marshal_request", boolean: true, help: "classic mode: JSON envelope on stdin [default: false]" },
    Var { name: "write_debug", boolean: true, help: "classic mode: debug logging [default: false]" },
    Var { name: "debug_headers", boolean: true, help: "classic mode: log request and response headers [default: false]" },
    Var { name: "metrics_port", boolean: false, help: "Metrics port, 0 = off [default: 8081]" },
    Var { name: "log_format", boolean: false, help: "text or json [default: text]" },
    Var { name: "startup_timeout", boolean: false, help: "http mode: wait for the upstream, 0 = forever [default: 120s]" },
    Var { name: "child_grace_period", boolean: false, help: "Shutdown: SIGTERM to SIGKILL [default: 5s]" },
    Var { name: "jwt_auth", boolean: true, help: "Not supported: exits 1 when true" },
    Var { name: "jwt_auth_debug", boolean: true, help: "Recognised, unused" },
    Var { name: "jwt_auth_local", boolean: true, help: "Recognised, unused" },
];

/// Environment-only aliases of a flag's variable; a flag removes them so it wins (spec §2).
pub fn aliases(name: &str) -> &'static [&'static str] {
    match name {
        "fprocess" => &["function_process"],
        "upstream_url" => &["http_upstream_url"],
        "http_buffer_req_body" => &["buffer_http"],
        "log_callid" => &["log_call_id"],
        _ => &[],
    }
}

/// Reads values and collects the warnings for values that fell back to their default.
struct Reader<'a, E: EnvSource> {
    env: &'a E,
    warnings: Vec<String>,
}

impl<E: EnvSource> Reader<'_, E> {
    /// A non-empty value, or None.
    fn get(&self, key: &str) -> Option<String> {
        self.env.get(key).filter(|v| !v.is_empty())
    }

    fn warn(&mut self, key: &str, value: &str, default: &str) {
        self.warnings.push(format!("Invalid value for {key}: {value:?}, using default {default}"));
    }

    fn duration(&mut self, key: &str, default: Duration) -> Duration {
        match self.get(key) {
            None => default,
            Some(v) => match parse_duration(&v) {
                Some(d) => d,
                None => {
                    self.warn(key, &v, &go_duration(default));
                    default
                }
            },
        }
    }

    fn integer(&mut self, key: &str, default: i64) -> i64 {
        match self.get(key) {
            None => default,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) => n,
                Err(_) => {
                    self.warn(key, &v, &default.to_string());
                    default
                }
            },
        }
    }

    fn strict_bool(&self, key: &str) -> bool {
        matches!(self.env.get(key).as_deref(), Some("true" | "1"))
    }

    fn parse_bool(&mut self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(v) => match v.as_str() {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
                "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
                _ => {
                    self.warn(key, &v, &default.to_string());
                    default
                }
            },
        }
    }

    fn classic_bool(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(v) => v == "true",
        }
    }

    fn port(&self, key: &'static str, default: u16) -> Result<u16, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.trim().parse::<u16>().map_err(|_| ConfigError::BadPort(key, v)),
        }
    }
}

impl Config {
    /// Builds the configuration; also returns warnings for values that took their default.
    pub fn from_env(env: &impl EnvSource) -> Result<(Config, Vec<String>), ConfigError> {
        let mut r = Reader { env, warnings: Vec::new() };

        if r.strict_bool("jwt_auth") {
            return Err(ConfigError::JwtAuth);
        }
        let mode = match r.get("mode").as_deref() {
            None | Some("streaming") => Mode::Streaming,
            Some("serializing") => Mode::Serializing,
            Some("http") => Mode::Http,
            Some("static") => Mode::Static,
            Some("classic") => Mode::Classic,
            Some(other) => return Err(ConfigError::UnknownMode(other.to_string())),
        };
        let classic = mode == Mode::Classic;

        let fprocess = r.get("function_process").or_else(|| r.get("fprocess")).unwrap_or_default();
        let argv = shellwords::split(&fprocess)?;
        if argv.is_empty() && mode != Mode::Static {
            return Err(ConfigError::MissingFprocess);
        }

        let port = r.port("port", 8080)?;
        let metrics_port = r.port("metrics_port", 8081)?;
        let bind_address = match r.get("bind_address") {
            None => None,
            Some(v) => Some(v.trim().parse::<IpAddr>().map_err(|_| ConfigError::BadBindAddress(v))?),
        };

        let log_buffer_size = match r.get("log_buffer_size") {
            None => Some(65536),
            Some(v) => match v.trim().parse::<i64>() {
                Ok(0) | Err(_) => return Err(ConfigError::LogBufferSize(v)),
                Ok(n) if n < 0 => None,
                Ok(n) => Some(n as usize),
            },
        };

        let log_format = match r.get("log_format").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(ConfigError::BadLogFormat(other.to_string())),
        };

        let d30 = Duration::from_secs(30);
        let read_timeout = r.duration("read_timeout", d30);
        let write_timeout = r.duration("write_timeout", d30);
        if write_timeout.is_zero() {
            return Err(ConfigError::WriteTimeoutZero);
        }
        let exec_timeout = r.duration("exec_timeout", if classic { Duration::ZERO } else { d30 });
        let healthcheck_interval = r.duration("healthcheck_interval", write_timeout);
        let startup_timeout = r.duration("startup_timeout", Duration::from_secs(120));
        let child_grace_period = r.duration("child_grace_period", Duration::from_secs(5));

        let max_inflight = r.integer("max_inflight", 0).max(0) as usize;

        let upstream = match r.get("http_upstream_url").or_else(|| r.get("upstream_url")) {
            None if mode == Mode::Http => return Err(ConfigError::MissingUpstream),
            None => None,
            Some(v) => Some(parse_upstream(&v)?),
        };

        let content_type = r
            .env
            .get("content_type")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| if classic { String::new() } else { "application/octet-stream".into() });

        let log_callid = {
            let a = r.parse_bool("log_callid", false);
            let b = r.parse_bool("log_call_id", false);
            a || b
        };

        let config = Config {
            mode,
            fprocess,
            argv,
            port,
            metrics_port,
            bind_address,
            read_timeout,
            write_timeout,
            exec_timeout,
            healthcheck_interval,
            max_inflight,
            suppress_lock: r.strict_bool("suppress_lock"),
            content_type,
            prefix_logs: r.parse_bool("prefix_logs", true),
            log_buffer_size,
            ready_path: r.get("ready_path"),
            log_callid,
            tmpdir: PathBuf::from(r.get("TMPDIR").unwrap_or_else(|| "/tmp".into())),
            upstream,
            buffer_req_body: r.strict_bool("http_buffer_req_body") || r.strict_bool("buffer_http"),
            static_path: PathBuf::from(r.get("static_path").unwrap_or_else(|| "/home/app/public".into())),
            cgi_headers: r.classic_bool("cgi_headers", true),
            combine_output: r.classic_bool("combine_output", true),
            marshal_request: r.classic_bool("marshal_request", false),
            write_debug: r.classic_bool("write_debug", false),
            debug_headers: r.classic_bool("debug_headers", false),
            log_format,
            startup_timeout,
            child_grace_period,
        };
        if !config.exec_timeout.is_zero() && config.exec_timeout > config.write_timeout {
            r.warnings.push(format!(
                "exec_timeout ({}) is over write_timeout ({}): responses end at write_timeout",
                go_duration(config.exec_timeout),
                go_duration(config.write_timeout)
            ));
        }
        Ok((config, r.warnings))
    }
}

fn parse_upstream(v: &str) -> Result<Upstream, ConfigError> {
    let bad = |why| ConfigError::BadUpstream(v.to_string(), why);
    let uri: http::Uri = v.trim().parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => return Err(bad("only http:// is supported")),
        None => return Err(bad("needs http://host:port")),
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(80);
    let prefix = uri.path().trim_end_matches('/').to_string();
    Ok(Upstream { url: v.trim().to_string(), host, port, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<(Config, Vec<String>), ConfigError> {
        Config::from_env(&env(pairs))
    }

    #[test]
    fn defaults_with_only_fprocess() {
        let (c, w) = load(&[("fprocess", "cat")]).unwrap();
        assert_eq!(c.mode, Mode::Streaming);
        assert_eq!(c.port, 8080);
        assert_eq!(c.metrics_port, 8081);
        assert_eq!(c.read_timeout, Duration::from_secs(30));
        assert_eq!(c.write_timeout, Duration::from_secs(30));
        assert_eq!(c.exec_timeout, Duration::from_secs(30));
        assert_eq!(c.healthcheck_interval, Duration::from_secs(30));
        assert_eq!(c.content_type, "application/octet-stream");
        assert_eq!(c.log_buffer_size, Some(65536));
        assert!(c.prefix_logs);
        assert!(w.is_empty());
    }

    #[test]
    fn aliases_win() {
        let (c, _) = load(&[("fprocess", "cat"), ("function_process", "wc")]).unwrap();
        assert_eq!(c.argv, vec!["wc"]);
        let (c, _) = load(&[
            ("fprocess", "x"),
            ("mode", "http"),
            ("upstream_url", "http://127.0.0.1:1"),
            ("http_upstream_url", "http://127.0.0.1:2/"),
        ])
        .unwrap();
        assert_eq!(c.upstream.unwrap().port, 2);
    }

    #[test]
    fn durations_and_warnings() {
        let (c, w) = load(&[("fprocess", "cat"), ("read_timeout", "10"), ("write_timeout", "1m30s"), ("exec_timeout", "abc")]).unwrap();
        assert_eq!(c.read_timeout, Duration::from_secs(10));
        assert_eq!(c.write_timeout, Duration::from_secs(90));
        assert_eq!(c.exec_timeout, Duration::from_secs(30));
        assert_eq!(w, vec!["Invalid value for exec_timeout: \"abc\", using default 30s".to_string()]);
        let (c, _) = load(&[("fprocess", "cat"), ("exec_timeout", "0")]).unwrap();
        assert!(c.exec_timeout.is_zero());
    }

    #[test]
    fn fatal_errors() {
        assert_eq!(load(&[("fprocess", "cat"), ("write_timeout", "0")]).unwrap_err(), ConfigError::WriteTimeoutZero);
        assert_eq!(load(&[]).unwrap_err(), ConfigError::MissingFprocess);
        assert!(matches!(load(&[("fprocess", "c"), ("mode", "afterburn")]), Err(ConfigError::UnknownMode(_))));
        assert_eq!(load(&[("fprocess", "c"), ("mode", "http")]).unwrap_err(), ConfigError::MissingUpstream);
        assert!(matches!(load(&[("fprocess", "c"), ("port", "70000")]), Err(ConfigError::BadPort("port", _))));
        assert!(matches!(load(&[("fprocess", "c"), ("log_buffer_size", "0")]), Err(ConfigError::LogBufferSize(_))));
        assert_eq!(load(&[("fprocess", "c"), ("jwt_auth", "1")]).unwrap_err(), ConfigError::JwtAuth);
        assert!(load(&[("mode", "static")]).is_ok());
    }

    #[test]
    fn classic_defaults() {
        let (c, _) = load(&[("fprocess", "cat"), ("mode", "classic")]).unwrap();
        assert!(c.exec_timeout.is_zero());
        assert_eq!(c.content_type, "");
        assert!(c.cgi_headers && c.combine_output && !c.marshal_request);
        let (c, _) = load(&[("fprocess", "cat"), ("mode", "classic"), ("combine_output", "yes")]).unwrap();
        assert!(!c.combine_output);
    }

    #[test]
    fn upstream_prefix_trims_slash() {
        let u = parse_upstream("http://localhost:3000/api/").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.prefix.as_str()), ("localhost", 3000, "/api"));
        assert!(parse_upstream("https://x").is_err());
    }
}
