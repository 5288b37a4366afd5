//! The JSON bodies of the `/system` API (spec §8), parsed leniently, and the name and label
//! rules (§6, §10.1) checked before anything is stored or forwarded.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

type Map = BTreeMap<String, String>;

/// `null` reads as the default (some clients send `"labels": null`).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub memory: String,
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub cpu: String,
    #[serde(rename = "nvidia.com/gpu", skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub nvidia_gpu: String,
    #[serde(rename = "amd.com/gpu", skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub amd_gpu: String,
    #[serde(rename = "intel.com/gpu", skip_serializing_if = "String::is_empty", deserialize_with = "nullable")]
    pub intel_gpu: String,
}

/// The fields a deployment (§8.1) and a status (§8.2) share.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FunctionSpec {
    #[serde(deserialize_with = "nullable")]
    pub image: String,
    #[serde(deserialize_with = "nullable")]
    pub namespace: String,
    #[serde(rename = "envProcess", deserialize_with = "nullable")]
    pub env_process: String,
    #[serde(rename = "envVars", deserialize_with = "nullable")]
    pub env_vars: Map,
    #[serde(deserialize_with = "nullable")]
    pub constraints: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub secrets: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub labels: Map,
    #[serde(deserialize_with = "nullable")]
    pub annotations: Map,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Resources>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<Resources>,
    #[serde(rename = "readOnlyRootFilesystem", deserialize_with = "nullable")]
    pub read_only_root_filesystem: bool,
}

/// POST and PUT `/system/functions` (§8.1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FunctionDeployment {
    #[serde(deserialize_with = "nullable")]
    pub service: String,
    #[serde(flatten)]
    pub spec: FunctionSpec,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Usage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(rename = "totalMemoryBytes", skip_serializing_if = "Option::is_none")]
    pub total_memory_bytes: Option<f64>,
}

/// GET `/system/functions` items and GET `/system/function/{name}` (§8.2). Ours: counters
/// always written, namespace always set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FunctionStatus {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(flatten)]
    pub spec: FunctionSpec,
    #[serde(rename = "invocationCount", deserialize_with = "nullable")]
    pub invocation_count: f64,
    #[serde(deserialize_with = "nullable")]
    pub replicas: u64,
    #[serde(rename = "availableReplicas", deserialize_with = "nullable")]
    pub available_replicas: u64,
    #[serde(rename = "createdAt", deserialize_with = "nullable")]
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl FunctionStatus {
    pub fn from_deployment(d: &FunctionDeployment) -> FunctionStatus {
        FunctionStatus { name: d.service.clone(), spec: d.spec.clone(), ..FunctionStatus::default() }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DeleteFunctionRequest {
    #[serde(rename = "functionName", deserialize_with = "nullable")]
    pub function_name: String,
    #[serde(deserialize_with = "nullable")]
    pub namespace: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ScaleServiceRequest {
    #[serde(rename = "serviceName", alias = "service", deserialize_with = "nullable")]
    pub service_name: String,
    /// Kept as JSON so a missing, negative or fractional value gets its own 400.
    pub replicas: Option<serde_json::Value>,
    #[serde(deserialize_with = "nullable")]
    pub namespace: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Secret {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub namespace: String,
    pub value: Option<String>,
    #[serde(rename = "rawValue")]
    pub raw_value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FunctionNamespace {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub labels: Map,
    #[serde(deserialize_with = "nullable")]
    pub annotations: Map,
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, at most 63 bytes: function names and namespaces.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && ok(&b[0])
        && ok(&b[b.len() - 1])
        && b.iter().all(|c| ok(c) || *c == b'-')
}

/// `^[a-zA-Z0-9]([-._a-zA-Z0-9]*[a-zA-Z0-9])?$`, at most 253 bytes, no `..`: secret names.
pub fn is_secret_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
        && !s.contains("..")
}

pub fn check_function_name(name: &str) -> Result<(), String> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(format!("invalid function name {name:?}: must be a DNS-1123 label (a-z, 0-9 and -, at most 63)"))
    }
}

pub fn check_namespace(ns: &str) -> Result<(), String> {
    if is_dns_label(ns) {
        Ok(())
    } else {
        Err(format!("invalid namespace {ns:?}: must be a DNS-1123 label (a-z, 0-9 and -, at most 63)"))
    }
}

pub fn check_secret_name(name: &str) -> Result<(), String> {
    if is_secret_name(name) {
        Ok(())
    } else {
        Err(format!("invalid secret name {name:?}"))
    }
}

/// The scaling labels of one deployment (§10.1), with the gateway's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    pub min: u32,
    pub max: u32,
    pub factor: u32,
    pub zero: bool,
    pub zero_duration: Duration,
}

pub const LABEL_MIN: &str = "com.openfaas.scale.min";
pub const LABEL_MAX: &str = "com.openfaas.scale.max";
pub const LABEL_FACTOR: &str = "com.openfaas.scale.factor";
pub const LABEL_ZERO: &str = "com.openfaas.scale.zero";
pub const LABEL_ZERO_DURATION: &str = "com.openfaas.scale.zero-duration";

impl Scaling {
    pub fn from_labels(labels: &Map, default_max: u32, default_zero_duration: Duration) -> Result<Scaling, String> {
        let int = |k: &str, lo: u32, hi: u32, d: u32| -> Result<u32, String> {
            match labels.get(k) {
                None => Ok(d),
                Some(v) => v
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (lo..=hi).contains(n))
                    .ok_or_else(|| format!("invalid label {k}={v:?}: must be an integer in {lo}..{hi}")),
            }
        };
        let min = int(LABEL_MIN, 0, u32::MAX, 1)?;
        let max = int(LABEL_MAX, 1, u32::MAX, default_max.max(min))?;
        if max < min {
            return Err(format!("invalid label {LABEL_MAX}={max}: must be at least {LABEL_MIN}={min}"));
        }
        let factor = int(LABEL_FACTOR, 0, 100, 10)?;
        let zero = match labels.get(LABEL_ZERO).map(|v| v.trim()) {
            None => false,
            Some("true") => true,
            Some("false") => false,
            Some(v) => return Err(format!("invalid label {LABEL_ZERO}={v:?}: must be true or false")),
        };
        let zero_duration = match labels.get(LABEL_ZERO_DURATION) {
            None => default_zero_duration,
            Some(v) => watchdog::format::parse_duration(v)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("invalid label {LABEL_ZERO_DURATION}={v:?}: must be a duration such as 15m"))?,
        };
        Ok(Scaling { min, max, factor, zero, zero_duration })
    }
}

/// Splits a route name on its last dot (§6): `fn.ns` → (`fn`, `ns`), no dot or a trailing dot →
/// the default namespace.
pub fn split_name<'a>(full: &'a str, default_ns: &'a str) -> (&'a str, &'a str) {
    match full.rsplit_once('.') {
        Some((name, "")) => (name, default_ns),
        Some((name, ns)) => (name, ns),
        None => (full, default_ns),
    }
}

/// The number of replicas in a scale request: a non-negative integer.
pub fn replicas_value(v: &serde_json::Value) -> Option<u32> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns_label("echo") && is_dns_label("a-1") && is_dns_label("0"));
        for bad in ["", "Fn", "fn_x", "-a", "a-", "a.b", &"a".repeat(64), "../x"] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_secret_name("s1") && is_secret_name("a.b_C-d"));
        for bad in ["", ".a", "a.", "a..b", "a/b", "../x", &"a".repeat(254)] {
            assert!(!is_secret_name(bad), "{bad}");
        }
    }

    #[test]
    fn split() {
        assert_eq!(split_name("fn", "d"), ("fn", "d"));
        assert_eq!(split_name("fn.ns", "d"), ("fn", "ns"));
        assert_eq!(split_name("a.b.ns", "d"), ("a.b", "ns"));
        assert_eq!(split_name("fn.", "d"), ("fn", "d"));
        assert_eq!(split_name(".ns", "d"), ("", "ns"));
    }

    #[test]
    fn lenient_json() {
        let d: FunctionDeployment = serde_json::from_str(r#"{"service":"echo","image":"x","labels":null,"extra":1}"#).unwrap();
        assert_eq!(d.service, "echo");
        assert!(d.spec.labels.is_empty());
        let s: ScaleServiceRequest = serde_json::from_str(r#"{"service":"echo","replicas":2}"#).unwrap();
        assert_eq!(s.service_name, "echo");
        assert_eq!(s.replicas.as_ref().and_then(replicas_value), Some(2));
        let st: FunctionStatus = serde_json::from_str(r#"{"name":"x"}"#).unwrap();
        assert_eq!(st.available_replicas, 0);
    }

    #[test]
    fn scaling_labels() {
        let d = Duration::from_secs(900);
        let l = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Map>();
        let s = Scaling::from_labels(&l(&[]), 20, d).unwrap();
        assert_eq!((s.min, s.max, s.factor, s.zero), (1, 20, 10, false));
        assert!(Scaling::from_labels(&l(&[(LABEL_MAX, "0")]), 20, d).is_err());
        assert!(Scaling::from_labels(&l(&[(LABEL_MIN, "3"), (LABEL_MAX, "2")]), 20, d).is_err());
        assert!(Scaling::from_labels(&l(&[(LABEL_FACTOR, "101")]), 20, d).is_err());
        let z = Scaling::from_labels(&l(&[(LABEL_ZERO, "true"), (LABEL_ZERO_DURATION, "2s")]), 20, d).unwrap();
        assert!(z.zero);
        assert_eq!(z.zero_duration, Duration::from_secs(2));
    }
}
