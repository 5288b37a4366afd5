//! The NATS JetStream queue (`faas_nats_address`): records published to a file-storage stream
//! and consumed through one durable pull consumer shared by every gateway and worker, so the
//! work is shared and survives any of them. A retry publishes the record again with its attempt
//! count and due time, then acknowledges the old one (a crash between the two repeats a call,
//! never loses one); a record not due yet goes back with a NAK delayed until then. Dead letters go
//! to the stream `<faas_nats_stream>-dead`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, message::AckKind, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use super::{unix_nanos, Backend, BoxFut, Meta, QueueError, Record, Taken};

/// How long a handed-out record may go without an acknowledgement or progress report before
/// NATS gives it to another worker (spec §11.3).
pub const ACK_WAIT: Duration = Duration::from_secs(30);

pub struct Nats {
    js: jetstream::Context,
    subject: String,
    dead_subject: String,
    dead_stream: String,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    depth: AtomicU64,
    /// When `depth` was last read from the server (Unix nanoseconds).
    depth_at: AtomicU64,
    /// The largest body a record may carry: the server's max payload minus room for metadata.
    pub max_body: usize,
}

fn err(e: impl std::fmt::Display) -> QueueError {
    QueueError::new(e.to_string())
}

pub struct Settings<'a> {
    pub address: &'a str,
    pub port: u16,
    pub subject: &'a str,
    pub stream: &'a str,
    pub durable: &'a str,
}

impl Nats {
    pub async fn connect(s: Settings<'_>) -> Result<Arc<Nats>, QueueError> {
        let url = format!("nats://{}:{}", s.address, s.port);
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .connect(&url)
            .await
            .map_err(|e| QueueError::new(format!("cannot connect to {url}: {e}")))?;
        let js = jetstream::new(client.clone());
        let dead_stream = format!("{}-dead", s.stream);
        let dead_subject = format!("{}-dead", s.subject);
        let create = |name: &str, subject: &str, retention| stream::Config {
            name: name.to_string(),
            subjects: vec![subject.to_string()],
            storage: stream::StorageType::File,
            retention,
            ..Default::default()
        };
        // Work-queue retention: a record is deleted from the stream once acknowledged, so the
        // stream holds only what is waiting. Dead letters stay until deleted.
        let main_config = create(s.stream, s.subject, stream::RetentionPolicy::WorkQueue);
        let main = tokio::time::timeout(Duration::from_secs(10), js.get_or_create_stream(main_config))
            .await
            .map_err(|_| QueueError::new(format!("NATS at {url}: no JetStream answer within 10s")))?
            .map_err(|e| QueueError::new(format!("cannot create stream {}: {e}", s.stream)))?;
        js.get_or_create_stream(create(&dead_stream, &dead_subject, stream::RetentionPolicy::Limits)).await.map_err(|e| QueueError::new(format!("cannot create stream {dead_stream}: {e}")))?;
        let consumer = main
            .get_or_create_consumer(
                s.durable,
                pull::Config {
                    durable_name: Some(s.durable.to_string()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| QueueError::new(format!("cannot create consumer {}: {e}", s.durable)))?;
        // Read once connected (the stream calls above needed the server).
        let max_payload = client.server_info().max_payload;
        Ok(Arc::new(Nats {
            js,
            subject: s.subject.to_string(),
            dead_subject,
            dead_stream,
            consumer,
            depth: AtomicU64::new(0),
            depth_at: AtomicU64::new(0),
            max_body: max_payload.saturating_sub(64 * 1024),
        }))
    }

    async fn publish(&self, subject: &str, payload: Vec<u8>) -> Result<(), QueueError> {
        let unavailable = || QueueError::unavailable("NATS unavailable");
        let ack = tokio::time::timeout(Duration::from_secs(5), async {
            self.js.publish(subject.to_string(), Bytes::from(payload)).await.map_err(|_| unavailable())?.await.map_err(|_| unavailable())
        })
        .await
        .map_err(|_| unavailable())??;
        let _ = ack;
        Ok(())
    }

    fn message(t: &Taken) -> Option<&jetstream::Message> {
        t.handle.as_ref()?.downcast_ref::<jetstream::Message>()
    }

    /// Every dead letter with its stream sequence.
    async fn dead(&self) -> Result<Vec<(u64, Record)>, QueueError> {
        let mut stream = self.js.get_stream(&self.dead_stream).await.map_err(err)?;
        let info = stream.info().await.map_err(err)?.state.clone();
        let mut out = Vec::new();
        if info.messages == 0 {
            return Ok(out);
        }
        for seq in info.first_sequence..=info.last_sequence {
            if let Ok(m) = stream.get_raw_message(seq).await {
                if let Ok(r) = Record::decode(&m.payload) {
                    out.push((seq, r));
                }
            }
        }
        Ok(out)
    }
}

impl Backend for Nats {
    fn push(&self, rec: Record) -> BoxFut<'_, Result<(), QueueError>> {
        Box::pin(async move { self.publish(&self.subject, rec.encode()).await })
    }

    fn take<'a>(&'a self, max: usize, admit: &'a (dyn Fn(&Meta) -> bool + Sync)) -> BoxFut<'a, Result<Vec<Taken>, QueueError>> {
        Box::pin(async move {
            // The pending count costs a round trip: refreshed at most once a second.
            let now = unix_nanos(SystemTime::now());
            if now.saturating_sub(self.depth_at.load(Ordering::Relaxed)) > 1_000_000_000 {
                self.depth_at.store(now, Ordering::Relaxed);
                if let Ok(info) = self.consumer.get_info().await {
                    self.depth.store(info.num_pending, Ordering::Relaxed);
                }
            }
            let mut batch = self.consumer.fetch().max_messages(max).expires(Duration::from_millis(500)).messages().await.map_err(err)?;
            let mut out = Vec::new();
            while let Some(m) = batch.next().await {
                let Ok(m) = m else { continue };
                let record = match Record::decode(&m.payload) {
                    Ok(r) => r,
                    Err(e) => {
                        watchdog::logs::error(&format!("dropping a queue record: {e}"));
                        let _ = m.ack_with(AckKind::Term).await;
                        continue;
                    }
                };
                let now = unix_nanos(SystemTime::now());
                if let Some(due) = record.meta.due.filter(|d| *d > now) {
                    let _ = m.ack_with(AckKind::Nak(Some(Duration::from_nanos(due - now)))).await;
                    continue;
                }
                if !admit(&record.meta) {
                    // Over this function's limit here: back to the queue for later or elsewhere.
                    let _ = m.ack_with(AckKind::Nak(Some(Duration::from_millis(200)))).await;
                    continue;
                }
                out.push(Taken { id: Vec::new(), record, handle: Some(Box::new(m)) });
            }
            Ok(out)
        })
    }

    fn ack(&self, t: Taken) -> BoxFut<'_, Result<(), QueueError>> {
        Box::pin(async move {
            match Self::message(&t) {
                Some(m) => m.double_ack().await.map_err(err),
                None => Ok(()),
            }
        })
    }

    fn retry_at(&self, t: Taken, mut rec: Record, at: SystemTime) -> BoxFut<'_, Result<(), QueueError>> {
        Box::pin(async move {
            rec.meta.due = Some(unix_nanos(at));
            self.publish(&self.subject, rec.encode()).await?;
            match Self::message(&t) {
                Some(m) => m.double_ack().await.map_err(err),
                None => Ok(()),
            }
        })
    }

    fn dead_letter(&self, t: Taken, mut rec: Record) -> BoxFut<'_, Result<(), QueueError>> {
        Box::pin(async move {
            rec.meta.failed_at = Some(unix_nanos(SystemTime::now()));
            self.publish(&self.dead_subject, rec.encode()).await?;
            match Self::message(&t) {
                Some(m) => m.double_ack().await.map_err(err),
                None => Ok(()),
            }
        })
    }

    fn progress<'a>(&'a self, t: &'a Taken) -> BoxFut<'a, ()> {
        Box::pin(async move {
            if let Some(m) = Self::message(t) {
                let _ = m.ack_with(AckKind::Progress).await;
            }
        })
    }

    fn wait(&self) -> BoxFut<'_, ()> {
        // `take` itself waits for messages (up to its fetch expiry).
        Box::pin(tokio::time::sleep(Duration::from_millis(10)))
    }

    fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    fn max_body(&self) -> Option<usize> {
        Some(self.max_body)
    }

    fn dead_letters(&self) -> BoxFut<'_, Result<Vec<Record>, QueueError>> {
        Box::pin(async move { Ok(self.dead().await?.into_iter().map(|(_, r)| r).collect()) })
    }

    fn retry_dead(&self, call_id: String) -> BoxFut<'_, Result<bool, QueueError>> {
        Box::pin(async move {
            let Some((seq, mut rec)) = self.dead().await?.into_iter().find(|(_, r)| r.meta.call_id == call_id) else { return Ok(false) };
            rec.meta.reset_for_retry();
            self.publish(&self.subject, rec.encode()).await?;
            let stream = self.js.get_stream(&self.dead_stream).await.map_err(err)?;
            stream.delete_message(seq).await.map_err(err)?;
            Ok(true)
        })
    }

    fn delete_dead(&self, call_id: String) -> BoxFut<'_, Result<bool, QueueError>> {
        Box::pin(async move {
            let Some((seq, _)) = self.dead().await?.into_iter().find(|(_, r)| r.meta.call_id == call_id) else { return Ok(false) };
            let stream = self.js.get_stream(&self.dead_stream).await.map_err(err)?;
            stream.delete_message(seq).await.map_err(err)?;
            Ok(true)
        })
    }
}
