//! Asynchronous invocations (spec §11): the durable record of a call, the backend trait the
//! queues implement, and dead letters.

pub mod embedded;
pub mod nats;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct QueueError {
    pub reason: String,
    /// The broker cannot be reached (503 rather than 500).
    pub unavailable: bool,
}

impl QueueError {
    pub fn new(reason: impl Into<String>) -> QueueError {
        QueueError { reason: reason.into(), unavailable: false }
    }

    pub fn unavailable(reason: impl Into<String>) -> QueueError {
        QueueError { reason: reason.into(), unavailable: true }
    }
}

/// Everything about a call but its body (stored beside it, never re-encoded).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    pub call_id: String,
    pub function: String,
    pub namespace: String,
    pub method: String,
    /// The path after `/async-function/<name>` (`""` or starting with `/`).
    pub path: String,
    pub query: Option<String>,
    /// Request headers, hop-by-hop removed.
    pub headers: Vec<(String, String)>,
    pub callback_url: Option<String>,
    pub traceparent: String,
    /// Unix nanoseconds.
    pub enqueued_at: u64,
    /// Attempts made so far.
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// Unix nanoseconds; set on dead letters.
    pub failed_at: Option<u64>,
    /// Unix nanoseconds before which a retried record must not run (NATS; the embedded queue
    /// keys records by due time instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<u64>,
    /// Set once the function has answered but its callback failed: the record's body is then
    /// the function's answer, and only the callback is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
}

/// A function's answer kept for its callback's retries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// The callback's headers (`X-Function-Status`, `X-Call-Id`, …, and the function's own).
    pub headers: Vec<(String, String)>,
    /// Callback attempts made so far.
    pub callbacks: u32,
}

impl Meta {
    /// A dead letter queued again: attempts (or callback attempts) start over.
    pub fn reset_for_retry(&mut self) {
        self.attempts = 0;
        self.due = None;
        self.failed_at = None;
        self.last_error = None;
        self.last_status = None;
        if let Some(r) = &mut self.result {
            r.callbacks = 0;
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Record {
    pub meta: Meta,
    pub body: Bytes,
}

impl Record {
    /// `[u32 meta length][meta JSON][body]`: the body is stored as it came (no base64).
    pub fn encode(&self) -> Vec<u8> {
        let meta = serde_json::to_vec(&self.meta).expect("metadata always serialises");
        let mut out = Vec::with_capacity(4 + meta.len() + self.body.len());
        out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Record, QueueError> {
        let bad = || QueueError::new("corrupt queue record");
        let len = u32::from_be_bytes(b.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?) as usize;
        let meta = serde_json::from_slice(b.get(4..4 + len).ok_or_else(bad)?).map_err(|e| QueueError::new(format!("corrupt queue record: {e}")))?;
        Ok(Record { meta, body: Bytes::copy_from_slice(&b[4 + len..]) })
    }

    pub fn key(&self) -> String {
        format!("{}.{}", self.meta.function, self.meta.namespace)
    }
}

/// A record handed to one worker: acknowledge it, retry it later, or move it to dead letters.
pub struct Taken {
    pub id: Vec<u8>,
    pub record: Record,
    /// The backend's own handle (a NATS message to acknowledge).
    pub handle: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// A queue backend: embedded (redb in `state_dir`) or NATS JetStream.
pub trait Backend: Send + Sync {
    /// Stores a record durably; returns once it would survive a crash.
    fn push(&self, rec: Record) -> BoxFut<'_, Result<(), QueueError>>;
    /// Up to `max` records due now that `admit` accepts (by function), handed to the caller.
    fn take<'a>(&'a self, max: usize, admit: &'a (dyn Fn(&Meta) -> bool + Sync)) -> BoxFut<'a, Result<Vec<Taken>, QueueError>>;
    fn ack(&self, t: Taken) -> BoxFut<'_, Result<(), QueueError>>;
    /// Back in the queue, due at `at`, with the record's new state (attempts, last error).
    fn retry_at(&self, t: Taken, rec: Record, at: SystemTime) -> BoxFut<'_, Result<(), QueueError>>;
    /// Out of the queue, into the dead letters.
    fn dead_letter(&self, t: Taken, rec: Record) -> BoxFut<'_, Result<(), QueueError>>;
    /// Tells the backend a long call is still running (NATS: extends the ack wait).
    fn progress<'a>(&'a self, _t: &'a Taken) -> BoxFut<'a, ()> {
        Box::pin(async {})
    }
    /// The largest body a record may carry, when the backend limits it.
    fn max_body(&self) -> Option<usize> {
        None
    }
    /// Resolves when a record may be due: after a push, or at the earliest scheduled retry.
    fn wait(&self) -> BoxFut<'_, ()>;
    /// Records waiting (not handed out).
    fn depth(&self) -> u64;
    fn dead_letters(&self) -> BoxFut<'_, Result<Vec<Record>, QueueError>>;
    /// Queues a dead letter again with its attempts reset; `false` when unknown.
    fn retry_dead(&self, call_id: String) -> BoxFut<'_, Result<bool, QueueError>>;
    fn delete_dead(&self, call_id: String) -> BoxFut<'_, Result<bool, QueueError>>;
}

pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Retry n waits min(initial × 2^(n−1), max) ± 20 % (spec §11.3).
pub fn backoff(n: u32, initial: Duration, max: Duration) -> Duration {
    let base = initial.saturating_mul(1u32 << n.saturating_sub(1).min(20)).min(max);
    let jitter = (uuid::Uuid::new_v4().as_u128() % 401) as f64 / 1000.0 - 0.2;
    base.mul_f64(1.0 + jitter)
}

/// The dead-letter JSON of §11.3.
pub fn dead_letter_json(r: &Record) -> serde_json::Value {
    let t = |ns: u64| crate::local::logs::time::rfc3339(i128::from(ns));
    serde_json::json!({
        "callId": r.meta.call_id,
        "function": r.meta.function,
        "namespace": r.meta.namespace,
        "attempts": r.meta.attempts,
        "lastStatus": r.meta.last_status,
        "lastError": r.meta.last_error,
        "enqueuedAt": t(r.meta.enqueued_at),
        "failedAt": r.meta.failed_at.map(t),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_keeps_the_body_as_is() {
        let body: Vec<u8> = (0..=255u8).collect();
        let r = Record { meta: Meta { call_id: "c".into(), function: "f".into(), attempts: 2, ..Meta::default() }, body: Bytes::from(body.clone()) };
        let enc = r.encode();
        assert!(enc.len() < body.len() + 400, "no base64 of the payload");
        let back = Record::decode(&enc).unwrap();
        assert_eq!((back.meta.call_id.as_str(), back.meta.attempts, &back.body[..]), ("c", 2, &body[..]));
        assert!(Record::decode(b"\0\0").is_err());
    }

    #[test]
    fn backoff_grows_and_caps() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(60));
        for (n, want) in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 60.0)] {
            let got = backoff(n, i, m).as_secs_f64();
            assert!(got >= want * 0.79 && got <= want * 1.21, "retry {n}: {got}");
        }
    }
}
