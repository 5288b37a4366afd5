//! Gateway metrics with the OpenFaaS names (spec §13), plus the per-function call counts that
//! fill `invocationCount` without Prometheus.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Fn {
    function_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FnCode {
    code: String,
    function_name: String,
}

const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Metrics {
    registry: Registry,
    /// A gauge that only goes up: OpenMetrics would rename a counter to `…_started_total`,
    /// and the upstream name has no suffix.
    started: Family<Fn, Gauge>,
    total: Family<FnCode, Counter>,
    seconds: Family<FnCode, Histogram, fn() -> Histogram>,
    service_count: Family<Fn, Gauge>,
    async_accepted: Family<Fn, Counter>,
    async_depth: Gauge,
    async_inflight: Gauge,
    async_retries: Family<Fn, Counter>,
    async_dead: Family<Fn, Counter>,
    counts: Mutex<HashMap<String, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let started = Family::<Fn, Gauge>::default();
        let total = Family::<FnCode, Counter>::default();
        let seconds: Family<FnCode, Histogram, fn() -> Histogram> = Family::new_with_constructor(|| Histogram::new(BUCKETS));
        let service_count = Family::<Fn, Gauge>::default();
        registry.register("gateway_function_invocation_started", "Function calls started", started.clone());
        registry.register("gateway_function_invocation", "Function calls completed, by status code", total.clone());
        registry.register("gateway_functions_seconds", "Function call duration in seconds", seconds.clone());
        registry.register("gateway_service_count", "Desired replicas of each function", service_count.clone());
        let (async_accepted, async_retries, async_dead) = (Family::default(), Family::default(), Family::default());
        let (async_depth, async_inflight) = (Gauge::default(), Gauge::default());
        registry.register("gateway_async_accepted", "Asynchronous calls accepted (202)", async_accepted.clone());
        registry.register("gateway_async_queue_depth", "Asynchronous calls waiting", async_depth.clone());
        registry.register("gateway_async_inflight", "Asynchronous calls running in this process", async_inflight.clone());
        registry.register("gateway_async_retries", "Asynchronous attempts retried", async_retries.clone());
        registry.register("gateway_async_dead_letters", "Asynchronous calls moved to dead letters", async_dead.clone());
        Metrics {
            registry,
            started,
            total,
            seconds,
            service_count,
            async_accepted,
            async_depth,
            async_inflight,
            async_retries,
            async_dead,
            counts: Mutex::new(HashMap::new()),
        }
    }

    pub fn started(&self, function: &str) {
        self.started.get_or_create(&Fn { function_name: function.to_string() }).inc();
    }

    pub fn completed(&self, function: &str, code: u16, seconds: f64) {
        let labels = FnCode { code: code.to_string(), function_name: function.to_string() };
        self.total.get_or_create(&labels).inc();
        self.seconds.get_or_create(&labels).observe(seconds);
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()).entry(function.to_string()).or_default() += 1;
    }

    /// Completed calls of `name.namespace` since this gateway started.
    pub fn invocations(&self, function: &str) -> u64 {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).get(function).copied().unwrap_or(0)
    }

    pub fn set_replicas(&self, function: &str, replicas: u64) {
        self.service_count.get_or_create(&Fn { function_name: function.to_string() }).set(replicas as i64);
    }

    pub fn forget(&self, function: &str) {
        self.service_count.remove(&Fn { function_name: function.to_string() });
    }

    pub fn async_accepted(&self, function: &str) {
        self.async_accepted.get_or_create(&Fn { function_name: function.to_string() }).inc();
    }

    pub fn async_retry(&self, function: &str) {
        self.async_retries.get_or_create(&Fn { function_name: function.to_string() }).inc();
    }

    pub fn async_dead_letter(&self, function: &str) {
        self.async_dead.get_or_create(&Fn { function_name: function.to_string() }).inc();
    }

    pub fn set_async_depth(&self, n: u64) {
        self.async_depth.set(n as i64);
    }

    pub fn set_async_inflight(&self, n: u64) {
        self.async_inflight.set(n as i64);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
