//! Live progress (CONTRACT §10): `WatchProgress` and its Server-Sent Events route push a
//! player's changed goals within a second of the event's acknowledgement, whichever
//! replica took the event and whichever holds the stream.
//!
//! - Every writer of progress tells which players' goals changed on Postgres's
//!   `challenge_progress` channel (`store::live`, where the choice of `LISTEN/NOTIFY`
//!   over Redis is explained); each service replica listens on one connection and hands
//!   each notice to the streams of that player ([`LiveHub`]).
//! - A stream holds a small bounded queue of notices. A client that does not read its
//!   stream stops draining the queue; the first notice that finds it full drops the
//!   client (its stream ends; it reconnects and reads the list), so nothing is buffered
//!   without bound and a slow client never holds up the others.
//! - An idle stream costs its connection, one task and an empty queue; a heartbeat every
//!   `PROGRESS_STREAM_HEARTBEAT_SECONDS` keeps proxies from closing it.
//! - A notice names goals; the stream reads the player's rows once per notice (coalesced
//!   with whatever else is queued) and sends those goals in the list's shape.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use extend_challenge_common::pb::service as pb;
use extend_challenge_common::startup::Backoff;
use extend_challenge_common::store::live;
use futures::Stream;
use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ChallengeService, Result};
use crate::error::ServiceError;

/// `challenge_progress_streams`: open live progress streams of this replica.
static STREAMS: LazyLock<IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "challenge_progress_streams",
        "Open live progress streams (WatchProgress and Server-Sent Events)"
    )
    .expect("register challenge_progress_streams")
});

/// `challenge_progress_streams_dropped_total`: streams dropped because their client did not
/// read them.
static STREAMS_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "challenge_progress_streams_dropped_total",
        "Live progress streams dropped because the client read too slowly"
    )
    .expect("register challenge_progress_streams_dropped_total")
});

/// Notices a stream may hold before its client counts as too slow.
const QUEUE: usize = 16;

/// What a stream is told.
#[derive(Debug, Clone)]
enum Notice {
    /// These goals of the player changed.
    Goals(Vec<String>),
    /// Anything may have changed (notifications were missed): send every goal.
    All,
}

/// One stream's queue, by its id.
type Sub = (u64, mpsc::Sender<Notice>);

/// The streams of this replica, by player.
pub struct LiveHub {
    subs: Mutex<HashMap<Arc<str>, Vec<Sub>>>,
    next_id: AtomicU64,
    open: AtomicUsize,
    max: usize,
    heartbeat: Duration,
}

impl LiveHub {
    pub fn new(max: usize, heartbeat: Duration) -> Self {
        // Exported from the start (dashboards and alerts read them before any stream).
        LazyLock::force(&STREAMS);
        LazyLock::force(&STREAMS_DROPPED);
        LiveHub {
            subs: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            max,
            heartbeat,
        }
    }

    /// Open streams.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn subscribe(self: &Arc<Self>, user: &str) -> Result<Subscription> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(ServiceError::TooManyStreams);
        }
        STREAMS.inc();
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let user: Arc<str> = Arc::from(user);
        self.subs
            .lock()
            .entry(user.clone())
            .or_default()
            .push((id, tx));
        Ok(Subscription {
            hub: self.clone(),
            user,
            id,
            rx,
        })
    }

    /// Hands `notice` to `user`'s streams; drops those whose queue is full.
    fn dispatch(&self, user: &str, notice: Notice) {
        let mut subs = self.subs.lock();
        let Some(list) = subs.get_mut(user) else {
            return;
        };
        list.retain(|(_, tx)| match tx.try_send(notice.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                STREAMS_DROPPED.inc();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if list.is_empty() {
            subs.remove(user);
        }
    }

    /// Tells every stream that anything may have changed (after a gap in listening).
    fn dispatch_all(&self) {
        let users: Vec<Arc<str>> = self.subs.lock().keys().cloned().collect();
        for u in users {
            self.dispatch(&u, Notice::All);
        }
    }

    /// Ends every stream (shutdown: the HTTP server's drain waits for open responses).
    fn close_all(&self) {
        self.subs.lock().clear();
    }

    /// Handles one notification payload.
    pub fn deliver(&self, payload: &str) {
        for (user, goals) in live::decode(payload) {
            let goals = goals.into_iter().map(str::to_string).collect();
            self.dispatch(user, Notice::Goals(goals));
        }
    }

    /// Listens on the database until `stop`, reconnecting after a failure (then every
    /// stream is told to re-read: notifications sent meanwhile were missed).
    pub fn spawn_listener(
        self: Arc<Self>,
        pool: sqlx::PgPool,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut backoff = Backoff::new((Duration::from_millis(100), Duration::from_secs(2)));
            let mut first = true;
            loop {
                let listener = tokio::select! {
                    _ = stop.cancelled() => {
                        self.close_all();
                        return;
                    }
                    l = live::listen(&pool) => l,
                };
                let mut listener = match listener {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for live progress; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => {
                                self.close_all();
                                return;
                            }
                            _ = tokio::time::sleep(backoff.next_delay()) => continue,
                        }
                    }
                };
                backoff.reset();
                if !first {
                    self.dispatch_all();
                }
                first = false;
                loop {
                    // `try_recv` answers `None` when the connection is lost (`recv` would
                    // reconnect silently, hiding the gap).
                    let next = tokio::select! {
                        _ = stop.cancelled() => {
                            self.close_all();
                            return;
                        }
                        n = listener.try_recv() => n,
                    };
                    match next {
                        Ok(Some(n)) => self.deliver(n.payload()),
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "live progress listener failed; reconnecting");
                            break;
                        }
                    }
                }
            }
        })
    }
}

/// One stream's registration; leaving it (the stream ended) unregisters it.
struct Subscription {
    hub: Arc<LiveHub>,
    user: Arc<str>,
    id: u64,
    rx: mpsc::Receiver<Notice>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.hub.subs.lock();
        if let Some(list) = subs.get_mut(&self.user) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                subs.remove(&self.user);
            }
        }
        self.hub.open.fetch_sub(1, Ordering::Relaxed);
        STREAMS.dec();
    }
}

/// The stream of a player's updates.
pub type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::ProgressUpdate>> + Send>>;

impl ChallengeService {
    /// This replica's streams.
    pub fn live(&self) -> &Arc<LiveHub> {
        &self.inner.live
    }

    /// `WatchProgress`: a heartbeat at once (the stream is live), then the caller's changed
    /// goals as notices arrive, and a heartbeat whenever nothing was sent for the interval.
    /// Ends when the client is dropped for being slow.
    pub fn watch_progress(&self, user_id: &str) -> Result<ProgressStream> {
        let sub = self.inner.live.subscribe(user_id)?;
        let heartbeat = self.inner.live.heartbeat;
        struct State {
            service: ChallengeService,
            sub: Subscription,
            started: bool,
            heartbeat: Duration,
        }
        let state = State {
            service: self.clone(),
            sub,
            started: false,
            heartbeat,
        };
        let beat = pb::ProgressUpdate {
            goals: vec![],
            heartbeat: true,
        };
        Ok(Box::pin(futures::stream::unfold(state, move |mut st| {
            let beat = beat.clone();
            async move {
                if !st.started {
                    st.started = true;
                    return Some((Ok(beat), st));
                }
                let notice = tokio::select! {
                    n = st.sub.rx.recv() => n?,
                    _ = tokio::time::sleep(st.heartbeat) => return Some((Ok(beat), st)),
                };
                // Coalesce whatever else is queued.
                let mut all = false;
                let mut goals: Vec<String> = Vec::new();
                let mut take = |n: Notice| match n {
                    Notice::All => all = true,
                    Notice::Goals(g) => goals.extend(g),
                };
                take(notice);
                while let Ok(n) = st.sub.rx.try_recv() {
                    take(n);
                }
                let update = st.service.changed_goals(&st.sub.user, all, &goals).await;
                Some((update, st))
            }
        })))
    }

    /// The goals `goals` (every goal when `all`) of `user_id`, as the list shows them.
    async fn changed_goals(
        &self,
        user_id: &str,
        all: bool,
        goals: &[String],
    ) -> Result<pb::ProgressUpdate> {
        let snap = self.snapshot();
        let view = self.user_view(&snap, user_id).await?;
        let catalog = &*snap;
        let mut indexes: Vec<usize> = if all {
            (0..catalog
                .config()
                .challenges
                .iter()
                .map(|c| c.goals.len())
                .sum())
                .collect()
        } else {
            goals.iter().filter_map(|g| catalog.goal_index(g)).collect()
        };
        indexes.sort_unstable();
        indexes.dedup();
        let goals = indexes
            .into_iter()
            .map(|gi| {
                let entry = catalog.goal(gi);
                pb::ChangedGoal {
                    challenge_id: entry.goal.challenge_id.clone(),
                    goal: Some(catalog.goal_pb(gi, &view)),
                }
            })
            .collect();
        Ok(pb::ProgressUpdate {
            goals,
            heartbeat: false,
        })
    }
}
