//! The in-memory buffer: per (user, goal) key one collapsed [`Delta`], split into
//! partitions by hash(user id), one per flush worker, so one user's keys are always written
//! by one worker (in order, without lock fights between workers).
//!
//! Group commit works by generations. Each partition has an open generation that new
//! events join; taking a batch closes it. Batches of a partition are flushed one at a time,
//! so when a batch commits, everything enqueued up to its generation is durable — including
//! the content of earlier failed batches, which is merged back into the open generation.
//! The partition's committed watermark is therefore monotone and an RPC waits for
//! `committed >= its generation`.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use extend_challenge_common::config::Goal;
use extend_challenge_common::progress::{self, Delta};
use extend_challenge_common::store::flush::BatchItem;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use crate::metrics;

type Key = (String, String);

struct Entry {
    goal: Arc<Goal>,
    namespace: String,
    delta: Delta,
}

/// A bounded FIFO of recently enqueued event ids → the generation they joined.
struct DedupWindow {
    ids: HashMap<String, u64>,
    order: VecDeque<String>,
    capacity: usize,
}

impl DedupWindow {
    fn new(capacity: usize) -> Self {
        Self {
            ids: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn get(&self, id: &str) -> Option<u64> {
        self.ids.get(id).copied()
    }

    fn insert(&mut self, id: &str, generation: u64) {
        if self.ids.insert(id.to_string(), generation).is_none() {
            self.order.push_back(id.to_string());
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
        }
    }
}

struct PartitionState {
    pending: HashMap<Key, Entry>,
    open_generation: u64,
    window: DedupWindow,
    /// Ids leased in Redis whose events sit in the open generation (marked done after
    /// their batch commits).
    leased_ids: Vec<String>,
}

struct Partition {
    state: Mutex<PartitionState>,
    committed: watch::Sender<u64>,
    wake: Notify,
    flush_lock: tokio::sync::Mutex<()>,
}

/// A closed generation taken for flushing.
pub struct Batch {
    pub generation: u64,
    pub items: Vec<BatchItem>,
    pub leased_ids: Vec<String>,
}

/// The result of [`Buffer::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Joined this generation.
    Accepted(u64),
    /// The id was already enqueued, in this generation.
    Duplicate(u64),
    /// Accepting would exceed the pending-key bound.
    Full,
}

/// One event's contribution, ready to buffer.
pub struct Contribution<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub namespace: &'a str,
    pub deltas: Vec<(Arc<Goal>, Delta)>,
    /// The id holds a Redis lease to mark done once committed.
    pub leased: bool,
}

pub struct Buffer {
    partitions: Vec<Partition>,
    pending_keys: AtomicUsize,
    max_pending_keys: usize,
    flush_threshold: usize,
    eager: bool,
}

impl Buffer {
    /// `eager`: wake the partition's flusher on every enqueue (durable mode: batches run
    /// back to back). Otherwise it is woken once `flush_threshold` keys are pending in the
    /// partition.
    pub fn new(
        partitions: usize,
        flush_threshold: usize,
        max_pending_keys: usize,
        dedup_window: usize,
        eager: bool,
    ) -> Self {
        let partitions = partitions.max(1);
        let per_window = dedup_window.div_ceil(partitions);
        Self {
            partitions: (0..partitions)
                .map(|_| Partition {
                    state: Mutex::new(PartitionState {
                        pending: HashMap::new(),
                        open_generation: 1,
                        window: DedupWindow::new(per_window),
                        leased_ids: Vec::new(),
                    }),
                    committed: watch::Sender::new(0),
                    wake: Notify::new(),
                    flush_lock: tokio::sync::Mutex::new(()),
                })
                .collect(),
            pending_keys: AtomicUsize::new(0),
            max_pending_keys: max_pending_keys.max(1),
            flush_threshold: flush_threshold.max(1),
            eager,
        }
    }

    pub fn partitions(&self) -> usize {
        self.partitions.len()
    }

    /// The partition that owns a user: a stable hash, so a user always maps to one flusher.
    pub fn partition_of(&self, user_id: &str) -> usize {
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(user_id);
        (h % self.partitions.len() as u64) as usize
    }

    /// Pending keys over all partitions.
    pub fn pending_keys(&self) -> usize {
        self.pending_keys.load(Ordering::Relaxed)
    }

    pub fn has_pending(&self, part: usize) -> bool {
        !self.partitions[part].state.lock().pending.is_empty()
    }

    /// The generation an id joined, if it is in the de-duplication window.
    pub fn lookup(&self, part: usize, id: &str) -> Option<u64> {
        self.partitions[part].state.lock().window.get(id)
    }

    /// Buffers one event's deltas atomically with its de-duplication check.
    pub fn enqueue(&self, part: usize, c: Contribution<'_>) -> Enqueued {
        let p = &self.partitions[part];
        // Keys are built before taking the lock.
        let keyed: Vec<(Key, Arc<Goal>, Delta)> = c
            .deltas
            .into_iter()
            .map(|(goal, delta)| ((c.user_id.to_string(), goal.id.clone()), goal, delta))
            .collect();
        let mut st = p.state.lock();
        if !c.id.is_empty()
            && let Some(generation) = st.window.get(c.id)
        {
            return Enqueued::Duplicate(generation);
        }
        let new_keys = keyed
            .iter()
            .filter(|(k, _, _)| !st.pending.contains_key(k))
            .count();
        if new_keys > 0 && self.pending_keys() + new_keys > self.max_pending_keys {
            return Enqueued::Full;
        }
        for (key, goal, delta) in keyed {
            match st.pending.entry(key) {
                MapEntry::Occupied(mut e) => progress::merge(&mut e.get_mut().delta, delta),
                MapEntry::Vacant(e) => {
                    e.insert(Entry {
                        goal,
                        namespace: c.namespace.to_string(),
                        delta,
                    });
                }
            }
        }
        let generation = st.open_generation;
        if !c.id.is_empty() {
            st.window.insert(c.id, generation);
            if c.leased {
                st.leased_ids.push(c.id.to_string());
            }
        }
        let wake = self.eager || st.pending.len() >= self.flush_threshold;
        drop(st);
        self.pending_keys.fetch_add(new_keys, Ordering::Relaxed);
        metrics::BUFFER_SIZE.add(new_keys as i64);
        if wake {
            p.wake.notify_one();
        }
        Enqueued::Accepted(generation)
    }

    /// Closes the open generation and returns its content, or `None` when nothing is
    /// pending. Items are sorted by (user, goal).
    pub fn take(&self, part: usize) -> Option<Batch> {
        let mut st = self.partitions[part].state.lock();
        if st.pending.is_empty() {
            return None;
        }
        let pending = std::mem::take(&mut st.pending);
        let leased_ids = std::mem::take(&mut st.leased_ids);
        let generation = st.open_generation;
        st.open_generation += 1;
        drop(st);
        self.pending_keys
            .fetch_sub(pending.len(), Ordering::Relaxed);
        metrics::BUFFER_SIZE.sub(pending.len() as i64);
        let mut items: Vec<BatchItem> = pending
            .into_iter()
            .map(|((user_id, _), e)| BatchItem {
                user_id,
                goal: e.goal,
                namespace: e.namespace,
                delta: e.delta,
            })
            .collect();
        items.sort_unstable_by(|a, b| (&a.user_id, &a.goal.id).cmp(&(&b.user_id, &b.goal.id)));
        Some(Batch {
            generation,
            items,
            leased_ids,
        })
    }

    /// Puts a failed batch back: each delta is merged as the older side of whatever
    /// arrived since, so counts add up and the latest value stays the latest.
    pub fn restore(&self, part: usize, batch: Batch) {
        let mut st = self.partitions[part].state.lock();
        let mut new_keys = 0usize;
        for item in batch.items {
            match st.pending.entry((item.user_id, item.goal.id.clone())) {
                MapEntry::Occupied(mut e) => {
                    let mut older = item.delta;
                    progress::merge(&mut older, e.get().delta);
                    e.get_mut().delta = older;
                }
                MapEntry::Vacant(e) => {
                    new_keys += 1;
                    e.insert(Entry {
                        goal: item.goal,
                        namespace: item.namespace,
                        delta: item.delta,
                    });
                }
            }
        }
        let mut ids = batch.leased_ids;
        ids.append(&mut st.leased_ids);
        st.leased_ids = ids;
        drop(st);
        self.pending_keys.fetch_add(new_keys, Ordering::Relaxed);
        metrics::BUFFER_SIZE.add(new_keys as i64);
    }

    /// Records that every generation up to `generation` is durable.
    pub fn mark_committed(&self, part: usize, generation: u64) {
        self.partitions[part].committed.send_if_modified(|c| {
            if *c < generation {
                *c = generation;
                true
            } else {
                false
            }
        });
    }

    pub fn is_committed(&self, part: usize, generation: u64) -> bool {
        *self.partitions[part].committed.borrow() >= generation
    }

    /// Waits until `generation` of `part` committed; `false` when `deadline` passed first.
    pub async fn wait_committed(&self, part: usize, generation: u64, deadline: Duration) -> bool {
        let mut rx = self.partitions[part].committed.subscribe();
        matches!(
            tokio::time::timeout(deadline, rx.wait_for(|c| *c >= generation)).await,
            Ok(Ok(_))
        )
    }

    /// Resolves when the partition's flusher should look for work.
    pub async fn woken(&self, part: usize) {
        self.partitions[part].wake.notified().await;
    }

    /// Serialises flushes of one partition (the background worker and `flush_once`).
    pub async fn lock_flush(&self, part: usize) -> tokio::sync::MutexGuard<'_, ()> {
        self.partitions[part].flush_lock.lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_window_is_bounded_fifo() {
        let mut w = DedupWindow::new(2);
        w.insert("a", 1);
        w.insert("b", 1);
        w.insert("a", 5);
        assert_eq!(w.get("a"), Some(5));
        w.insert("c", 2);
        assert_eq!(w.get("a"), None);
        assert_eq!(w.get("b"), Some(1));
        assert_eq!(w.get("c"), Some(2));
        assert_eq!(w.ids.len(), 2);
    }

    #[test]
    fn a_user_always_maps_to_one_partition() {
        let b = Buffer::new(4, 10, 100, 10, false);
        let p = b.partition_of("user-42");
        for _ in 0..10 {
            assert_eq!(b.partition_of("user-42"), p);
        }
        assert!(p < 4);
    }
}
