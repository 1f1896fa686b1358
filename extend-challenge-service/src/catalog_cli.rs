//! `extend-challenge-service catalog …` (CONTRACT §9): the catalog operations of the admin
//! API from the command line, against the database, for CI pipelines. Exit codes: 0 done,
//! 1 refused or failed (an invalid file, a lost race, a database error), 2 bad usage.

use std::io::Write;

use extend_challenge_common::config::ChallengeConfig;
use extend_challenge_common::store::catalog::{self, Applied, ApplyRequest, CatalogError, Impact};
use sqlx::PgPool;

use crate::app::admin::validate;

pub const USAGE: &str = "\
usage: extend-challenge-service catalog <command> [--json]
  validate [FILE]      check a challenges.json as start-up does (no database needed)
  diff [FILE]          what applying FILE would do to live players (the dry-run report)
  apply [FILE] [--dry-run] [--expected-version N] [--note TEXT]
                       make FILE the active catalog version (source \"cli\"); every replica
                       serves it within 2 s. --expected-version: refuse unless N is active
  history              every catalog version, newest first
  rollback N [--expected-version M]
                       a new version with version N's content
FILE defaults to CHALLENGE_CONFIG_PATH. The database is DATABASE_URL / DB_* as for serving;
run `extend-challenge-service migrate up` first on a new database.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Validate {
        file: Option<String>,
    },
    Diff {
        file: Option<String>,
    },
    Apply {
        file: Option<String>,
        dry_run: bool,
        expected: Option<i64>,
        note: Option<String>,
    },
    History,
    Rollback {
        version: i64,
        expected: Option<i64>,
    },
}

/// The command and whether `--json` was given.
pub fn parse(args: &[String]) -> Result<(Command, bool), String> {
    let mut json = false;
    let mut dry_run = false;
    let mut expected = None;
    let mut note = None;
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--dry-run" => dry_run = true,
            "--expected-version" => {
                let v = it.next().ok_or("--expected-version needs a number")?;
                expected = Some(
                    v.parse::<i64>()
                        .map_err(|_| format!("--expected-version {v:?} is not a number"))?,
                );
            }
            "--note" => note = Some(it.next().ok_or("--note needs a text")?.clone()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => positional.push(a.clone()),
        }
    }
    let mut pos = positional.into_iter();
    let command = pos.next().ok_or("a command is needed")?;
    let file = pos.next();
    let command = match command.as_str() {
        "validate" => Command::Validate { file },
        "diff" => Command::Diff { file },
        "apply" => Command::Apply {
            file,
            dry_run,
            expected,
            note,
        },
        "history" => match file {
            None => Command::History,
            Some(extra) => return Err(format!("history takes no argument ({extra:?})")),
        },
        "rollback" => {
            let n = file.ok_or("rollback needs the version to roll back to")?;
            Command::Rollback {
                version: n
                    .parse()
                    .map_err(|_| format!("rollback: {n:?} is not a version number"))?,
                expected,
            }
        }
        other => return Err(format!("unknown command {other:?}")),
    };
    if let Some(extra) = pos.next() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    Ok((command, json))
}

/// Reads and validates `file`; prints the problems and returns `None` if invalid.
fn load(file: &str, out: &mut impl Write) -> std::io::Result<Option<(String, ChallengeConfig)>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            writeln!(out, "{file}: cannot read: {e}")?;
            return Ok(None);
        }
    };
    match validate(&text) {
        Ok(config) => Ok(Some((text, config))),
        Err(problems) => {
            for p in problems {
                writeln!(out, "{}", p.replacen("challenges.json", file, 1))?;
            }
            Ok(None)
        }
    }
}

fn print_impact(impact: &Impact, json: bool, out: &mut impl Write) -> std::io::Result<()> {
    if json {
        return writeln!(out, "{}", serde_json::to_string_pretty(impact)?);
    }
    if impact.changes.is_empty() {
        return writeln!(out, "no goal changes");
    }
    for c in &impact.changes {
        let moves: Vec<String> = c
            .status_changes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        writeln!(
            out,
            "{:<8} {}/{}  players: {}{}{}",
            c.change,
            c.challenge_id,
            c.goal_id,
            c.players,
            if c.fields.is_empty() {
                String::new()
            } else {
                format!("  fields: {}", c.fields.join(", "))
            },
            if moves.is_empty() {
                String::new()
            } else {
                format!("  {}", moves.join(", "))
            },
        )?;
    }
    Ok(())
}

/// An apply's or a rollback's outcome: the new version (`what` after its number) and its
/// impact, or the refusal.
fn applied(
    done: Result<Applied, CatalogError>,
    what: &str,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    match done {
        Ok(applied) => {
            if !json {
                writeln!(
                    out,
                    "catalog version {} is active{what} (was {}):",
                    applied.version,
                    applied.previous.unwrap_or(0)
                )?;
            }
            print_impact(&applied.impact, json, out)?;
            Ok(true)
        }
        Err(e) => refused(e, out),
    }
}

fn refused(e: CatalogError, out: &mut impl Write) -> anyhow::Result<bool> {
    match e {
        CatalogError::Database(e) => Err(e.into()),
        other => {
            writeln!(out, "refused: {other}")?;
            Ok(false)
        }
    }
}

/// Runs `command` (`default_file`: CHALLENGE_CONFIG_PATH). `Ok(false)`: refused (exit 1).
pub async fn run(
    pool: &PgPool,
    command: Command,
    json: bool,
    default_file: &str,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let file_of = |f: Option<String>| f.unwrap_or_else(|| default_file.to_string());
    match command {
        Command::Validate { file } => {
            let file = file_of(file);
            let Some((_, config)) = load(&file, out)? else {
                return Ok(false);
            };
            writeln!(
                out,
                "{file}: valid ({} challenges, {} goals)",
                config.challenges.len(),
                config.goal_count()
            )?;
            Ok(true)
        }
        Command::Diff { file }
        | Command::Apply {
            file,
            dry_run: true,
            ..
        } => {
            let Some((_, config)) = load(&file_of(file), out)? else {
                return Ok(false);
            };
            match catalog::dry_run(pool, &config).await {
                Ok((active, impact)) => {
                    if !json {
                        writeln!(
                            out,
                            "dry run against catalog version {} (nothing applied):",
                            active.unwrap_or(0)
                        )?;
                    }
                    print_impact(&impact, json, out)?;
                    Ok(true)
                }
                Err(e) => refused(e, out),
            }
        }
        Command::Apply {
            file,
            dry_run: false,
            expected,
            note,
        } => {
            let Some((text, config)) = load(&file_of(file), out)? else {
                return Ok(false);
            };
            let req = ApplyRequest {
                content: &text,
                config: &config,
                source: "cli".into(),
                note,
                expected,
                file_sha256: None,
            };
            applied(catalog::apply(pool, req).await, "", json, out)
        }
        Command::History => {
            let versions = catalog::versions(pool).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&versions)?)?;
            } else {
                for v in versions {
                    writeln!(
                        out,
                        "{}{:>5}  {}  {}  {}{}",
                        if v.active { "*" } else { " " },
                        v.version,
                        v.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                        &v.sha256[..12.min(v.sha256.len())],
                        v.source,
                        v.note.map(|n| format!("  ({n})")).unwrap_or_default()
                    )?;
                }
            }
            Ok(true)
        }
        Command::Rollback { version, expected } => {
            let done = catalog::rollback(pool, version, "cli".into(), expected).await;
            let what = format!(", with the content of version {version}");
            applied(done, &what, json, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_every_command_and_refuses_bad_usage() {
        assert_eq!(
            parse(&args("validate")).unwrap(),
            (Command::Validate { file: None }, false)
        );
        assert_eq!(
            parse(&args("apply next.json --dry-run --json")).unwrap(),
            (
                Command::Apply {
                    file: Some("next.json".into()),
                    dry_run: true,
                    expected: None,
                    note: None
                },
                true
            )
        );
        assert_eq!(
            parse(&args("apply --expected-version 3 --note hi"))
                .unwrap()
                .0,
            Command::Apply {
                file: None,
                dry_run: false,
                expected: Some(3),
                note: Some("hi".into())
            }
        );
        assert_eq!(
            parse(&args("rollback 2")).unwrap().0,
            Command::Rollback {
                version: 2,
                expected: None
            }
        );
        for bad in [
            "",
            "rollback",
            "rollback two",
            "history x",
            "frobnicate",
            "apply --expected-version",
            "apply --force",
            "diff a b",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }
}
