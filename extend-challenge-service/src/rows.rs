//! The hot read of the player API, folded straight into a [`PlayerView`].
//!
//! `GET /v1/challenges` reads every row of the player (500 in the benchmark fixture). The
//! statement, the by-position decoding and the once-per-result-set type check live in
//! `store::player::fold_goal_rows`; this module supplies the fold: each row, borrowed from
//! the row buffer, goes into the view as it streams in, without a `GoalRow` allocated for
//! it.

use chrono::{DateTime, Utc};
use extend_challenge_common::store::implicit::Marker;
use extend_challenge_common::store::{GoalRowRef, player};
use sqlx::PgPool;

use crate::catalog::{Catalog, PlayerView};

/// Every row of `user_id`, viewed at `now`, with the implicit rows its marker stands for
/// (`store::implicit`). Rows of goals no longer in the config are skipped, as
/// [`PlayerView::new`] does.
///
/// The view (a slot per configured goal) is allocated only once a connection is held, so
/// requests queued for the pool under overload hold no view: at most pool-size views are
/// alive at once.
pub async fn user_view<'a>(
    pool: &PgPool,
    catalog: &'a Catalog,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<PlayerView<'a>, sqlx::Error> {
    player::fold_goal_rows(
        pool,
        user_id,
        || PlayerView::empty(catalog, now),
        |view, row| fold_row(catalog, view, row),
    )
    .await
}

/// One row of the player into `view` (what [`user_view`] does with each; the list's tagged
/// read, `app::etag`, too).
pub fn fold_row(catalog: &Catalog, view: &mut PlayerView<'_>, row: GoalRowRef<'_>) {
    if let Some(gi) = catalog.goal_index(row.goal_id) {
        view.insert(gi, &row.state());
    } else if let Some(marker) = Marker::from_parts(row.goal_id, row.assigned_at, row.req_state) {
        // The implicit rows of the player's untouched default goals.
        view.add_marker(&marker);
    }
}
