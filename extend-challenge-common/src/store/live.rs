//! Live progress (CONTRACT §10): which players' goals changed, told to every service
//! replica through Postgres `LISTEN/NOTIFY` on [`CHANNEL`].
//!
//! Why Postgres and not Redis pub/sub: every deployment has the database, Redis is
//! optional (`REDIS_HOST` unset runs without it), and a notification sent by the writer of
//! a change reaches every listener the moment the sender commits. Both binaries already
//! hold a pool; the service adds one listening connection per replica.
//!
//! The writer sends after its own transaction committed, in a statement of its own with
//! `synchronous_commit = off`: the batch's commit does not wait on the notification queue's
//! lock, and the notification does not wait for a disk flush. The event handler coalesces:
//! one statement carries every change of the batches committed while the previous one was
//! in flight (`extend_challenge_event_handler::live`). A notification lost to a
//! crash in the instant after a commit costs a stream one push (the next change, or the
//! client's own read, shows the state); progress itself is never at stake.
//!
//! Payload: one line per player, `user_id` then its changed goal ids, tab separated (ids
//! hold no control characters: validation refuses them). Payloads stay under Postgres's
//! 8,000-byte limit; a longer list is split.

use sqlx::PgPool;
use sqlx::postgres::PgListener;

/// The notification channel.
pub const CHANNEL: &str = "challenge_progress";

/// Below Postgres's payload limit (8,000 bytes).
const MAX_PAYLOAD: usize = 7_900;

/// The payloads telling `changes` (player, changed goal ids), each under the limit.
pub fn encode<'a>(changes: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for (user, goals) in changes {
        let mut line = String::from(user);
        for g in goals {
            if line.len() + g.len() + 1 > MAX_PAYLOAD {
                push_line(&mut out, &mut cur, &line);
                line = String::from(user);
            }
            line.push('\t');
            line.push_str(g);
        }
        push_line(&mut out, &mut cur, &line);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn push_line(out: &mut Vec<String>, cur: &mut String, line: &str) {
    if !cur.is_empty() && cur.len() + line.len() + 1 > MAX_PAYLOAD {
        out.push(std::mem::take(cur));
    }
    if !cur.is_empty() {
        cur.push('\n');
    }
    cur.push_str(line);
}

/// The (player, changed goal ids) a payload tells.
pub fn decode(payload: &str) -> impl Iterator<Item = (&str, Vec<&str>)> {
    payload.lines().filter_map(|line| {
        let mut parts = line.split('\t');
        let user = parts.next().filter(|u| !u.is_empty())?;
        Some((user, parts.filter(|g| !g.is_empty()).collect()))
    })
}

/// Sends `payloads` on [`CHANNEL`] in one statement (one round trip, its own implicit
/// transaction) whose commit does not wait for the disk: `set_config(…, true)` lasts until
/// the end of that transaction, and the commit record is written before it ends.
pub async fn notify(pool: &PgPool, payloads: &[String]) -> Result<(), sqlx::Error> {
    if payloads.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, p) \
         FROM unnest($2::text[]) AS p",
    )
    .bind(CHANNEL)
    .bind(payloads)
    .execute(pool)
    .await?;
    Ok(())
}

/// A connection listening on [`CHANNEL`] (with the pool's options, outside the pool).
pub async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_stay_under_the_limit() {
        let goals: Vec<String> = (0..2_000).map(|i| format!("goal-{i}")).collect();
        let many: Vec<&str> = goals.iter().map(String::as_str).collect();
        let changes = vec![
            ("ann", vec!["a", "b"]),
            ("bob", many.clone()),
            ("cy", vec![]),
        ];
        let payloads = encode(changes.clone());
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let mut seen: Vec<(String, Vec<String>)> = Vec::new();
        for p in &payloads {
            for (u, g) in decode(p) {
                match seen.last_mut() {
                    Some((last, gs)) if last == u => gs.extend(g.iter().map(|s| s.to_string())),
                    _ => seen.push((u.into(), g.iter().map(|s| s.to_string()).collect())),
                }
            }
        }
        let want: Vec<(String, Vec<String>)> = changes
            .into_iter()
            .map(|(u, g)| (u.to_string(), g.into_iter().map(String::from).collect()))
            .collect();
        assert_eq!(seen, want);
    }
}
