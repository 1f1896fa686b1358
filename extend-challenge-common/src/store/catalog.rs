//! The challenge catalog as data (CONTRACT §9): numbered, immutable versions of
//! `challenges.json` in `catalog_versions`, the active one in `catalog_active` (migration
//! 0014), and the one way a version becomes active, [`apply`] (start-up import, the admin
//! API, the CLI and rollback all go through it).
//!
//! **Impact.** What a new version does to live players is counted from the rows of the goals
//! it adds, removes or changes, read in one scan grouped by the state that decides
//! (`goal_id, status, progress, req_state`), each group judged by
//! [`crate::progress::rejudge`]: earned is earned, a row whose new requirement is met
//! completes, progress is never rewritten. Removed goals' rows stay where they are; the
//! catalog no longer names them, so they are hidden and cannot be claimed.
//!
//! **Apply** runs in one transaction: a transaction-level advisory lock (one apply at a time,
//! across replicas and the CLI), the `expectedVersion` check, `SHARE ROW EXCLUSIVE` on the
//! progress table (the event handler's batches, which take `ROW EXCLUSIVE`, wait the few
//! moments the apply takes, so no row moves between the count and the update), the same
//! grouped read and judgement as the dry-run, one `UPDATE` of exactly the groups judged to
//! complete (its `RETURNING` gives the counts stored with the version), the auto-claim
//! outbox entries of the goals so completed, the new version, the active pointer, and
//! `pg_notify` on [`CHANNEL`] so every replica of both binaries loads it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row as _};

use super::columns::decode_parts;
use crate::config::diff::diff;
use crate::config::{ChallengeConfig, parse_and_validate};
use crate::progress::{GoalState, Status, rejudge};

/// The notification channel: the payload is the newly active version.
pub const CHANNEL: &str = "challenge_catalog";

/// The advisory lock key applies take (`'CATA'` in ASCII).
const APPLY_LOCK: i64 = 0x4341_5441;

/// The sha256 of `content`, lower-case hex.
pub fn sha256_hex(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The content is not a valid `challenges.json`, or the change is refused (a goal moving
    /// to another challenge): one line per problem.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// `expectedVersion` was not the active version.
    #[error("catalog version {active} is active, not the expected {expected}")]
    Conflict { expected: i64, active: i64 },
    /// No such version (rollback).
    #[error("catalog version {0} does not exist")]
    NoSuchVersion(i64),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The active version and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCatalog {
    pub version: i64,
    pub content: String,
    pub sha256: String,
    pub source: String,
    pub activated_at: DateTime<Utc>,
    /// The `challenges.json` content last imported at start-up.
    pub file_sha256: Option<String>,
}

/// One stored version, without its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub version: i64,
    pub sha256: String,
    pub source: String,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub active: bool,
}

/// The active version, if any was ever applied.
pub async fn active(pool: &PgPool) -> Result<Option<ActiveCatalog>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT a.version, v.content, v.sha256, v.source, a.activated_at, a.file_sha256 \
         FROM catalog_active a JOIN catalog_versions v ON v.version = a.version",
    )
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(ActiveCatalog {
            version: r.try_get(0)?,
            content: r.try_get(1)?,
            sha256: r.try_get(2)?,
            source: r.try_get(3)?,
            activated_at: r.try_get(4)?,
            file_sha256: r.try_get(5)?,
        })
    })
    .transpose()
}

/// The active version's number alone (the replicas' poll).
pub async fn active_version(pool: &PgPool) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM catalog_active")
        .fetch_optional(pool)
        .await
}

/// Every version, newest first.
pub async fn versions(pool: &PgPool) -> Result<Vec<VersionInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT v.version, v.sha256, v.source, v.note, v.created_at, \
             v.version = (SELECT version FROM catalog_active) \
         FROM catalog_versions v ORDER BY v.version DESC",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(VersionInfo {
                version: r.try_get(0)?,
                sha256: r.try_get(1)?,
                source: r.try_get(2)?,
                note: r.try_get(3)?,
                created_at: r.try_get(4)?,
                active: r.try_get::<Option<bool>, _>(5)?.unwrap_or(false),
            })
        })
        .collect()
}

/// The content of version `version`.
pub async fn content(pool: &PgPool, version: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT content FROM catalog_versions WHERE version = $1")
        .bind(version)
        .fetch_optional(pool)
        .await
}

/// One goal's impact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GoalImpact {
    pub challenge_id: String,
    pub goal_id: String,
    pub change: &'static str,
    pub fields: Vec<&'static str>,
    /// Players with a row of the goal.
    pub players: i64,
    /// `"in_progress->completed"` → rows; only the transitions that happen.
    pub status_changes: BTreeMap<String, i64>,
}

/// What a version does to live players (CONTRACT §9's report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Impact {
    pub changes: Vec<GoalImpact>,
}

impl Impact {
    /// Rows whose status the version changes, all goals together.
    pub fn status_changes(&self) -> i64 {
        self.changes
            .iter()
            .flat_map(|c| c.status_changes.values())
            .sum()
    }
}

/// The rows of the changed goals, grouped by what decides their judgement: per group the
/// goal, the status, the progress (of rows not yet done), the requirement state and the
/// count. A done row's progress and state cannot change its judgement and are not grouped
/// on.
const GROUPS_SQL: &str = "\
SELECT goal_id, status, \
    CASE WHEN status IN ('completed', 'claimed') THEN 0 ELSE progress END AS p, \
    CASE WHEN status IN ('completed', 'claimed') THEN NULL ELSE req_state END AS r, \
    count(*) \
FROM user_goal_progress WHERE goal_id = ANY($1::text[]) \
GROUP BY 1, 2, 3, 4";

/// One group of [`GROUPS_SQL`].
struct Group {
    goal_id: String,
    status: String,
    progress: i32,
    req_state: Option<String>,
    rows: i64,
}

/// The groups of rows `new` completes, as `(goal, status, progress, req_state)`.
type Completing = Vec<(String, String, i32, Option<String>)>;

/// The changes from `old` to `new` and their impact on the rows, read through `conn`. Also
/// returns the groups the new version completes (what [`apply`] updates).
async fn judge(
    conn: &mut PgConnection,
    old: &ChallengeConfig,
    new: &ChallengeConfig,
) -> Result<(Impact, Completing), CatalogError> {
    let changes = diff(old, new).map_err(CatalogError::Invalid)?;
    let ids: Vec<&str> = changes.iter().map(|c| c.goal_id.as_str()).collect();
    let groups: Vec<Group> = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query(GROUPS_SQL)
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| {
                Ok(Group {
                    goal_id: r.try_get(0)?,
                    status: r.try_get(1)?,
                    progress: r.try_get(2)?,
                    req_state: r.try_get(3)?,
                    rows: r.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?
    };
    let mut completing = Vec::new();
    let mut report = Vec::with_capacity(changes.len());
    for change in changes {
        let goal = change
            .rejudges()
            .then(|| new.goal(&change.goal_id))
            .flatten();
        let mut impact = GoalImpact {
            challenge_id: change.challenge_id,
            goal_id: change.goal_id,
            change: change.change.as_str(),
            fields: change.fields,
            players: 0,
            status_changes: BTreeMap::new(),
        };
        for g in groups.iter().filter(|g| g.goal_id == impact.goal_id) {
            impact.players += g.rows;
            let (Some(goal), Some(before)) = (goal, Status::parse(&g.status)) else {
                continue;
            };
            let state = GoalState {
                progress: g.progress,
                status: before,
                parts: g.req_state.as_deref().and_then(decode_parts),
                completed_at: None,
                claimed_at: None,
                is_active: true,
                assigned_at: None,
                expires_at: None,
                baseline_value: None,
                last_event_at: None,
                times_claimed: 0,
            };
            let after = rejudge(goal, &state);
            if after != before {
                *impact
                    .status_changes
                    .entry(format!("{}->{}", before.as_str(), after.as_str()))
                    .or_default() += g.rows;
                completing.push((
                    g.goal_id.clone(),
                    g.status.clone(),
                    g.progress,
                    g.req_state.clone(),
                ));
            }
        }
        report.push(impact);
    }
    Ok((Impact { changes: report }, completing))
}

/// The active version's number and content, if any, read through `conn`.
async fn active_row(conn: &mut PgConnection) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.version, v.content FROM catalog_active a \
         JOIN catalog_versions v ON v.version = a.version",
    )
    .fetch_optional(conn)
    .await
}

/// The catalog the active version (`active_row`) resolves to: empty when there is none, or
/// when its content no longer loads (a version stored by a build whose rules were looser),
/// so every goal of the new one is judged as added.
fn stored_config(active: Option<&(i64, String)>) -> ChallengeConfig {
    let Some((version, content)) = active else {
        return ChallengeConfig::new(Vec::new());
    };
    parse_and_validate(&format!("catalog version {version}"), content).unwrap_or_else(|e| {
        tracing::warn!(
            version,
            error = %e,
            "the active catalog version does not load any more; judging against an empty catalog"
        );
        ChallengeConfig::new(Vec::new())
    })
}

/// The impact of making `new` active, against the active version (an empty catalog when
/// none is). Reads without locking: a dry-run never holds up the event handler.
pub async fn dry_run(
    pool: &PgPool,
    new: &ChallengeConfig,
) -> Result<(Option<i64>, Impact), CatalogError> {
    let mut conn = pool.acquire().await?;
    let current = active_row(&mut conn).await?;
    let old = stored_config(current.as_ref());
    let (impact, _) = judge(&mut conn, &old, new).await?;
    Ok((current.map(|c| c.0), impact))
}

/// What to apply.
#[derive(Debug, Clone)]
pub struct ApplyRequest<'a> {
    /// The `challenges.json` text, stored as given.
    pub content: &'a str,
    /// `content`, parsed and validated by the caller.
    pub config: &'a ChallengeConfig,
    /// `file:<sha256>`, `api:<user>`, `cli`, …
    pub source: String,
    pub note: Option<String>,
    /// Refuse ([`CatalogError::Conflict`]) unless this is the active version (0: none yet).
    pub expected: Option<i64>,
    /// Set by the start-up import: the file's sha256, recorded as last imported.
    pub file_sha256: Option<String>,
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// The new active version.
    pub version: i64,
    /// The version it replaced.
    pub previous: Option<i64>,
    /// The impact, with the status changes the apply made.
    pub impact: Impact,
}

/// Makes `req.content` a new version and the active one (see the module's notes), in one
/// transaction.
pub async fn apply(pool: &PgPool, req: ApplyRequest<'_>) -> Result<Applied, CatalogError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(APPLY_LOCK)
        .execute(&mut *tx)
        .await?;
    let current = active_row(&mut tx).await?;
    let previous = current.as_ref().map(|c| c.0);
    if let Some(expected) = req.expected {
        let active = previous.unwrap_or(0);
        if expected != active {
            return Err(CatalogError::Conflict { expected, active });
        }
    }
    let old = stored_config(current.as_ref());
    sqlx::query("LOCK TABLE user_goal_progress IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let (mut impact, completing) = judge(&mut tx, &old, req.config).await?;
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&mut *tx)
        .await?;
    if !completing.is_empty() {
        let mut goals = Vec::with_capacity(completing.len());
        let mut statuses = Vec::with_capacity(completing.len());
        let mut progress = Vec::with_capacity(completing.len());
        let mut states = Vec::with_capacity(completing.len());
        for (g, s, p, r) in completing {
            goals.push(g);
            statuses.push(s);
            progress.push(p);
            states.push(r);
        }
        let done = sqlx::query(
            "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) \
                 AS u(goal_id, status, progress, req_state)), \
             changed AS ( \
                 UPDATE user_goal_progress AS t \
                 SET status = 'completed', completed_at = $5, updated_at = $5 \
                 FROM u WHERE t.goal_id = u.goal_id AND t.status = u.status \
                   AND t.progress = u.progress AND t.req_state IS NOT DISTINCT FROM u.req_state \
                 RETURNING t.user_id, t.goal_id, u.status AS before) \
             SELECT user_id, goal_id, before FROM changed",
        )
        .bind(&goals)
        .bind(&statuses)
        .bind(&progress)
        .bind(&states)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        // The applied counts replace the judged ones (equal, the table being locked).
        for c in &mut impact.changes {
            c.status_changes.clear();
        }
        let mut outbox_users = Vec::new();
        let mut outbox_goals = Vec::new();
        for row in &done {
            let user: String = row.try_get(0)?;
            let goal: String = row.try_get(1)?;
            let before: String = row.try_get(2)?;
            if let Some(c) = impact.changes.iter_mut().find(|c| c.goal_id == goal) {
                *c.status_changes
                    .entry(format!("{before}->completed"))
                    .or_default() += 1;
            }
            if let Some(g) = req.config.goal(&goal) {
                for wake in &g.auto_claim_wakes {
                    outbox_users.push(user.clone());
                    outbox_goals.push(wake.clone());
                }
            }
        }
        if !outbox_users.is_empty() {
            sqlx::query(super::outbox::ENQUEUE_SQL)
                .bind(&outbox_users)
                .bind(&outbox_goals)
                .execute(&mut *tx)
                .await?;
        }
    }
    let version: i64 = sqlx::query_scalar(
        "INSERT INTO catalog_versions (version, content, sha256, source, note, created_at, report) \
         SELECT coalesce(max(version), 0) + 1, $1, $2, $3, $4, $5, $6 FROM catalog_versions \
         RETURNING version",
    )
    .bind(req.content)
    .bind(sha256_hex(req.content))
    .bind(&req.source)
    .bind(&req.note)
    .bind(now)
    .bind(sqlx::types::Json(&impact))
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO catalog_active (singleton, version, file_sha256, activated_at) \
         VALUES (true, $1, $2, $3) \
         ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version, \
             file_sha256 = coalesce(EXCLUDED.file_sha256, catalog_active.file_sha256), \
             activated_at = EXCLUDED.activated_at",
    )
    .bind(version)
    .bind(&req.file_sha256)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(version.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Applied {
        version,
        previous,
        impact,
    })
}

/// What the start-up import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// The file was applied as this new version.
    Applied(Applied),
    /// The file is the one last imported: the active version (perhaps one applied through the
    /// API since) stays.
    Unchanged { version: i64 },
}

/// The start-up import of `challenges.json` (`content`, already validated as `config`): a
/// file whose sha256 differs from the one last imported becomes a new version, source
/// `file:<sha256>`. Safe to run from every replica at once: applies are serialized, and a
/// replica that finds the file imported by another keeps it.
pub async fn import_file(
    pool: &PgPool,
    content: &str,
    config: &ChallengeConfig,
) -> Result<Imported, CatalogError> {
    let sha = sha256_hex(content);
    loop {
        let active = sqlx::query_as::<_, (i64, Option<String>)>(
            "SELECT version, file_sha256 FROM catalog_active",
        )
        .fetch_optional(pool)
        .await?;
        if let Some((version, Some(file))) = &active
            && *file == sha
        {
            return Ok(Imported::Unchanged { version: *version });
        }
        let expected = active.map(|a| a.0).unwrap_or(0);
        match apply(
            pool,
            ApplyRequest {
                content,
                config,
                source: format!("file:{sha}"),
                note: None,
                expected: Some(expected),
                file_sha256: Some(sha.clone()),
            },
        )
        .await
        {
            // Another replica applied meanwhile: look again.
            Err(CatalogError::Conflict { .. }) => continue,
            other => return other.map(Imported::Applied),
        }
    }
}

/// Rollback: a new version with the content of version `to`, applied as any other.
pub async fn rollback(
    pool: &PgPool,
    to: i64,
    source: String,
    expected: Option<i64>,
) -> Result<Applied, CatalogError> {
    let content = content(pool, to)
        .await?
        .ok_or(CatalogError::NoSuchVersion(to))?;
    let config = parse_and_validate(&format!("catalog version {to}"), &content)
        .map_err(|e| CatalogError::Invalid(e.to_string().lines().map(str::to_string).collect()))?;
    apply(
        pool,
        ApplyRequest {
            content: &content,
            config: &config,
            source,
            note: Some(format!("rollback to version {to}")),
            expected,
            file_sha256: None,
        },
    )
    .await
}
