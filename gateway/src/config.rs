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
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid {0} \"{1}\": must be an integer in 0..65535")]
    BadPort(&'static str, String),
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
        let config = Config {
            port: port("port", 8080)?,
            metrics_port: port("metrics_port", 8082)?,
            // Ours: on unless explicitly off (spec §2).
            basic_auth: !matches!(get("basic_auth").as_deref(), Some("false" | "0")),
            secret_mount_path: PathBuf::from(get("secret_mount_path").unwrap_or_else(|| "/run/secrets/".into())),
            function_namespace: get("function_namespace").unwrap_or_else(|| "openfaas-fn".into()),
            read_timeout,
            write_timeout,
            upstream_timeout,
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
