//! The embedded queue: a redb database in `state_dir` (crash-safe, fsynced commits). Records are
//! keyed by due time, so retries wait in the same table and survive restarts; records handed to
//! a worker stay stored until acknowledged, so a crash replays them at the next start.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use tokio::sync::{mpsc, oneshot, Notify};

use super::{unix_nanos, Backend, BoxFut, Meta, QueueError, Record, Taken};

const QUEUE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("queue");
const DEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("dead");

/// A change to make in the next write transaction.
type Job = Box<dyn FnOnce(&WriteTransaction) -> Result<(), QueueError> + Send>;

pub struct Embedded {
    db: Arc<Database>,
    /// Changes wait here for the writer, which commits them in batches: concurrent 202s share
    /// one fsync (group commit).
    writes: mpsc::UnboundedSender<(Job, oneshot::Sender<Result<(), String>>)>,
    seq: AtomicU64,
    /// Keys handed to workers and not yet settled.
    taken: Mutex<HashSet<Vec<u8>>>,
    depth: AtomicU64,
    notify: Notify,
    /// Unix milliseconds of the earliest retry seen in the last scan (0: none).
    next_due: AtomicU64,
}

fn err(e: impl std::fmt::Display) -> QueueError {
    QueueError::new(e.to_string())
}

fn key(due_ms: u64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Embedded {
    pub fn open(path: &Path) -> Result<Arc<Embedded>, QueueError> {
        // A bounded page cache: a large backlog must not grow the gateway's memory with it.
        let db = Database::builder()
            .set_cache_size(16 << 20)
            .create(path)
            .map_err(|e| QueueError::new(format!("cannot open {}: {e}", path.display())))?;
        let (seq, depth) = {
            let w = db.begin_write().map_err(err)?;
            {
                w.open_table(DEAD).map_err(err)?;
            }
            let (seq, depth) = {
                let t = w.open_table(QUEUE).map_err(err)?;
                let last = t.last().map_err(err)?.map(|(k, _)| {
                    let k = k.value();
                    u64::from_be_bytes(k[8..16].try_into().unwrap_or([0; 8]))
                });
                (last.unwrap_or(0) + 1, t.len().map_err(err)?)
            };
            w.commit().map_err(err)?;
            (seq, depth)
        };
        let db = Arc::new(db);
        let (writes, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(db.clone(), rx));
        Ok(Arc::new(Embedded {
            db,
            writes,
            seq: AtomicU64::new(seq),
            taken: Mutex::new(HashSet::new()),
            depth: AtomicU64::new(depth),
            notify: Notify::new(),
            next_due: AtomicU64::new(0),
        }))
    }

    /// Runs a blocking database job off the runtime thread (commits fsync).
    async fn blocking<T: Send + 'static>(&self, job: impl FnOnce(&Database) -> Result<T, QueueError> + Send + 'static) -> Result<T, QueueError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || job(&db)).await.map_err(|e| QueueError::new(format!("queue task failed: {e}")))?
    }

    /// Applies `job` in the writer's next transaction and waits for its commit.
    async fn write(&self, job: impl FnOnce(&WriteTransaction) -> Result<(), QueueError> + Send + 'static) -> Result<(), QueueError> {
        let (tx, rx) = oneshot::channel();
        self.writes.send((Box::new(job), tx)).map_err(|_| QueueError::new("queue writer stopped"))?;
        rx.await.map_err(|_| QueueError::new("queue writer stopped"))?.map_err(QueueError::new)
    }

    fn settle(&self, id: &[u8]) {
        self.taken.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// Commits queued changes in batches (up to 512 per transaction), one fsync each, off the
/// runtime thread; every change of a batch gets the commit's outcome.
async fn writer(db: Arc<Database>, mut rx: mpsc::UnboundedReceiver<(Job, oneshot::Sender<Result<(), String>>)>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let (jobs, replies): (Vec<Job>, Vec<_>) = batch.into_iter().unzip();
        let db = db.clone();
        let outcome = tokio::task::spawn_blocking(move || -> Result<(), QueueError> {
            let w = db.begin_write().map_err(err)?;
            for job in jobs {
                job(&w)?;
            }
            w.commit().map_err(err)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        for reply in replies {
            let _ = reply.send(outcome.clone());
        }
    }
}

impl Backend for Embedded {
    fn push(&self, rec: Record) -> BoxFut<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let k = key(now_ms(), self.seq.fetch_add(1, Ordering::Relaxed));
            let v = rec.encode();
            // Counted before the commit: once sent, the change commits even if the client goes
            // away and this future is dropped (the record is then processed, and acknowledged).
            self.depth.fetch_add(1, Ordering::Relaxed);
            let done = self.write(move |w| w.open_table(QUEUE).map_err(err)?.insert(k.as_slice(), v.as_slice()).map(drop).map_err(err)).await;
            if done.is_err() {
                self.depth.fetch_sub(1, Ordering::Relaxed);
            }
            self.notify.notify_one();
            done
        })
    }

    fn take<'a>(&'a self, max: usize, admit: &'a (dyn Fn(&Meta) -> bool + Sync)) -> BoxFut<'a, Result<Vec<Taken>, QueueError>> {
        Box::pin(async move {
            let now = now_ms();
            // Locked before the snapshot: an acknowledgement settled after the snapshot was
            // taken would otherwise make its record look free to hand out again.
            let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
            let r = self.db.begin_read().map_err(err)?;
            let t = r.open_table(QUEUE).map_err(err)?;
            // The exact count, from the snapshot (the counters kept between scans drift when a
            // client goes away mid-request).
            if let Ok(n) = t.len() {
                self.depth.store(n, Ordering::Relaxed);
            }
            let mut out = Vec::new();
            let mut next_due = 0;
            for item in t.iter().map_err(err)? {
                let (k, v) = item.map_err(err)?;
                let k = k.value().to_vec();
                let due = u64::from_be_bytes(k[..8].try_into().unwrap_or([0; 8]));
                if due > now {
                    next_due = due;
                    break;
                }
                if out.len() >= max {
                    break;
                }
                if taken.contains(&k) {
                    continue;
                }
                let record = match Record::decode(v.value()) {
                    Ok(r) => r,
                    Err(e) => {
                        watchdog::logs::error(&format!("skipping a queue record: {e}"));
                        continue;
                    }
                };
                if !admit(&record.meta) {
                    continue;
                }
                taken.insert(k.clone());
                out.push(Taken { id: k, record, handle: None });
            }
            self.next_due.store(next_due, Ordering::Relaxed);
            Ok(out)
        })
    }

    fn ack(&self, t: Taken) -> BoxFut<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let id = t.id.clone();
            self.write(move |w| w.open_table(QUEUE).map_err(err)?.remove(id.as_slice()).map(drop).map_err(err)).await?;
            self.settle(&t.id);
            self.depth.fetch_sub(1, Ordering::Relaxed);
            self.notify.notify_one();
            Ok(())
        })
    }

    fn retry_at(&self, t: Taken, rec: Record, at: SystemTime) -> BoxFut<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let due = at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
            let k = key(due, self.seq.fetch_add(1, Ordering::Relaxed));
            let (old, v) = (t.id.clone(), rec.encode());
            self.write(move |w| {
                let mut q = w.open_table(QUEUE).map_err(err)?;
                q.remove(old.as_slice()).map_err(err)?;
                q.insert(k.as_slice(), v.as_slice()).map(drop).map_err(err)
            })
            .await?;
            self.settle(&t.id);
            let cur = self.next_due.load(Ordering::Relaxed);
            if cur == 0 || due < cur {
                self.next_due.store(due, Ordering::Relaxed);
            }
            self.notify.notify_one();
            Ok(())
        })
    }

    fn dead_letter(&self, t: Taken, mut rec: Record) -> BoxFut<'_, Result<(), QueueError>> {
        Box::pin(async move {
            rec.meta.failed_at = Some(unix_nanos(SystemTime::now()));
            let (old, id, v) = (t.id.clone(), rec.meta.call_id.clone(), rec.encode());
            self.write(move |w| {
                w.open_table(QUEUE).map_err(err)?.remove(old.as_slice()).map_err(err)?;
                w.open_table(DEAD).map_err(err)?.insert(id.as_str(), v.as_slice()).map(drop).map_err(err)
            })
            .await?;
            self.settle(&t.id);
            self.depth.fetch_sub(1, Ordering::Relaxed);
            Ok(())
        })
    }

    fn wait(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let due = self.next_due.load(Ordering::Relaxed);
            let sleep = if due == 0 { Duration::from_secs(1) } else { Duration::from_millis(due.saturating_sub(now_ms())) };
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(sleep.min(Duration::from_secs(1))) => {}
            }
        })
    }

    fn depth(&self) -> u64 {
        let handed = self.taken.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
        self.depth.load(Ordering::Relaxed).saturating_sub(handed)
    }

    fn dead_letters(&self) -> BoxFut<'_, Result<Vec<Record>, QueueError>> {
        Box::pin(async move {
            let r = self.db.begin_read().map_err(err)?;
            let t = r.open_table(DEAD).map_err(err)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(err)? {
                let (_, v) = item.map_err(err)?;
                out.push(Record::decode(v.value())?);
            }
            out.sort_by_key(|r| r.meta.failed_at);
            Ok(out)
        })
    }

    fn retry_dead(&self, call_id: String) -> BoxFut<'_, Result<bool, QueueError>> {
        Box::pin(async move {
            let k = key(now_ms(), self.seq.fetch_add(1, Ordering::Relaxed));
            let found = self
                .blocking(move |db| {
                    let w = db.begin_write().map_err(err)?;
                    let rec = {
                        let mut dead = w.open_table(DEAD).map_err(err)?;
                        let Some(v) = dead.remove(call_id.as_str()).map_err(err)? else { return Ok(false) };
                        Record::decode(v.value())?
                    };
                    let mut rec = rec;
                    rec.meta.reset_for_retry();
                    w.open_table(QUEUE).map_err(err)?.insert(k.as_slice(), rec.encode().as_slice()).map_err(err)?;
                    w.commit().map_err(err)?;
                    Ok(true)
                })
                .await?;
            if found {
                self.depth.fetch_add(1, Ordering::Relaxed);
                self.notify.notify_one();
            }
            Ok(found)
        })
    }

    fn delete_dead(&self, call_id: String) -> BoxFut<'_, Result<bool, QueueError>> {
        Box::pin(async move {
            self.blocking(move |db| {
                let w = db.begin_write().map_err(err)?;
                let found = w.open_table(DEAD).map_err(err)?.remove(call_id.as_str()).map_err(err)?.is_some();
                w.commit().map_err(err)?;
                Ok(found)
            })
            .await
        })
    }
}
