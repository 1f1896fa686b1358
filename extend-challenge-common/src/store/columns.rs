//! The goal row's columns, once: the one column list ([`GOAL_ROW_COLUMNS`]), the one
//! decoder ([`GoalRowRef::decode`], by position; [`GoalRow`] is its owned form and its
//! `FromRow` goes through it) and the one builder of `unnest` column arrays
//! ([`StateColumns`]).
//!
//! Every statement that reads goal rows builds its column list from [`GOAL_ROW_COLUMNS`]
//! (see [`goal_row_list`]), so the list, the decoder's positions and the type check cannot
//! drift apart. The decoder is by position, not by name, and borrows the strings from the
//! row buffer: the event handler's flush decodes thousands of rows per batch, and the
//! player list 500 per request. The type check `try_get` would make per value is made once
//! per row by [`GoalRow::from_row_at`] and once per result set by the player list
//! ([`check_goal_row_types`]).

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgRow, PgTypeInfo};
use sqlx::{Column as _, Postgres, Row as _, Type, TypeInfo as _};

use crate::progress::{GoalState, PartState, Status};

/// [`GoalRow`]'s columns, for `SELECT`s (qualify them yourself in joins).
pub const GOAL_ROW_COLUMNS: &[&str] = &[
    "goal_id",
    "progress",
    "status",
    "completed_at",
    "claimed_at",
    "is_active",
    "assigned_at",
    "expires_at",
    "baseline_value",
    "last_event_at",
    "times_claimed",
    "req_state",
];

/// [`GOAL_ROW_COLUMNS`] as a select list, each column prefixed with `qualifier` (`""`, or
/// e.g. `"t."` in a join).
pub(crate) fn goal_row_list(qualifier: &str) -> String {
    GOAL_ROW_COLUMNS
        .iter()
        .map(|c| format!("{qualifier}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The goal id and the rule-relevant columns of a row: what the flush and the player API
/// read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalRow {
    pub goal_id: String,
    pub progress: i32,
    pub status: String,
    pub completed_at: Option<DateTime<Utc>>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub is_active: bool,
    pub assigned_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub baseline_value: Option<i32>,
    pub last_event_at: Option<DateTime<Utc>>,
    pub times_claimed: i32,
    /// Requirement-group goals: each requirement's state ([`encode_parts`]).
    pub req_state: Option<String>,
}

impl GoalRow {
    /// Decodes [`GOAL_ROW_COLUMNS`] by position, starting at column `first` (by index, not
    /// by name: the flush decodes thousands of rows per batch). The columns' types are
    /// checked first ([`check_goal_row_types`]), then [`GoalRowRef::decode`] reads them.
    pub fn from_row_at(row: &PgRow, first: usize) -> Result<Self, sqlx::Error> {
        check_goal_row_types(row, first)?;
        Ok(GoalRowRef::decode(row, first)?.to_owned())
    }

    /// The rule-relevant state. An unknown stored status reads as `not_started` (the CHECK
    /// constraint makes that impossible in practice).
    pub fn state(&self) -> GoalState {
        self.as_ref().state()
    }

    /// The row of goal `goal_id` holding `state` (an implicit row, see `store::implicit`).
    pub fn from_state(goal_id: &str, state: &GoalState) -> Self {
        GoalRow {
            goal_id: goal_id.to_string(),
            progress: state.progress,
            status: state.status.as_str().to_string(),
            completed_at: state.completed_at,
            claimed_at: state.claimed_at,
            is_active: state.is_active,
            assigned_at: state.assigned_at,
            expires_at: state.expires_at,
            baseline_value: state.baseline_value,
            last_event_at: state.last_event_at,
            times_claimed: state.times_claimed,
            req_state: state.parts.as_deref().map(encode_parts),
        }
    }

    /// The row, borrowed.
    pub fn as_ref(&self) -> GoalRowRef<'_> {
        GoalRowRef {
            goal_id: &self.goal_id,
            progress: self.progress,
            status: &self.status,
            completed_at: self.completed_at,
            claimed_at: self.claimed_at,
            is_active: self.is_active,
            assigned_at: self.assigned_at,
            expires_at: self.expires_at,
            baseline_value: self.baseline_value,
            last_event_at: self.last_event_at,
            times_claimed: self.times_claimed,
            req_state: self.req_state.as_deref(),
        }
    }
}

/// Every statement reading goal rows selects [`GOAL_ROW_COLUMNS`] first, in order.
impl<'r> sqlx::FromRow<'r, PgRow> for GoalRow {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        GoalRow::from_row_at(row, 0)
    }
}

/// A [`GoalRow`] whose strings are borrowed from the result row it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoalRowRef<'r> {
    pub goal_id: &'r str,
    pub progress: i32,
    pub status: &'r str,
    pub completed_at: Option<DateTime<Utc>>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub is_active: bool,
    pub assigned_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub baseline_value: Option<i32>,
    pub last_event_at: Option<DateTime<Utc>>,
    pub times_claimed: i32,
    pub req_state: Option<&'r str>,
}

impl<'r> GoalRowRef<'r> {
    /// The one decoder of [`GOAL_ROW_COLUMNS`]: by position, starting at column `first`.
    ///
    /// It uses `try_get_unchecked`, which skips sqlx's per-value type-compatibility check (a
    /// `PgTypeInfo` clone, compare and drop per column: ~10 % of the player list's CPU in
    /// `perf`): the caller checks the types with [`check_goal_row_types`], per row or, since
    /// every row of a result set has the same column types, once per result set. A NULL in
    /// a non-`Option` column is still a decode error.
    ///
    /// `#[inline]`: the player list's fold is instantiated in the service's crate, and the
    /// release build has no LTO.
    #[inline]
    pub(crate) fn decode(row: &'r PgRow, first: usize) -> Result<Self, sqlx::Error> {
        Ok(GoalRowRef {
            goal_id: row.try_get_unchecked(first)?,
            progress: row.try_get_unchecked(first + 1)?,
            status: row.try_get_unchecked(first + 2)?,
            completed_at: row.try_get_unchecked(first + 3)?,
            claimed_at: row.try_get_unchecked(first + 4)?,
            is_active: row.try_get_unchecked(first + 5)?,
            assigned_at: row.try_get_unchecked(first + 6)?,
            expires_at: row.try_get_unchecked(first + 7)?,
            baseline_value: row.try_get_unchecked(first + 8)?,
            last_event_at: row.try_get_unchecked(first + 9)?,
            times_claimed: row.try_get_unchecked(first + 10)?,
            req_state: row.try_get_unchecked(first + 11)?,
        })
    }

    /// The rule-relevant state. An unknown stored status reads as `not_started` (the CHECK
    /// constraint makes that impossible in practice).
    #[inline]
    pub fn state(&self) -> GoalState {
        GoalState {
            progress: self.progress,
            status: Status::parse(self.status).unwrap_or(Status::NotStarted),
            completed_at: self.completed_at,
            claimed_at: self.claimed_at,
            is_active: self.is_active,
            assigned_at: self.assigned_at,
            expires_at: self.expires_at,
            baseline_value: self.baseline_value,
            last_event_at: self.last_event_at,
            times_claimed: self.times_claimed,
            parts: self.req_state.and_then(decode_parts),
        }
    }

    /// The row with its strings copied.
    pub fn to_owned(&self) -> GoalRow {
        GoalRow {
            goal_id: self.goal_id.to_owned(),
            progress: self.progress,
            status: self.status.to_owned(),
            completed_at: self.completed_at,
            claimed_at: self.claimed_at,
            is_active: self.is_active,
            assigned_at: self.assigned_at,
            expires_at: self.expires_at,
            baseline_value: self.baseline_value,
            last_event_at: self.last_event_at,
            times_claimed: self.times_claimed,
            req_state: self.req_state.map(str::to_owned),
        }
    }
}

/// Requirement-group state as stored in `req_state`: `value/baseline` per requirement,
/// comma separated, an empty field for "none" (`5/,/,3/2`).
pub fn encode_parts(parts: &[PartState]) -> String {
    let field = |v: Option<i32>| v.map(|v| v.to_string()).unwrap_or_default();
    parts
        .iter()
        .map(|p| format!("{}/{}", field(p.value), field(p.baseline)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads [`encode_parts`]' text; `None` when it is not that (a bad field reads as "none").
pub fn decode_parts(text: &str) -> Option<Vec<PartState>> {
    if text.is_empty() {
        return None;
    }
    let field = |f: &str| f.parse::<i32>().ok();
    Some(
        text.split(',')
            .map(|p| {
                let (v, b) = p.split_once('/').unwrap_or((p, ""));
                PartState {
                    value: field(v),
                    baseline: field(b),
                }
            })
            .collect(),
    )
}

/// The type check [`GoalRowRef::decode`] skips: the columns from `first` on must be
/// [`GOAL_ROW_COLUMNS`]' types. A schema that no longer matches is a decode error, never a
/// bad read (an `int8` progress would be misread without it).
pub fn check_goal_row_types(row: &PgRow, first: usize) -> Result<(), sqlx::Error> {
    type Check = fn(&PgTypeInfo) -> bool;
    const EXPECTED: [Check; GOAL_ROW_COLUMNS.len()] = [
        <String as Type<Postgres>>::compatible,
        <i32 as Type<Postgres>>::compatible,
        <String as Type<Postgres>>::compatible,
        <DateTime<Utc> as Type<Postgres>>::compatible,
        <DateTime<Utc> as Type<Postgres>>::compatible,
        <bool as Type<Postgres>>::compatible,
        <DateTime<Utc> as Type<Postgres>>::compatible,
        <DateTime<Utc> as Type<Postgres>>::compatible,
        <i32 as Type<Postgres>>::compatible,
        <DateTime<Utc> as Type<Postgres>>::compatible,
        <i32 as Type<Postgres>>::compatible,
        <String as Type<Postgres>>::compatible,
    ];
    if row.len() < first + EXPECTED.len() {
        return Err(sqlx::Error::ColumnIndexOutOfBounds {
            index: first + EXPECTED.len() - 1,
            len: row.len(),
        });
    }
    let columns = &row.columns()[first..first + EXPECTED.len()];
    for (i, (column, compatible)) in columns.iter().zip(EXPECTED).enumerate() {
        if !compatible(column.type_info()) {
            return Err(sqlx::Error::ColumnDecode {
                index: (first + i).to_string(),
                source: format!("unexpected column type {}", column.type_info().name()).into(),
            });
        }
    }
    Ok(())
}

/// Column arrays of [`GoalState`]s, for `unnest`: the flush's update and auto-initialize,
/// and the player API's inserts.
#[derive(Default)]
pub(super) struct StateColumns {
    progress: Vec<i32>,
    status: Vec<&'static str>,
    completed_at: Vec<Option<DateTime<Utc>>>,
    claimed_at: Vec<Option<DateTime<Utc>>>,
    is_active: Vec<bool>,
    assigned_at: Vec<Option<DateTime<Utc>>>,
    expires_at: Vec<Option<DateTime<Utc>>>,
    baseline_value: Vec<Option<i32>>,
    last_event_at: Vec<Option<DateTime<Utc>>>,
}

impl StateColumns {
    /// The column names, in [`Self::bind`]'s order, each prefixed with `prefix` (for an
    /// `unnest(…) AS u(…)` alias list).
    pub(super) fn names(prefix: &str) -> String {
        Self::COLUMNS
            .iter()
            .map(|(name, _)| format!("{prefix}{name}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `progress = {source}.progress, status = {source}.status, …`: an `UPDATE`'s `SET` list
    /// from the arrays unnested as `source`.
    pub(super) fn assignments(source: &str) -> String {
        Self::COLUMNS
            .iter()
            .map(|(name, _)| format!("{name} = {source}.{name}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The `unnest` arguments of the arrays bound from parameter `$first` on, with their
    /// types: `$first::int4[], $first+1::text[], …`.
    pub(super) fn unnest_args(first: usize) -> String {
        Self::COLUMNS
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("${}::{ty}[]", first + i))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Name and element type of each array, in [`Self::bind`]'s order.
    const COLUMNS: [(&str, &str); 9] = [
        ("progress", "int4"),
        ("status", "text"),
        ("completed_at", "timestamptz"),
        ("claimed_at", "timestamptz"),
        ("is_active", "bool"),
        ("assigned_at", "timestamptz"),
        ("expires_at", "timestamptz"),
        ("baseline_value", "int4"),
        ("last_event_at", "timestamptz"),
    ];

    pub(super) fn push(&mut self, s: &GoalState) {
        self.progress.push(s.progress);
        self.status.push(s.status.as_str());
        self.completed_at.push(s.completed_at);
        self.claimed_at.push(s.claimed_at);
        self.is_active.push(s.is_active);
        self.assigned_at.push(s.assigned_at);
        self.expires_at.push(s.expires_at);
        self.baseline_value.push(s.baseline_value);
        self.last_event_at.push(s.last_event_at);
    }

    /// Binds the nine arrays, in the column order every statement using them takes
    /// ([`Self::names`], [`Self::unnest_args`], [`Self::assignments`]).
    pub(super) fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.progress)
            .bind(&self.status)
            .bind(&self.completed_at)
            .bind(&self.claimed_at)
            .bind(&self.is_active)
            .bind(&self.assigned_at)
            .bind(&self.expires_at)
            .bind(&self.baseline_value)
            .bind(&self.last_event_at)
    }
}
