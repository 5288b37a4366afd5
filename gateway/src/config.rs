//! Gateway configuration from the OpenFaaS environment variables (spec §2).

use std::path::PathBuf;
use std::time::Duration;

use watchdog::config::EnvSource;
use watchdog::format::{go_duration, parse_duration};

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub metrics_port: u16,
    pub basic_auth: bool,
    pub secret_mount_path: PathBuf,
    pub function_namespace: String,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub upstream_timeout: Duration,
    /// External provider base URL without a trailing `/`; `None` = the embedded local runtime.
    pub functions_provider_url: Option<String>,
    pub logs_provider_url: Option<String>,
    pub scale_from_zero: bool,
    pub scale_from_zero_timeout: Duration,
    pub default_scale_max: u32,
    pub default_scale_zero_duration: Duration,
    pub scale_zero_check_interval: Duration,
    pub write_request_uri: bool,
    pub state_dir: PathBuf,
    /// `None`: `fwatchdog` beside the gateway binary, else from `PATH`.
    pub watchdog_path: Option<PathBuf>,
    pub local_port_range: (u16, u16),
    pub log_format: watchdog::config::LogFormat,
    pub async_max_body_bytes: usize,
    pub async_max_inflight: usize,
    pub async_max_retries: u32,
    pub async_retry_initial_wait: Duration,
    pub async_retry_max_wait: Duration,
    pub async_callback_timeout: Duration,
    pub async_workers: bool,
    /// NATS JetStream queue when set (`faas_nats_address`), else the embedded queue.
    pub faas_nats_address: Option<String>,
    pub faas_nats_port: u16,
    pub faas_nats_channel: String,
    pub faas_nats_stream: String,
    pub faas_nats_queue_group: String,
    /// Where `gateway queue-worker` invokes functions.
    pub gateway_url: String,
}

/// Variables faasd and the Helm chart still set; accepted and ignored (logged once).
pub const IGNORED: &[&str] = &[
    "faas_prometheus_host",
    "faas_prometheus_port",
    "faas_nats_cluster_name",
    "auth_proxy_url",
    "auth_proxy_pass_body",
    "direct_functions",
    "direct_functions_suffix",
    "probe_functions",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid {0} \"{1}\": must be an integer in 0..65535")]
    BadPort(&'static str, String),
    #[error("invalid local_port_range \"{0}\": must be LOW-HIGH with 1024 <= LOW <= HIGH <= 65535")]
    BadPortRange(String),
    #[error("invalid log_format \"{0}\": must be text or json")]
    BadLogFormat(String),
    #[error("invalid {0} \"{1}\": must be a URL starting with http:// or https://")]
    BadUrl(&'static str, String),
}

fn flag_on(v: Option<&str>, default: bool) -> bool {
    match v {
        None => default,
        Some(v) => !matches!(v.trim(), "false" | "0" | "FALSE" | "False"),
    }
}

impl Config {
    /// The configuration and the warnings for values that fell back to their default.
    pub fn from_env(env: &impl EnvSource) -> Result<(Config, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty());
        let port = |k: &'static str, d: u16| match get(k) {
            None => Ok(d),
            Some(v) => v.trim().parse::<u16>().map_err(|_| ConfigError::BadPort(k, v)),
        };
        let mut duration = |k: &str, d: Duration| match get(k) {
            None => d,
            Some(v) => parse_duration(&v).unwrap_or_else(|| {
                warnings.push(format!("Invalid value for {k}: {v:?}, using default {}", go_duration(d)));
                d
            }),
        };
        let d60 = Duration::from_secs(60);
        let read_timeout = duration("read_timeout", d60);
        let write_timeout = duration("write_timeout", d60);
        let upstream_timeout = duration("upstream_timeout", d60);
        let url = |k: &'static str| -> Result<Option<String>, ConfigError> {
            match get(k) {
                None => Ok(None),
                Some(v) if v.starts_with("http://") || v.starts_with("https://") => Ok(Some(v.trim_end_matches('/').to_string())),
                Some(v) => Err(ConfigError::BadUrl(k, v)),
            }
        };
        let functions_provider_url = url("functions_provider_url")?;
        let logs_provider_url = url("logs_provider_url")?.or_else(|| functions_provider_url.clone());
        let scale_from_zero_timeout = duration("scale_from_zero_timeout", upstream_timeout);
        let default_scale_zero_duration = duration("default_scale_zero_duration", Duration::from_secs(15 * 60));
        let scale_zero_check_interval = duration("scale_zero_check_interval", Duration::from_secs(30));
        let async_retry_initial_wait = duration("async_retry_initial_wait", Duration::from_secs(1));
        let async_retry_max_wait = duration("async_retry_max_wait", Duration::from_secs(60));
        let async_callback_timeout = duration("async_callback_timeout", Duration::from_secs(30));
        let default_scale_max = match get("default_scale_max") {
            None => 20,
            Some(v) => v.trim().parse::<u32>().ok().filter(|n| *n >= 1).unwrap_or_else(|| {
                warnings.push(format!("Invalid value for default_scale_max: {v:?}, using default 20"));
                20
            }),
        };
        let mut number = |k: &str, d: u64| match get(k) {
            None => d,
            Some(v) => v.trim().parse::<u64>().unwrap_or_else(|_| {
                warnings.push(format!("Invalid value for {k}: {v:?}, using default {d}"));
                d
            }),
        };
        let async_max_body_bytes = number("async_max_body_bytes", 1_048_576) as usize;
        let async_max_inflight = number("async_max_inflight", 1).max(1) as usize;
        let async_max_retries = number("async_max_retries", 10).min(u64::from(u32::MAX)) as u32;
        let local_port_range = match get("local_port_range") {
            None => (20000, 29999),
            Some(v) => {
                let parsed = v.split_once('-').and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)));
                match parsed {
                    Some((lo, hi)) if lo >= 1024 && lo <= hi => (lo, hi),
                    _ => return Err(ConfigError::BadPortRange(v)),
                }
            }
        };
        let log_format = match get("log_format").as_deref() {
            None | Some("text") => watchdog::config::LogFormat::Text,
            Some("json") => watchdog::config::LogFormat::Json,
            Some(other) => return Err(ConfigError::BadLogFormat(other.to_string())),
        };
        let config = Config {
            port: port("port", 8080)?,
            metrics_port: port("metrics_port", 8082)?,
            // Ours: on unless explicitly off (spec §2).
            basic_auth: flag_on(get("basic_auth").as_deref(), true),
            secret_mount_path: PathBuf::from(get("secret_mount_path").unwrap_or_else(|| "/run/secrets/".into())),
            function_namespace: get("function_namespace").unwrap_or_else(|| "openfaas-fn".into()),
            read_timeout,
            write_timeout,
            upstream_timeout,
            functions_provider_url,
            logs_provider_url,
            scale_from_zero: flag_on(get("scale_from_zero").as_deref(), true),
            scale_from_zero_timeout,
            default_scale_max,
            default_scale_zero_duration,
            scale_zero_check_interval,
            write_request_uri: get("write_request_uri").is_some(),
            state_dir: PathBuf::from(get("state_dir").unwrap_or_else(|| "./gateway-state".into())),
            watchdog_path: get("watchdog_path").map(PathBuf::from),
            local_port_range,
            log_format,
            async_max_body_bytes,
            async_max_inflight,
            async_max_retries,
            async_retry_initial_wait,
            async_retry_max_wait,
            async_callback_timeout,
            async_workers: flag_on(get("async_workers").as_deref(), true),
            faas_nats_address: get("faas_nats_address"),
            faas_nats_port: port("faas_nats_port", 4222)?,
            faas_nats_channel: get("faas_nats_channel").unwrap_or_else(|| "faas-request".into()),
            faas_nats_stream: get("faas_nats_stream").unwrap_or_else(|| "faas-request".into()),
            faas_nats_queue_group: get("faas_nats_queue_group").unwrap_or_else(|| "faas".into()),
            gateway_url: get("gateway_url").unwrap_or_else(|| "http://127.0.0.1:8080".into()).trim_end_matches('/').to_string(),
        };
        Ok((config, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<(Config, Vec<String>), ConfigError> {
        let env: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_env(&env)
    }

    #[test]
    fn defaults() {
        let (c, w) = load(&[]).unwrap();
        assert_eq!((c.port, c.metrics_port), (8080, 8082));
        assert!(c.basic_auth);
        assert_eq!(c.function_namespace, "openfaas-fn");
        assert_eq!(c.upstream_timeout, Duration::from_secs(60));
        assert!(w.is_empty());
    }

    #[test]
    fn values_and_errors() {
        let (c, w) = load(&[("basic_auth", "false"), ("upstream_timeout", "1m30s"), ("read_timeout", "x")]).unwrap();
        assert!(!c.basic_auth);
        assert_eq!(c.upstream_timeout, Duration::from_secs(90));
        assert_eq!(w.len(), 1);
        assert!(load(&[("port", "99999")]).is_err());
    }
}
