//! The operator's tool for the dead-letter table (`event_dead_letters`, see
//! `extend_challenge_common::store::dead_letter`):
//!
//! ```text
//! extend-challenge-event-handler dead-letters list [--all] [--json]
//! extend-challenge-event-handler dead-letters replay (--id N | --all)
//! ```
//!
//! `list` shows the dead letters not replayed yet (`--all`: replayed ones too). `replay`
//! re-applies the stored deltas through the flush's own statements, in one transaction with
//! marking the dead letter replayed; a failure leaves it dead-lettered with the new error.
//! Both use the handler's database settings (`DATABASE_URL` or `DB_*`); `replay` also reads
//! the challenge config (`CONFIG_PATH`) and `AUTO_INITIALIZE_ON_EVENT`, as a flush does.

use std::io::Write;
use std::time::Duration;

use extend_challenge_common::config::ChallengeConfig;
use extend_challenge_common::store::dead_letter::{self, DeadLetter, Replayed, escape_control};
use extend_challenge_common::store::implicit::Defaults;
use sqlx::PgPool;

/// A parsed `dead-letters` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    List { include_replayed: bool, json: bool },
    Replay(Target),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    One(i64),
    All,
}

pub const USAGE: &str = "usage: extend-challenge-event-handler dead-letters list [--all] [--json]
       extend-challenge-event-handler dead-letters replay (--id N | --all)";

/// Parses the arguments after `dead-letters`.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["list", flags @ ..] => {
            let mut cmd = (false, false);
            for f in flags {
                match *f {
                    "--all" => cmd.0 = true,
                    "--json" => cmd.1 = true,
                    other => return Err(format!("unknown option '{other}' for list")),
                }
            }
            Ok(Command::List {
                include_replayed: cmd.0,
                json: cmd.1,
            })
        }
        ["replay", "--all"] => Ok(Command::Replay(Target::All)),
        ["replay", "--id", n] => n
            .parse()
            .map(|id| Command::Replay(Target::One(id)))
            .map_err(|_| format!("--id takes a dead letter id, not '{n}'")),
        _ => Err(format!("unexpected arguments: {}", args.join(" "))),
    }
}

/// What [`replay`] needs besides the pool.
pub struct ReplayContext<'a> {
    pub config: &'a ChallengeConfig,
    pub auto_initialize: bool,
    pub now: chrono::DateTime<chrono::Utc>,
    pub timeout: Duration,
}

/// Writes the dead letters to `out`.
pub async fn list(
    pool: &PgPool,
    include_replayed: bool,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let letters = dead_letter::list(pool, include_replayed).await?;
    if json {
        let all: Vec<serde_json::Value> = letters.iter().map(to_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
        return Ok(());
    }
    if letters.is_empty() {
        writeln!(out, "no dead letters")?;
    }
    for d in &letters {
        let state = match d.replayed_at {
            Some(at) => format!("replayed {}", at.to_rfc3339()),
            None => "pending".to_string(),
        };
        writeln!(
            out,
            "#{} {} {} user={} namespace={} keys={} events=[{}] attempts={}",
            d.id,
            d.created_at.to_rfc3339(),
            state,
            escape_control(&d.payload.user_id),
            escape_control(&d.payload.namespace),
            d.payload.deltas.len(),
            d.event_ids.join(","),
            d.replay_attempts,
        )?;
        writeln!(out, "    error: {}", d.error)?;
    }
    Ok(())
}

fn to_json(d: &DeadLetter) -> serde_json::Value {
    serde_json::json!({
        "id": d.id,
        "createdAt": d.created_at.to_rfc3339(),
        "userId": d.payload.user_id,
        "namespace": d.payload.namespace,
        "eventIds": d.event_ids,
        "deltas": d.payload.deltas,
        "error": d.error,
        "replayAttempts": d.replay_attempts,
        "replayedAt": d.replayed_at.map(|t| t.to_rfc3339()),
    })
}

/// Replays `target`; writes one line per dead letter. Returns whether all succeeded.
pub async fn replay(
    pool: &PgPool,
    target: Target,
    ctx: &ReplayContext<'_>,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let ids: Vec<i64> = match target {
        Target::One(id) => vec![id],
        Target::All => dead_letter::list(pool, false)
            .await?
            .iter()
            .map(|d| d.id)
            .collect(),
    };
    if ids.is_empty() {
        writeln!(out, "no dead letters to replay")?;
    }
    let defaults = Defaults::of(ctx.config);
    let defaults = ctx.auto_initialize.then_some(&defaults);
    let mut all_ok = true;
    for id in ids {
        match dead_letter::replay(pool, id, ctx.config, defaults, ctx.now, ctx.timeout).await {
            Ok(Replayed::Applied { updated }) => {
                writeln!(out, "#{id} replayed: {updated} rows updated")?;
            }
            Ok(Replayed::NotPending) => {
                all_ok = false;
                writeln!(out, "#{id} not found, or replayed already")?;
            }
            Err(e) => {
                all_ok = false;
                writeln!(out, "#{id} still dead-lettered: {e}")?;
            }
        }
    }
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn command_lines_parse() {
        assert_eq!(
            parse(&args("list")),
            Ok(Command::List {
                include_replayed: false,
                json: false
            })
        );
        assert_eq!(
            parse(&args("list --json --all")),
            Ok(Command::List {
                include_replayed: true,
                json: true
            })
        );
        assert_eq!(
            parse(&args("replay --id 42")),
            Ok(Command::Replay(Target::One(42)))
        );
        assert_eq!(
            parse(&args("replay --all")),
            Ok(Command::Replay(Target::All))
        );
        assert!(parse(&args("replay --id x")).is_err());
        assert!(parse(&args("replay")).is_err());
        assert!(parse(&args("list --yaml")).is_err());
        assert!(parse(&[]).is_err());
    }
}
