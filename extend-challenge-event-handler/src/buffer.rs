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
//!
//! The one exception is a *deferred* key: a committed batch may leave out keys whose row
//! another transaction held locked (see `store::flush`). Their deltas go back into the open
//! generation like a failed batch's, and the partition remembers, per deferred key, which
//! generation now carries them. An RPC whose event touched such a key (and was not already
//! durable before the deferral) waits for that generation instead — so it is acknowledged
//! only once its delta is really written, while the rest of the batch is acknowledged at
//! once. Redis leases of the deferred users' events likewise move forward with them.

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

/// Where a deferred key's deltas are now.
#[derive(Debug, Clone, Copy)]
struct Deferral {
    /// Contributions of generations up to this one were durable before the key was first
    /// deferred (the committed watermark then).
    since: u64,
    /// The generation holding the key's deferred deltas: durable once it commits.
    until: u64,
}

struct PartitionState {
    pending: HashMap<Key, Entry>,
    open_generation: u64,
    window: DedupWindow,
    /// Ids leased in Redis whose events sit in the open generation (marked done after
    /// their batch commits).
    leased_ids: Vec<LeasedId>,
    /// Keys left out of a committed batch because their row was locked.
    deferred: HashMap<Key, Deferral>,
}

impl PartitionState {
    /// Whether an event of `generation` touching `goals` of `user_id` is durable, the
    /// partition's committed watermark being `committed`.
    fn durable(&self, committed: u64, generation: u64, user_id: &str, goals: &[Arc<Goal>]) -> bool {
        if committed < generation {
            return false;
        }
        if self.deferred.is_empty() {
            return true;
        }
        goals.iter().all(|g| {
            self.deferred
                .get(&(user_id.to_string(), g.id.clone()))
                .is_none_or(|d| generation <= d.since || d.until <= committed)
        })
    }

    /// Merges `items` back as the older side of whatever arrived since, so counts add up
    /// and the latest value stays the latest. Returns how many keys were new.
    fn merge_back(&mut self, items: Vec<BatchItem>) -> usize {
        let mut new_keys = 0usize;
        for item in items {
            match self.pending.entry((item.user_id, item.goal.id.clone())) {
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
        new_keys
    }

    /// Puts `ids` back before the leases taken since.
    fn keep_leases(&mut self, mut ids: Vec<LeasedId>) {
        ids.append(&mut self.leased_ids);
        self.leased_ids = ids;
    }
}

/// A Redis lease held for an event id, with the event's user.
#[derive(Debug, Clone)]
pub struct LeasedId {
    pub id: String,
    pub user_id: String,
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
    pub leased_ids: Vec<LeasedId>,
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
    /// Keys taken by a batch that has not finished (committed or restored). They count
    /// against `max_pending_keys` too: a capped batch carries most of them back, and
    /// admitting new keys for them would let the backlog grow without bound.
    in_flight_keys: AtomicUsize,
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
                        deferred: HashMap::new(),
                    }),
                    committed: watch::Sender::new(0),
                    wake: Notify::new(),
                    flush_lock: tokio::sync::Mutex::new(()),
                })
                .collect(),
            pending_keys: AtomicUsize::new(0),
            in_flight_keys: AtomicUsize::new(0),
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
        let held = self.pending_keys() + self.in_flight_keys.load(Ordering::Relaxed);
        if new_keys > 0 && held + new_keys > self.max_pending_keys {
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
                st.leased_ids.push(LeasedId {
                    id: c.id.to_string(),
                    user_id: c.user_id.to_string(),
                });
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
        self.in_flight_keys
            .fetch_add(items.len(), Ordering::Relaxed);
        Some(Batch {
            generation,
            items,
            leased_ids,
        })
    }

    /// Puts a failed batch back: each delta is merged as the older side of whatever
    /// arrived since, so counts add up and the latest value stays the latest.
    pub fn restore(&self, part: usize, batch: Batch) {
        let taken = batch.items.len();
        let mut st = self.partitions[part].state.lock();
        let new_keys = st.merge_back(batch.items);
        st.keep_leases(batch.leased_ids);
        drop(st);
        self.pending_keys.fetch_add(new_keys, Ordering::Relaxed);
        metrics::BUFFER_SIZE.add(new_keys as i64);
        self.in_flight_keys.fetch_sub(taken, Ordering::Relaxed);
    }

    /// Records that batch `generation` committed, except `deferred` (its items whose row
    /// was locked): those are merged back like a failed batch's and their events stay
    /// unacknowledged until the generation now carrying them commits. Of the batch's
    /// `leased` ids, returns those now done; the deferred users' ones are kept for later.
    ///
    /// Nothing is acknowledged yet: the caller marks the returned ids done in Redis first,
    /// then calls [`Buffer::acknowledge`], so a redelivery to another replica never finds an
    /// id still "pending" after its first copy was answered `OK`.
    ///
    /// `taken`: how many items the batch held (they stop counting as in flight).
    pub fn commit(
        &self,
        part: usize,
        generation: u64,
        taken: usize,
        deferred: Vec<BatchItem>,
        leased: Vec<LeasedId>,
    ) -> Vec<String> {
        let p = &self.partitions[part];
        let mut st = p.state.lock();
        let mut done = Vec::with_capacity(leased.len());
        if !deferred.is_empty() || !st.deferred.is_empty() {
            let committed = *p.committed.borrow();
            let open = st.open_generation;
            for item in &deferred {
                st.deferred
                    .entry((item.user_id.clone(), item.goal.id.clone()))
                    .and_modify(|d| d.until = open)
                    .or_insert(Deferral {
                        since: committed,
                        until: open,
                    });
            }
            // Written (or no longer pending anywhere older than this batch).
            st.deferred.retain(|_, d| d.until > generation);
        }
        let new_keys = if deferred.is_empty() {
            done.extend(leased.into_iter().map(|l| l.id));
            0
        } else {
            let users: std::collections::HashSet<&str> =
                deferred.iter().map(|i| i.user_id.as_str()).collect();
            let (kept, released): (Vec<LeasedId>, Vec<LeasedId>) = leased
                .into_iter()
                .partition(|l| users.contains(l.user_id.as_str()));
            done.extend(released.into_iter().map(|l| l.id));
            st.keep_leases(kept);
            st.merge_back(deferred)
        };
        drop(st);
        if new_keys > 0 {
            self.pending_keys.fetch_add(new_keys, Ordering::Relaxed);
            metrics::BUFFER_SIZE.add(new_keys as i64);
        }
        self.in_flight_keys.fetch_sub(taken, Ordering::Relaxed);
        done
    }

    /// Wakes the waiters of every generation up to `generation` (call after
    /// [`Buffer::commit`], which records the deferrals a waiter must see).
    pub fn acknowledge(&self, part: usize, generation: u64) {
        self.partitions[part].committed.send_if_modified(|c| {
            if *c < generation {
                *c = generation;
                true
            } else {
                false
            }
        });
    }

    /// Whether an event of `generation` touching `goals` of `user_id` is durable.
    pub fn is_committed(
        &self,
        part: usize,
        generation: u64,
        user_id: &str,
        goals: &[Arc<Goal>],
    ) -> bool {
        let p = &self.partitions[part];
        // The watermark first, then the deferrals (recorded before it moves).
        let committed = *p.committed.borrow();
        p.state
            .lock()
            .durable(committed, generation, user_id, goals)
    }

    /// Waits until the event of `generation` touching `goals` of `user_id` is durable (see
    /// [`Buffer::is_committed`]); `false` when `deadline` passed first.
    pub async fn wait_committed(
        &self,
        part: usize,
        generation: u64,
        user_id: &str,
        goals: &[Arc<Goal>],
        deadline: Duration,
    ) -> bool {
        let p = &self.partitions[part];
        let mut rx = p.committed.subscribe();
        let wait = async {
            loop {
                let committed = *rx.borrow_and_update();
                if p.state
                    .lock()
                    .durable(committed, generation, user_id, goals)
                {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(deadline, wait).await.unwrap_or(false)
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

    fn goal(id: &str) -> Arc<Goal> {
        let config = extend_challenge_common::config::load_from_path(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/challenges.json"
        ))
        .unwrap();
        config.goal(id).unwrap().clone()
    }

    fn login(b: &Buffer, id: &str, user: &str, goal: &Arc<Goal>) -> u64 {
        let c = Contribution {
            id,
            user_id: user,
            namespace: "ns",
            deltas: vec![(goal.clone(), progress::delta_for_login(goal))],
            leased: true,
        };
        match b.enqueue(0, c) {
            Enqueued::Accepted(g) => g,
            other => panic!("{other:?}"),
        }
    }

    fn try_login(b: &Buffer, id: &str, user: &str, goal: &Arc<Goal>) -> Enqueued {
        b.enqueue(
            0,
            Contribution {
                id,
                user_id: user,
                namespace: "ns",
                deltas: vec![(goal.clone(), progress::delta_for_login(goal))],
                leased: false,
            },
        )
    }

    /// Keys a batch took count against the bound until the batch is done, so a capped
    /// batch that carries most of its keys back cannot let the backlog grow past it.
    #[test]
    fn keys_in_flight_count_against_the_bound() {
        let b = Buffer::new(1, 100, 3, 100, false);
        let total = goal("login-total");
        for (i, u) in ["u1", "u2", "u3"].iter().enumerate() {
            login(&b, &format!("e{i}"), u, &total);
        }
        assert!(matches!(try_login(&b, "e3", "u4", &total), Enqueued::Full));
        let batch = b.take(0).unwrap();
        assert_eq!(b.pending_keys(), 0);
        // The batch is in flight: still no room for a new key.
        assert!(matches!(try_login(&b, "e4", "u4", &total), Enqueued::Full));
        // It writes one key and carries two back: room for exactly one new key.
        let taken = batch.items.len();
        let carried: Vec<BatchItem> = batch.items.into_iter().skip(1).collect();
        b.commit(0, batch.generation, taken, carried, batch.leased_ids);
        b.acknowledge(0, batch.generation);
        assert_eq!(b.pending_keys(), 2);
        assert!(matches!(
            try_login(&b, "e5", "u4", &total),
            Enqueued::Accepted(_)
        ));
        assert!(matches!(try_login(&b, "e6", "u5", &total), Enqueued::Full));
        // A failed batch frees its in-flight count when restored.
        let failed = b.take(0).unwrap();
        b.restore(0, failed);
        assert!(matches!(try_login(&b, "e7", "u5", &total), Enqueued::Full));
        assert_eq!(b.pending_keys(), 3);
    }

    /// Takes the open generation and commits it, deferring `user`'s items.
    fn commit_deferring(b: &Buffer, user: Option<&str>) -> Vec<String> {
        let batch = b.take(0).unwrap();
        let taken = batch.items.len();
        let (deferred, _): (Vec<BatchItem>, Vec<BatchItem>) = batch
            .items
            .into_iter()
            .partition(|i| Some(i.user_id.as_str()) == user);
        let done = b.commit(0, batch.generation, taken, deferred, batch.leased_ids);
        b.acknowledge(0, batch.generation);
        done
    }

    #[test]
    fn deferred_keys_are_durable_only_once_written() {
        let b = Buffer::new(1, 10, 100, 10, true);
        let (total, three) = (goal("login-total"), goal("login-3"));
        let g1 = login(&b, "e1", "ann", &total);
        let other_goal = login(&b, "e2", "ann", &three);
        let other_user = login(&b, "e3", "bob", &total);
        assert_eq!((g1, other_goal, other_user), (1, 1, 1));

        // Batch 1 commits everything but ann's two keys.
        let batch = b.take(0).unwrap();
        let taken = batch.items.len();
        let (deferred, _): (Vec<BatchItem>, Vec<BatchItem>) = batch
            .items
            .into_iter()
            .partition(|i| i.user_id == "ann" && i.goal.id == "login-total");
        let done = b.commit(0, batch.generation, taken, deferred, batch.leased_ids);
        b.acknowledge(0, batch.generation);
        assert_eq!(done, vec!["e3".to_string()], "ann's leases wait");
        assert!(!b.is_committed(0, 1, "ann", std::slice::from_ref(&total)));
        assert!(b.is_committed(0, 1, "ann", std::slice::from_ref(&three)));
        assert!(b.is_committed(0, 1, "bob", std::slice::from_ref(&total)));
        assert_eq!(b.pending_keys(), 1, "the deferred key is buffered again");

        // Batch 2 fails, batch 3 defers it again, batch 4 writes it.
        let failed = b.take(0).unwrap();
        assert_eq!(failed.generation, 2);
        b.restore(0, failed);
        assert_eq!(commit_deferring(&b, Some("ann")), Vec::<String>::new());
        assert!(!b.is_committed(0, 1, "ann", std::slice::from_ref(&total)));
        // A newer event on the deferred key joins generation 4 with it.
        assert_eq!(login(&b, "e4", "ann", &total), 4);
        assert_eq!(commit_deferring(&b, None), vec!["e1", "e2", "e4"]);
        assert!(b.is_committed(0, 1, "ann", std::slice::from_ref(&total)));
        assert!(b.is_committed(0, 4, "ann", std::slice::from_ref(&total)));
        assert_eq!(b.pending_keys(), 0);
        assert!(b.partitions[0].state.lock().deferred.is_empty());

        // Deferred later, the key does not hold back events already durable before.
        assert_eq!(login(&b, "e5", "ann", &total), 5);
        commit_deferring(&b, Some("ann"));
        assert!(b.is_committed(0, 4, "ann", std::slice::from_ref(&total)));
        assert!(!b.is_committed(0, 5, "ann", std::slice::from_ref(&total)));
    }

    #[tokio::test]
    async fn a_waiter_on_a_deferred_key_wakes_when_it_is_written() {
        let b = Arc::new(Buffer::new(1, 10, 100, 10, true));
        let total = goal("login-total");
        let g = login(&b, "e1", "ann", &total);
        commit_deferring(&b, Some("ann"));
        let waiter = tokio::spawn({
            let (b, total) = (b.clone(), total.clone());
            async move {
                b.wait_committed(0, g, "ann", &[total], Duration::from_secs(10))
                    .await
            }
        });
        commit_deferring(&b, Some("ann"));
        assert!(!b.is_committed(0, g, "ann", std::slice::from_ref(&total)));
        commit_deferring(&b, None);
        assert!(waiter.await.unwrap());
        let timed_out = b
            .wait_committed(0, 99, "ann", &[total], Duration::from_millis(10))
            .await;
        assert!(!timed_out);
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
