//! The in-memory buffer: per (user, goal) key one collapsed [`Delta`], split into
//! partitions by hash(user id), one per flush worker, so one user's keys are always written
//! by one worker (in order, without lock fights between workers).
//!
//! A partition holds its pending work per user, in user order (`BTreeMap`), and each user's
//! keys in a small hash map keyed by goal id. An event costs one ordered lookup of its user
//! and one hash per goal it touches; no key string is built per goal.
//!
//! **Batches take whole users, at most `max_keys` keys, round robin.** A batch starts with
//! the first user after the one the previous batch ended with, so however far behind a
//! partition is, every user gets its turn and a batch's size (and its transaction) stays
//! bounded. The users not taken stay where they are: taking is proportional to the batch,
//! not to the backlog.
//!
//! **Durability is tracked per key.** Every enqueue joins the partition's open generation,
//! and taking a batch closes it. Each buffered key remembers `since`, the oldest generation
//! whose contribution its delta still carries. An event of generation `G` touching goals
//! `K` of user `U` is durable when none of those keys is buffered with `since <= G`, and `U`
//! is not in the batch being written with `G` at or below that batch's generation. A failed
//! batch, a key whose row another transaction held (deferred, see `store::flush`) and a user
//! not yet taken all simply stay (or go back) in the buffer with their `since`, so their
//! events wait for the batch that really writes them, while everything else is acknowledged
//! at once.
//!
//! **Event ids travel with their user.** Each user's pending work lists the ids of the
//! events whose deltas it holds (one `Arc<str>` per event, shared with the de-duplication
//! window). A batch hands them to the flush, which records them in the event ledger in the
//! transaction that writes the user; when the user goes back to the buffer (deferred,
//! failed), its ids go back with it. A batch's outcome is settled per user ([`Fate`]):
//! written, back in the buffer, or dead-lettered.
//!
//! **Each user remembers its oldest event time** (the event's timestamp, else its arrival),
//! kept through deferrals and failed batches: the flush drops the user's deltas when the
//! user's data was erased at or after that time (`store::flush`, no zombie rows).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use extend_challenge_common::config::Goal;
use extend_challenge_common::progress::{self, Delta};
use extend_challenge_common::store::flush::{BatchItem, BatchUser};
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use crate::metrics;

/// Hash maps of the hot path: keys are ids from the config or from (authenticated) events,
/// hashed with a fast, per-process randomly seeded hasher instead of SipHash.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// A goal as a map key: equal and hashed by its id (looked up by `&str`).
#[derive(Clone)]
struct GoalKey(Arc<Goal>);

impl PartialEq for GoalKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for GoalKey {}

impl Hash for GoalKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.as_str().hash(state)
    }
}

impl std::borrow::Borrow<str> for GoalKey {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

/// One buffered key's collapsed delta.
struct Slot {
    delta: Delta,
    /// The oldest generation whose contribution `delta` carries.
    since: u64,
}

/// One buffered event as the event trail tells it (CONTRACT §10): it travels with its
/// user like the event ids, and once the user's batch committed, each of its goals gets an
/// entry with what the batch made of that goal (`engine::after`).
#[derive(Debug, Clone)]
pub struct TrailEvent {
    pub id: Arc<str>,
    pub login: bool,
    /// The stat value (truncated and clamped); 0 for a login.
    pub value: i32,
    pub received_at: DateTime<Utc>,
    /// The goals the event's deltas feed (the keys it contributed to).
    pub goals: Box<[Arc<Goal>]>,
}

/// Trail events a user keeps while buffered: the trail shows the newest 64 per goal, so
/// older ones of a user with this many pending would be trimmed anyway. Beyond it the
/// oldest are dropped (counted).
pub const MAX_TRAIL_PER_USER: usize = 256;

/// What a partition holds for one user.
struct UserPending {
    /// The namespace of the user's first buffered event (used by auto-initialize).
    namespace: Arc<str>,
    goals: FastMap<GoalKey, Slot>,
    /// The non-empty ids of the events whose deltas are in `goals`.
    event_ids: Vec<Arc<str>>,
    /// The events whose deltas are in `goals`, for the trail (empty when it is off).
    trail: Vec<TrailEvent>,
    /// When the oldest event whose delta is in `goals` happened.
    oldest_at: Option<DateTime<Utc>>,
}

impl UserPending {
    fn new(namespace: Arc<str>) -> Self {
        Self {
            namespace,
            goals: FastMap::default(),
            event_ids: Vec::new(),
            trail: Vec::new(),
            oldest_at: None,
        }
    }

    /// Appends trail events, keeping at most [`MAX_TRAIL_PER_USER`] (the newest).
    fn keep_trail(&mut self, trail: impl IntoIterator<Item = TrailEvent>) {
        self.trail.extend(trail);
        if self.trail.len() > MAX_TRAIL_PER_USER {
            let over = self.trail.len() - MAX_TRAIL_PER_USER;
            self.trail.drain(..over);
            metrics::TRAIL_ENTRIES_TOTAL
                .with_label_values(&["dropped"])
                .inc_by(over as u64);
        }
    }

    fn saw_event_at(&mut self, at: Option<DateTime<Utc>>) {
        self.oldest_at = match (self.oldest_at, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// Merges `delta` (of generation `since`) as the *older* side of what is buffered:
    /// what comes back from a batch predates whatever arrived since. Returns whether the
    /// key is new.
    fn merge_older(&mut self, goal: Arc<Goal>, delta: Delta, since: u64) -> bool {
        match self.goals.get_mut(goal.id.as_str()) {
            Some(slot) => {
                let mut older = delta;
                progress::merge(&mut older, slot.delta);
                slot.delta = older;
                slot.since = slot.since.min(since);
                false
            }
            None => {
                self.goals.insert(GoalKey(goal), Slot { delta, since });
                true
            }
        }
    }
}

/// A bounded FIFO of recently enqueued event ids → the generation they joined.
struct DedupWindow {
    ids: FastMap<Arc<str>, u64>,
    order: VecDeque<Arc<str>>,
    capacity: usize,
}

impl DedupWindow {
    fn new(capacity: usize) -> Self {
        Self {
            ids: FastMap::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn get(&self, id: &str) -> Option<u64> {
        self.ids.get(id).copied()
    }

    fn insert(&mut self, id: Arc<str>, generation: u64) {
        if let Some(g) = self.ids.get_mut(&id) {
            *g = generation;
            return;
        }
        self.ids.insert(id.clone(), generation);
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }
}

struct PartitionState {
    /// Buffered work per user, in user order (batches go round robin over it).
    pending: BTreeMap<Arc<str>, UserPending>,
    /// Keys in `pending`.
    keys: usize,
    open_generation: u64,
    window: DedupWindow,
    /// The last user the previous batch took: the next batch starts after it.
    cursor: Option<Arc<str>>,
    /// Users of the batch being written (taken, not yet committed and acknowledged, nor
    /// restored), and that batch's generation.
    in_flight: FastSet<Arc<str>>,
    in_flight_generation: u64,
}

impl PartitionState {
    /// Whether an event of `generation` touching `goals` of `user_id` is durable (all of
    /// the user's buffered keys when `goals` is empty).
    fn durable(&self, generation: u64, user_id: &str, goals: &[Arc<Goal>]) -> bool {
        if generation <= self.in_flight_generation && self.in_flight.contains(user_id) {
            return false;
        }
        let Some(user) = self.pending.get(user_id) else {
            return true;
        };
        if goals.is_empty() {
            return user.goals.values().all(|s| s.since > generation);
        }
        goals.iter().all(|g| {
            user.goals
                .get(g.id.as_str())
                .is_none_or(|s| s.since > generation)
        })
    }

    /// Puts items of a batch back (see [`UserPending::merge_older`]); `since[i]` is item
    /// `i`'s generation. Returns how many keys were new.
    fn merge_back(&mut self, items: impl IntoIterator<Item = (BatchItem, u64)>) -> usize {
        let mut new_keys = 0usize;
        for (item, since) in items {
            let user = self
                .pending
                .entry(item.user_id)
                .or_insert_with(|| UserPending::new(item.namespace));
            new_keys += usize::from(user.merge_older(item.goal, item.delta, since));
        }
        self.keys += new_keys;
        new_keys
    }

    /// Gives event ids and the oldest event time back to their user (who must be
    /// pending).
    fn keep_ids(
        &mut self,
        user_id: &str,
        ids: Vec<Arc<str>>,
        oldest_at: Option<DateTime<Utc>>,
        trail: Vec<TrailEvent>,
    ) {
        if let Some(user) = self.pending.get_mut(user_id) {
            user.event_ids.extend(ids);
            user.saw_event_at(oldest_at);
            // What went back predates what arrived since.
            let newer = std::mem::replace(&mut user.trail, trail);
            user.keep_trail(newer);
        }
    }

    /// The users the next batch takes: whole users after the cursor (wrapping around),
    /// at most `max_keys` keys unless a single user has more.
    fn choose(&self, max_keys: usize) -> Vec<Arc<str>> {
        let (after, upto) = match self.cursor.as_deref() {
            Some(c) => (
                self.pending
                    .range::<str, _>((Bound::Excluded(c), Bound::Unbounded)),
                Some(
                    self.pending
                        .range::<str, _>((Bound::Unbounded, Bound::Included(c))),
                ),
            ),
            None => (self.pending.range::<str, _>(..), None),
        };
        let mut chosen = Vec::new();
        let mut keys = 0usize;
        for (user, p) in after.chain(upto.into_iter().flatten()) {
            if keys > 0 && keys + p.goals.len() > max_keys {
                break;
            }
            keys += p.goals.len();
            chosen.push(user.clone());
            if keys >= max_keys {
                break;
            }
        }
        chosen
    }
}

struct Partition {
    state: Mutex<PartitionState>,
    /// Bumped whenever a batch is acknowledged: durable waiters re-check then.
    acknowledged: watch::Sender<u64>,
    wake: Notify,
    flush_lock: tokio::sync::Mutex<()>,
}

/// Whole users taken for flushing, and what the partition still holds.
pub struct Batch {
    pub generation: u64,
    /// The users' items, user after user, in the order of `users`.
    pub items: Vec<BatchItem>,
    /// Per item: the oldest generation its delta carries.
    since: Vec<u64>,
    /// The users, their number of items and their event ids.
    pub users: Vec<BatchUser>,
    /// Per user (as `users`), its events for the trail.
    pub trails: Vec<Vec<TrailEvent>>,
    /// Keys left in the partition for later batches when this one was taken.
    pub carried: usize,
}

/// What became of one user of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Committed: the user's events are durable.
    Written,
    /// Not written (deferred, or the batch failed): back into the buffer, its events wait.
    Back,
    /// Refused by Postgres and stored as a dead letter: its events are acknowledged.
    DeadLettered,
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

/// One event's contribution, ready to buffer (each goal at most once).
pub struct Contribution<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub namespace: &'a str,
    pub deltas: Vec<(Arc<Goal>, Delta)>,
    /// When the event happened (its timestamp, else its arrival).
    pub at: DateTime<Utc>,
    /// The event for the trail (`None`: not recorded).
    pub trail: Option<TrailEvent>,
}

pub struct Buffer {
    partitions: Vec<Partition>,
    pending_keys: AtomicUsize,
    /// New keys are refused above this many pending keys. Keys of a batch being written do
    /// not count: a batch takes at most its cap, so memory stays bounded by this plus one
    /// batch per partition, and a durable caller's keys are not refused while the batch that
    /// acknowledges it is in flight.
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
                        pending: BTreeMap::new(),
                        keys: 0,
                        open_generation: 1,
                        window: DedupWindow::new(per_window),
                        cursor: None,
                        in_flight: FastSet::default(),
                        in_flight_generation: 0,
                    }),
                    acknowledged: watch::Sender::new(0),
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
        let mut guard = p.state.lock();
        let st = &mut *guard;
        if !c.id.is_empty()
            && let Some(generation) = st.window.get(c.id)
        {
            return Enqueued::Duplicate(generation);
        }
        let new_keys = match st.pending.get(c.user_id) {
            None => c.deltas.len(),
            Some(user) => c
                .deltas
                .iter()
                .filter(|(g, _)| !user.goals.contains_key(g.id.as_str()))
                .count(),
        };
        if new_keys > 0 && self.pending_keys() + new_keys > self.max_pending_keys {
            return Enqueued::Full;
        }
        let generation = st.open_generation;
        let id: Option<Arc<str>> = (!c.id.is_empty()).then(|| Arc::from(c.id));
        let add = |user: &mut UserPending| {
            for (goal, delta) in c.deltas {
                match user.goals.get_mut(goal.id.as_str()) {
                    Some(slot) => progress::merge(&mut slot.delta, delta),
                    None => {
                        user.goals.insert(
                            GoalKey(goal),
                            Slot {
                                delta,
                                since: generation,
                            },
                        );
                    }
                }
            }
            user.event_ids.extend(id.clone());
            user.saw_event_at(Some(c.at));
            if let Some(t) = c.trail {
                user.keep_trail([t]);
            }
        };
        match st.pending.get_mut(c.user_id) {
            Some(user) => add(user),
            None => {
                let mut user = UserPending::new(Arc::from(c.namespace));
                add(&mut user);
                st.pending.insert(Arc::from(c.user_id), user);
            }
        }
        st.keys += new_keys;
        if let Some(id) = id {
            st.window.insert(id, generation);
        }
        let wake = self.eager || st.keys >= self.flush_threshold;
        drop(guard);
        self.pending_keys.fetch_add(new_keys, Ordering::Relaxed);
        metrics::BUFFER_SIZE.add(new_keys as i64);
        if wake {
            p.wake.notify_one();
        }
        Enqueued::Accepted(generation)
    }

    /// Closes the open generation and takes whole users, round robin from where the
    /// previous batch stopped, up to `max_keys` keys (more only if one user alone has
    /// more). `None` when nothing is pending. The rest stays buffered, untouched.
    pub fn take(&self, part: usize, max_keys: usize) -> Option<Batch> {
        let mut guard = self.partitions[part].state.lock();
        let st = &mut *guard;
        if st.pending.is_empty() {
            return None;
        }
        let taken: Vec<(Arc<str>, UserPending)> = if st.keys <= max_keys {
            st.cursor = None;
            std::mem::take(&mut st.pending).into_iter().collect()
        } else {
            let chosen = st.choose(max_keys.max(1));
            st.cursor = chosen.last().cloned();
            chosen
                .into_iter()
                .filter_map(|u| st.pending.remove_entry(&u))
                .collect()
        };
        let generation = st.open_generation;
        st.open_generation += 1;
        let keys: usize = taken.iter().map(|(_, u)| u.goals.len()).sum();
        st.keys -= keys;
        st.in_flight_generation = generation;
        st.in_flight.clear();
        st.in_flight.extend(taken.iter().map(|(u, _)| u.clone()));
        let carried = st.keys;
        drop(guard);
        self.pending_keys.fetch_sub(keys, Ordering::Relaxed);
        metrics::BUFFER_SIZE.sub(keys as i64);

        let mut items = Vec::with_capacity(keys);
        let mut since = Vec::with_capacity(keys);
        let mut users = Vec::with_capacity(taken.len());
        let mut trails = Vec::with_capacity(taken.len());
        for (user_id, user) in taken {
            trails.push(user.trail);
            users.push(BatchUser {
                user_id: user_id.clone(),
                keys: user.goals.len(),
                event_ids: user.event_ids,
                oldest_at: user.oldest_at,
            });
            for (GoalKey(goal), slot) in user.goals {
                items.push(BatchItem {
                    user_id: user_id.clone(),
                    goal,
                    namespace: user.namespace.clone(),
                    delta: slot.delta,
                });
                since.push(slot.since);
            }
        }
        Some(Batch {
            generation,
            items,
            since,
            users,
            trails,
            carried,
        })
    }

    /// Puts a failed batch back: each delta is merged as the older side of whatever
    /// arrived since, so counts add up and the latest value stays the latest; its events
    /// stay unacknowledged.
    pub fn restore(&self, part: usize, batch: Batch) {
        let fates = vec![Fate::Back; batch.users.len()];
        self.settle(part, batch, &fates);
        self.partitions[part].state.lock().in_flight.clear();
    }

    /// Records that `batch` committed, except the users of its items at the (ascending)
    /// indices `deferred` (a row locked elsewhere): those go back into the buffer whole,
    /// with their generations, so their events stay unacknowledged until a later batch
    /// writes them. Returns the ids of the written users' events.
    pub fn commit(&self, part: usize, batch: Batch, deferred: &[usize]) -> Vec<Arc<str>> {
        let fates = fates_deferring(&batch, deferred);
        self.settle(part, batch, &fates)
    }

    /// Settles a batch user by user (`fates[i]` for `batch.users[i]`): written and
    /// dead-lettered users leave the buffer, the others go back into it (see
    /// [`Buffer::restore`]). Returns the event ids now done (written or dead-lettered).
    ///
    /// Nothing is acknowledged yet: the caller marks the returned ids done in Redis first,
    /// then calls [`Buffer::acknowledge`], so a redelivery to another replica never finds an
    /// id still "pending" after its first copy was answered `OK`.
    pub fn settle(&self, part: usize, batch: Batch, fates: &[Fate]) -> Vec<Arc<str>> {
        let mut done = Vec::new();
        let mut back = Vec::new();
        let mut back_ids = Vec::new();
        let mut items = batch.items.into_iter().zip(batch.since);
        let mut trails = batch.trails.into_iter();
        for (user, fate) in batch.users.into_iter().zip(fates) {
            let trail = trails.next().unwrap_or_default();
            let these = items.by_ref().take(user.keys);
            match fate {
                Fate::Written | Fate::DeadLettered => {
                    these.for_each(drop);
                    done.extend(user.event_ids);
                }
                Fate::Back => {
                    back.extend(these);
                    back_ids.push((user.user_id, user.event_ids, user.oldest_at, trail));
                }
            }
        }
        if back.is_empty() {
            return done;
        }
        let mut st = self.partitions[part].state.lock();
        let new_keys = st.merge_back(back);
        for (user, ids, oldest_at, trail) in back_ids {
            st.keep_ids(&user, ids, oldest_at, trail);
        }
        drop(st);
        if new_keys > 0 {
            self.pending_keys.fetch_add(new_keys, Ordering::Relaxed);
            metrics::BUFFER_SIZE.add(new_keys as i64);
        }
        done
    }

    /// Ends the committed batch's flight and wakes the durable waiters (call after
    /// [`Buffer::commit`] and after marking its ids done).
    pub fn acknowledge(&self, part: usize) {
        let p = &self.partitions[part];
        p.state.lock().in_flight.clear();
        p.acknowledged.send_modify(|n| *n += 1);
    }

    /// Whether an event of `generation` touching `goals` of `user_id` is durable.
    pub fn is_committed(
        &self,
        part: usize,
        generation: u64,
        user_id: &str,
        goals: &[Arc<Goal>],
    ) -> bool {
        self.partitions[part]
            .state
            .lock()
            .durable(generation, user_id, goals)
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
        let mut rx = p.acknowledged.subscribe();
        let wait = async {
            loop {
                rx.borrow_and_update();
                if p.state.lock().durable(generation, user_id, goals) {
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

/// Per user of `batch`: `Back` when one of its items is at an index in `deferred`
/// (ascending), else `Written`.
pub fn fates_deferring(batch: &Batch, deferred: &[usize]) -> Vec<Fate> {
    let mut fates = Vec::with_capacity(batch.users.len());
    let mut next = deferred.iter().copied().peekable();
    let mut start = 0usize;
    for user in &batch.users {
        let end = start + user.keys;
        while next.next_if(|&i| i < start).is_some() {}
        let back = next.peek().is_some_and(|&i| i < end);
        fates.push(if back { Fate::Back } else { Fate::Written });
        start = end;
    }
    fates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_window_is_bounded_fifo() {
        let mut w = DedupWindow::new(2);
        w.insert("a".into(), 1);
        w.insert("b".into(), 1);
        w.insert("a".into(), 5);
        assert_eq!(w.get("a"), Some(5));
        w.insert("c".into(), 2);
        assert_eq!(w.get("a"), None);
        assert_eq!(w.get("b"), Some(1));
        assert_eq!(w.get("c"), Some(2));
        assert_eq!(w.ids.len(), 2);
    }

    fn goals(ids: &[&str]) -> Vec<Arc<Goal>> {
        let config = extend_challenge_common::config::load_from_path(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/challenges.json"
        ))
        .unwrap();
        ids.iter()
            .map(|id| config.goal(id).unwrap().clone())
            .collect()
    }

    fn goal(id: &str) -> Arc<Goal> {
        goals(&[id]).remove(0)
    }

    fn try_logins(b: &Buffer, id: &str, user: &str, goals: &[Arc<Goal>]) -> Enqueued {
        b.enqueue(
            0,
            Contribution {
                id,
                user_id: user,
                namespace: "ns",
                deltas: goals
                    .iter()
                    .map(|g| (g.clone(), progress::delta_for_login(g)))
                    .collect(),
                at: Utc::now(),
                trail: None,
            },
        )
    }

    fn try_login(b: &Buffer, id: &str, user: &str, goal: &Arc<Goal>) -> Enqueued {
        try_logins(b, id, user, std::slice::from_ref(goal))
    }

    fn login(b: &Buffer, id: &str, user: &str, goal: &Arc<Goal>) -> u64 {
        match try_login(b, id, user, goal) {
            Enqueued::Accepted(g) => g,
            other => panic!("{other:?}"),
        }
    }

    /// Indices of the batch's items of `user` (and `goal`, if given).
    fn indices(batch: &Batch, user: &str, goal: Option<&str>) -> Vec<usize> {
        (0..batch.items.len())
            .filter(|&i| {
                let it = &batch.items[i];
                &*it.user_id == user && goal.is_none_or(|g| it.goal.id == g)
            })
            .collect()
    }

    fn users_of(batch: &Batch) -> Vec<String> {
        let mut users: Vec<String> = batch.items.iter().map(|i| i.user_id.to_string()).collect();
        users.dedup();
        users
    }

    fn strings(ids: Vec<Arc<str>>) -> Vec<String> {
        let mut ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        ids.sort();
        ids
    }

    /// Takes everything pending and commits it, deferring `user`'s items.
    fn commit_deferring(b: &Buffer, user: Option<&str>) -> Vec<String> {
        let batch = b.take(0, usize::MAX).unwrap();
        let deferred = user.map_or_else(Vec::new, |u| indices(&batch, u, None));
        let done = b.commit(0, batch, &deferred);
        b.acknowledge(0);
        strings(done)
    }

    /// The bound counts pending keys. A batch in flight frees its room (it holds at most its
    /// cap), and what comes back from it (deferred or failed) is buffered again even past
    /// the bound, so nothing is dropped; new keys wait until there is room.
    #[test]
    fn the_bound_counts_pending_keys() {
        let b = Buffer::new(1, 100, 3, 100, false);
        let total = goal("login-total");
        for (i, u) in ["u1", "u2", "u3"].iter().enumerate() {
            login(&b, &format!("e{i}"), u, &total);
        }
        assert!(matches!(try_login(&b, "e3", "u4", &total), Enqueued::Full));
        // A key already pending takes the event: no new key.
        assert!(matches!(
            try_login(&b, "e3", "u1", &total),
            Enqueued::Accepted(1)
        ));
        let batch = b.take(0, 2).unwrap();
        assert_eq!(batch.items.len(), 2);
        assert_eq!(b.pending_keys(), 1);
        login(&b, "e4", "u4", &total);
        login(&b, "e5", "u5", &total);
        assert!(matches!(try_login(&b, "e6", "u6", &total), Enqueued::Full));
        // The batch fails: its keys come back, over the bound, and nothing new gets in.
        b.restore(0, batch);
        assert_eq!(b.pending_keys(), 5);
        assert!(matches!(try_login(&b, "e6", "u6", &total), Enqueued::Full));
        // Written with one deferral: room again once under the bound.
        let all = b.take(0, 100).unwrap();
        let deferred = indices(&all, "u5", None);
        b.commit(0, all, &deferred);
        b.acknowledge(0);
        assert_eq!(b.pending_keys(), 1);
        assert!(matches!(
            try_login(&b, "e6", "u6", &total),
            Enqueued::Accepted(_)
        ));
    }

    /// A batch takes whole users, at most the cap, starting after the user the previous
    /// batch ended with; the users left behind stay unacknowledged until their turn.
    #[test]
    fn batches_take_whole_users_round_robin() {
        let b = Buffer::new(1, 100, 100, 100, true);
        let two = goals(&["login-total", "login-3"]);
        for u in ["u1", "u2", "u3", "u4", "u5"] {
            assert!(matches!(
                try_logins(&b, &format!("{u}-a"), u, &two),
                Enqueued::Accepted(1)
            ));
        }
        let first = b.take(0, 4).unwrap();
        assert_eq!(users_of(&first), ["u1", "u2"]);
        assert_eq!(first.carried, 6);
        assert!(!b.is_committed(0, 1, "u1", &two), "in flight");
        let done = b.commit(0, first, &[]);
        assert_eq!(done.len(), 2);
        b.acknowledge(0);
        assert!(b.is_committed(0, 1, "u1", &two));
        assert!(!b.is_committed(0, 1, "u3", &two), "not taken yet");

        // Newer events of u1 and u0 wait for their turn, after u3…u5.
        for (id, u) in [("u1-b", "u1"), ("u0-b", "u0")] {
            assert!(matches!(try_logins(&b, id, u, &two), Enqueued::Accepted(2)));
        }
        let second = b.take(0, 5).unwrap();
        assert_eq!(users_of(&second), ["u3", "u4"], "5 keys would split u5");
        b.commit(0, second, &[]);
        b.acknowledge(0);
        let third = b.take(0, 4).unwrap();
        assert_eq!(users_of(&third), ["u5", "u0"], "wraps around");
        assert_eq!(third.carried, 2);
        b.commit(0, third, &[]);
        b.acknowledge(0);
        assert!(b.is_committed(0, 2, "u0", &two));
        assert!(!b.is_committed(0, 2, "u1", &two));
        assert!(
            b.is_committed(0, 1, "u1", &two),
            "its first event was written"
        );
        let fourth = b.take(0, 4).unwrap();
        assert_eq!(users_of(&fourth), ["u1"]);
        assert_eq!(fourth.carried, 0);
        b.commit(0, fourth, &[]);
        b.acknowledge(0);
        assert!(b.is_committed(0, 2, "u1", &two));
        assert!(b.is_committed(0, 1, "u5", &two));
        assert_eq!(b.pending_keys(), 0);
        assert!(b.take(0, 4).is_none());

        // One user with more keys than the cap is taken alone.
        try_logins(&b, "u9-a", "u9", &two);
        try_logins(&b, "u8-a", "u8", &two);
        let alone = b.take(0, 1).unwrap();
        assert_eq!(users_of(&alone), ["u8"]);
        assert_eq!(alone.items.len(), 2);
    }

    /// Deferral is per user: one locked key sends all of the user's keys (and event ids)
    /// back, so an event is wholly written by one batch or not at all.
    #[test]
    fn deferred_users_are_durable_only_once_written() {
        let b = Buffer::new(1, 10, 100, 10, true);
        let (total, three) = (goal("login-total"), goal("login-3"));
        let g1 = login(&b, "e1", "ann", &total);
        let other_goal = login(&b, "e2", "ann", &three);
        let other_user = login(&b, "e3", "bob", &total);
        assert_eq!((g1, other_goal, other_user), (1, 1, 1));

        // Batch 1: ann's login-total row is locked; all of ann goes back.
        let batch = b.take(0, 100).unwrap();
        let deferred = indices(&batch, "ann", Some("login-total"));
        let done = b.commit(0, batch, &deferred);
        b.acknowledge(0);
        assert_eq!(strings(done), vec!["e3"], "ann's ids wait");
        assert!(!b.is_committed(0, 1, "ann", std::slice::from_ref(&total)));
        assert!(!b.is_committed(0, 1, "ann", std::slice::from_ref(&three)));
        assert!(b.is_committed(0, 1, "bob", std::slice::from_ref(&total)));
        assert_eq!(b.pending_keys(), 2, "both of ann's keys are buffered again");

        // Batch 2 fails, batch 3 defers ann again, batch 4 writes her.
        let failed = b.take(0, 100).unwrap();
        assert_eq!(failed.generation, 2);
        b.restore(0, failed);
        assert_eq!(commit_deferring(&b, Some("ann")), Vec::<String>::new());
        assert!(!b.is_committed(0, 1, "ann", std::slice::from_ref(&total)));
        // A newer event on a deferred key joins generation 4 with it.
        assert_eq!(login(&b, "e4", "ann", &total), 4);
        assert_eq!(commit_deferring(&b, None), vec!["e1", "e2", "e4"]);
        assert!(b.is_committed(0, 1, "ann", std::slice::from_ref(&total)));
        assert!(b.is_committed(0, 1, "ann", std::slice::from_ref(&three)));
        assert!(b.is_committed(0, 4, "ann", std::slice::from_ref(&total)));
        assert_eq!(b.pending_keys(), 0);

        // Deferred later, the user does not hold back events already durable before.
        assert_eq!(login(&b, "e5", "ann", &total), 5);
        commit_deferring(&b, Some("ann"));
        assert!(b.is_committed(0, 4, "ann", std::slice::from_ref(&total)));
        assert!(!b.is_committed(0, 5, "ann", std::slice::from_ref(&total)));
    }

    /// A batch settled user by user: written and dead-lettered users leave with their
    /// event ids done; the others go back with theirs.
    #[test]
    fn a_batch_settles_user_by_user() {
        let b = Buffer::new(1, 10, 100, 10, true);
        let total = goal("login-total");
        login(&b, "a1", "ann", &total);
        login(&b, "b1", "bob", &total);
        login(&b, "b2", "bob", &total);
        login(&b, "c1", "cid", &total);
        let batch = b.take(0, 100).unwrap();
        let users: Vec<&str> = batch.users.iter().map(|u| &*u.user_id).collect();
        assert_eq!(users, ["ann", "bob", "cid"]);
        let done = b.settle(0, batch, &[Fate::Written, Fate::DeadLettered, Fate::Back]);
        b.acknowledge(0);
        assert_eq!(strings(done), vec!["a1", "b1", "b2"]);
        assert!(b.is_committed(0, 1, "bob", std::slice::from_ref(&total)));
        assert!(!b.is_committed(0, 1, "cid", std::slice::from_ref(&total)));
        let again = b.take(0, 100).unwrap();
        assert_eq!(again.users.len(), 1);
        assert_eq!(strings(again.users[0].event_ids.clone()), vec!["c1"]);
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
        login(&b, "e2", "ann", &total);
        let timed_out = b
            .wait_committed(0, 99, "ann", &[total], Duration::from_millis(10))
            .await;
        assert!(!timed_out);
    }

    /// The flush compares a user's oldest event time with its erasure tombstone: the
    /// oldest time survives merging, deferral and failed batches.
    #[test]
    fn a_user_keeps_its_oldest_event_time_until_written() {
        let b = Buffer::new(1, 10, 100, 10, true);
        let total = goal("login-total");
        let t = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&Utc)
        };
        let event = |id: &'static str, at: &str| Contribution {
            id,
            user_id: "ann",
            namespace: "ns",
            deltas: vec![(total.clone(), progress::delta_for_login(&total))],
            at: t(at),
            trail: None,
        };
        b.enqueue(0, event("e1", "2025-11-05T12:00:05Z"));
        b.enqueue(0, event("e2", "2025-11-05T12:00:01Z"));
        let batch = b.take(0, 100).unwrap();
        assert_eq!(batch.users[0].oldest_at, Some(t("2025-11-05T12:00:01Z")));
        // Failed; a newer event arrives meanwhile; then deferred.
        b.enqueue(0, event("e3", "2025-11-05T12:00:09Z"));
        b.restore(0, batch);
        let batch = b.take(0, 100).unwrap();
        assert_eq!(batch.users[0].oldest_at, Some(t("2025-11-05T12:00:01Z")));
        b.commit(0, batch, &[0]);
        b.acknowledge(0);
        let batch = b.take(0, 100).unwrap();
        assert_eq!(batch.users[0].oldest_at, Some(t("2025-11-05T12:00:01Z")));
        b.commit(0, batch, &[]);
        b.acknowledge(0);
        // Written: the next event starts a new oldest time.
        b.enqueue(0, event("e4", "2025-11-05T12:00:20Z"));
        let batch = b.take(0, 100).unwrap();
        assert_eq!(batch.users[0].oldest_at, Some(t("2025-11-05T12:00:20Z")));
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
