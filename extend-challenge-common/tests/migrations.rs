//! The migrations CLI's library: every migration reverts, and up → down → up leaves the
//! same schema (tables, columns, constraints, indexes).

use extend_challenge_common::migrations::{self, Command};
use sqlx::PgPool;

/// Everything about the public schema a migration defines, except sqlx's own table.
async fn schema(pool: &PgPool) -> Vec<String> {
    let mut rows: Vec<String> = sqlx::query_scalar(
        "SELECT format('column %s.%s %s %s %s %s', table_name, column_name, data_type,
                       coalesce(character_maximum_length::text, ''), is_nullable,
                       coalesce(column_default, ''))
           FROM information_schema.columns
          WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'
         UNION ALL
         SELECT format('constraint %s %s', conrelid::regclass, pg_get_constraintdef(oid))
           FROM pg_constraint
          WHERE connamespace = 'public'::regnamespace
            AND conrelid <> '_sqlx_migrations'::regclass
         UNION ALL
         SELECT format('index %s', indexdef)
           FROM pg_indexes
          WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.sort();
    rows
}

async fn tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = false)]
async fn up_down_up_leaves_the_same_schema(pool: PgPool) {
    migrations::check_reversible().unwrap();
    let all = migrations::status(&pool).await.unwrap();
    assert!(all.len() >= 4);
    assert!(all.iter().all(|m| m.applied_on.is_none()), "{all:?}");

    let applied = migrations::up(&pool).await.unwrap();
    assert_eq!(applied.len(), all.len());
    let first = schema(&pool).await;
    assert!(
        first
            .iter()
            .any(|r| r.starts_with("column user_goal_progress.user_id"))
    );
    assert!(
        migrations::up(&pool).await.unwrap().is_empty(),
        "up is idempotent"
    );

    // down 1 reverts exactly the newest.
    let newest = all.last().unwrap().version;
    assert_eq!(migrations::down(&pool, 1).await.unwrap(), vec![newest]);
    let status = migrations::status(&pool).await.unwrap();
    assert!(status.last().unwrap().applied_on.is_none());
    assert!(
        status[..status.len() - 1]
            .iter()
            .all(|m| m.applied_on.is_some())
    );

    // down all → only sqlx's bookkeeping table is left.
    let reverted = migrations::down(&pool, usize::MAX).await.unwrap();
    assert_eq!(reverted.len(), all.len() - 1);
    assert!(
        reverted.windows(2).all(|w| w[0] > w[1]),
        "newest first: {reverted:?}"
    );
    assert_eq!(tables(&pool).await, vec!["_sqlx_migrations".to_string()]);
    assert!(migrations::down(&pool, 1).await.unwrap().is_empty());

    // up again: the very same schema.
    migrations::up(&pool).await.unwrap();
    assert_eq!(schema(&pool).await, first);

    // The CLI's text output.
    let mut out = Vec::new();
    migrations::run(&pool, Command::Status, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    // One line per migration, then the partition layout (migration 0012; none here).
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), all.len() + 1, "{text}");
    assert!(
        lines[..all.len()].iter().all(|l| l.contains("applied")),
        "{text}"
    );
    assert!(
        lines[all.len()].starts_with("partitions by user_id: user_goal_progress (none)"),
        "{text}"
    );
}
