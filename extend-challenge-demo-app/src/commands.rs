//! The subcommands: each validates like cobra (arity, required flags, its own checks),
//! calls the service, the event handler or the verifier, and prints like the demo.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Local;

use crate::api::ApiClient;
use crate::auth::{self, Auth, Mode};
use crate::cli::{
    Cli, CliError, Command, Globals, TriggerEvent, exact_args, go_bool, go_duration, go_int,
    required,
};
use crate::events::EventSender;
use crate::model::{BatchSelectRequest, Challenge, RandomSelectRequest, to_go_json};
use crate::output::{self, ClaimOutcome, EventResult, Format};
use crate::verifier::Verifier;
use crate::{log, tui};

/// What every command shares: the flags, the effective user and the token source.
/// Built once per process; nothing here touches the network until a command needs it.
pub struct Ctx {
    pub g: Globals,
    pub user_id: String,
    pub auth: Arc<Auth>,
}

impl Ctx {
    /// The demo's container: picks the auth mode and, in password or client mode, logs in
    /// now so that the user becomes the token's `sub`.
    pub async fn new(g: Globals) -> Ctx {
        let mode = match g.auth_mode.as_str() {
            "password" => Mode::Password {
                token_url: auth::token_url(&g.iam_url),
                client_id: g.client_id.clone(),
                client_secret: g.client_secret.clone(),
                email: g.email.clone(),
                password: g.password.clone(),
            },
            "client" => Mode::Client {
                token_url: auth::token_url(&g.iam_url),
                client_id: g.client_id.clone(),
                client_secret: g.client_secret.clone(),
            },
            "mock" => Mode::Mock,
            other => {
                log(&format!("Unknown auth mode '{other}', defaulting to mock"));
                Mode::Mock
            }
        };
        let auth = Auth::new(mode, &g.user_id, &g.namespace);
        let user_id = auth.login(&g.user_id).await.unwrap_or(g.user_id.clone());
        Ctx {
            g,
            user_id,
            auth: Arc::new(auth),
        }
    }

    pub fn api(&self) -> ApiClient {
        ApiClient::new(&self.g.backend_url, &self.user_id, self.auth.clone())
    }

    pub fn events(&self, call_timeout: Option<Duration>) -> Option<EventSender> {
        (!self.g.event_handler_url.is_empty())
            .then(|| EventSender::new(&self.g.event_handler_url, call_timeout))
    }

    pub fn verifier(&self) -> Verifier {
        let g = &self.g;
        Verifier::new(
            &g.auth_mode,
            &g.iam_url,
            &g.platform_url,
            &g.client_id,
            &g.client_secret,
            &g.admin_client_id,
            &g.admin_client_secret,
            &g.namespace,
            &self.user_id,
        )
    }
}

/// The subcommand path of a parsed command line (for its usage text).
pub fn path_of(cmd: &Option<Command>) -> Vec<String> {
    let name = match cmd {
        None => return vec![],
        Some(c) => match c {
            Command::ListChallenges { .. } => "list-challenges",
            Command::GetChallenge { .. } => "get-challenge",
            Command::TriggerEvent { event } => {
                let sub = match event {
                    Some(TriggerEvent::Login { .. }) => "login",
                    Some(TriggerEvent::StatUpdate { .. }) => "stat-update",
                    None => return vec!["trigger-event".into()],
                };
                return vec!["trigger-event".into(), sub.into()];
            }
            Command::ClaimReward { .. } => "claim-reward",
            Command::Watch { .. } => "watch",
            Command::InitializePlayer { .. } => "initialize-player",
            Command::SetGoalActive { .. } => "set-goal-active",
            Command::BatchSelect { .. } => "batch-select",
            Command::RandomSelect { .. } => "random-select",
            Command::GetRotationStatus { .. } => "get-rotation-status",
            Command::VerifyEntitlement { .. } => "verify-entitlement",
            Command::VerifyWallet { .. } => "verify-wallet",
            Command::ListInventory { .. } => "list-inventory",
            Command::ListWallets { .. } => "list-wallets",
            Command::Tui { .. } => "tui",
        },
    };
    vec![name.into()]
}

const SUBCOMMANDS: &[&str] = &[
    "list-challenges",
    "get-challenge",
    "trigger-event",
    "claim-reward",
    "watch",
    "initialize-player",
    "set-goal-active",
    "batch-select",
    "random-select",
    "get-rotation-status",
    "verify-entitlement",
    "verify-wallet",
    "list-inventory",
    "list-wallets",
    "tui",
];

/// Flags that take a value in the next argument when written without `=`.
const VALUE_FLAGS: &[&str] = &[
    "--backend-url",
    "--auth-mode",
    "--event-handler-url",
    "--user-id",
    "--namespace",
    "--email",
    "--password",
    "--client-id",
    "--client-secret",
    "--iam-url",
    "--platform-url",
    "--admin-client-id",
    "--admin-client-secret",
    "--format",
    "--interval",
    "--challenge",
    "--goal-ids",
    "--count",
    "--item-id",
    "--currency",
    "--status",
    "--stat-code",
    "--value",
    "--inc",
];

/// The subcommand path named in a raw command line (used when parsing failed).
pub fn path_in_argv(argv: &[String]) -> Vec<String> {
    let mut path = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        if a == "--" {
            break;
        }
        if a.starts_with('-') {
            if VALUE_FLAGS.contains(&a.as_str()) {
                i += 1;
            }
        } else if (path.is_empty() && SUBCOMMANDS.contains(&a.as_str()))
            || (path.len() == 1
                && path[0] == "trigger-event"
                && (a == "login" || a == "stat-update"))
        {
            path.push(a.clone());
        } else if !path.is_empty() {
            break;
        }
        i += 1;
    }
    path
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let g = cli.global;
    let Some(command) = cli.command else {
        return tui::run(Ctx::new(g).await).await;
    };
    let format = g.format.clone();
    let shared = Format::shared(&format);
    match command {
        Command::Tui { .. } => tui::run(Ctx::new(g).await).await,
        Command::ListChallenges { active_only, .. } => {
            let active_only = go_bool(active_only.as_deref(), "active-only", false)?;
            let ctx = Ctx::new(g).await;
            let list = ctx
                .api()
                .list_challenges(active_only)
                .await
                .map_err(|e| format!("failed to list challenges: {e}"))?;
            outln!("{}", output::challenges(shared, &list));
            Ok(())
        }
        Command::GetChallenge { args } => {
            exact_args(&args, 1)?;
            let ctx = Ctx::new(g).await;
            let c = ctx
                .api()
                .get_challenge(&args[0])
                .await
                .map_err(|e| format!("failed to get challenge: {e}"))?;
            outln!("{}", output::challenge(shared, &c));
            Ok(())
        }
        Command::ClaimReward { args } => {
            exact_args(&args, 2)?;
            let ctx = Ctx::new(g).await;
            let result = ctx.api().claim_reward(&args[0], &args[1]).await;
            let outcome = ClaimOutcome {
                challenge_id: args[0].clone(),
                goal_id: args[1].clone(),
                reward: result.as_ref().ok().map(|r| r.reward.clone()),
                timestamp: Local::now().fixed_offset(),
                error: result.as_ref().err().cloned(),
            };
            out!("{}", output::claim_result(shared, &outcome));
            match result {
                Ok(_) => Ok(()),
                Err(e) => Err(format!("claim failed: {e}").into()),
            }
        }
        Command::TriggerEvent { event } => match event {
            // clap prints the help of a bare `trigger-event` before we get here.
            None => Ok(()),
            Some(TriggerEvent::Login { .. }) => {
                let ctx = Ctx::new(g).await;
                trigger(&ctx, shared, "login", String::new(), 0, 0).await
            }
            Some(TriggerEvent::StatUpdate {
                stat_code,
                value,
                inc,
                ..
            }) => {
                let value_n = go_int(value.as_deref(), "value", 0)?;
                let inc = go_int(inc.as_deref(), "inc", 0)?;
                required(&[
                    ("stat-code", stat_code.is_some()),
                    ("value", value.is_some()),
                ])?;
                let stat_code = stat_code.unwrap_or_default();
                if stat_code.is_empty() {
                    return Err("--stat-code is required".into());
                }
                let ctx = Ctx::new(g).await;
                trigger(&ctx, shared, "stat-update", stat_code, value_n, inc).await
            }
        },
        Command::Watch {
            interval,
            challenge,
            once,
            ..
        } => {
            let interval = go_duration(interval.as_deref(), "interval", Duration::from_secs(5))?;
            let once = go_bool(once.as_deref(), "once", false)?;
            if interval.is_zero() {
                return Err("non-positive interval for --interval".into());
            }
            let ctx = Ctx::new(g).await;
            watch(&ctx, &format, interval, &challenge, once).await
        }
        Command::InitializePlayer { .. } => {
            let ctx = Ctx::new(g).await;
            let r = ctx
                .api()
                .initialize_player()
                .await
                .map_err(|e| format!("failed to initialize player: {e}"))?;
            print_initialize(&format, &r);
            Ok(())
        }
        Command::SetGoalActive { active, args } => {
            let active = go_bool(active.as_deref(), "active", true)?;
            exact_args(&args, 2)?;
            let ctx = Ctx::new(g).await;
            let r = ctx
                .api()
                .set_goal_active(&args[0], &args[1], active)
                .await
                .map_err(|e| format!("failed to set goal active status: {e}"))?;
            match format.as_str() {
                "json" => outln!("{}", to_go_json(&r)),
                "table" => {
                    let line = "─".repeat(41);
                    outln!("Goal Active Status Updated\n{line}");
                    outln!("Challenge ID: {}", r.challenge_id);
                    outln!("Goal ID:      {}", r.goal_id);
                    outln!("Active:       {}", r.is_active);
                    outln!("Assigned At:  {}\n{line}", r.assigned_at);
                    if !r.message.is_empty() {
                        outln!("Message: {}", r.message);
                    }
                }
                _ => {
                    let action = if r.is_active {
                        "activated"
                    } else {
                        "deactivated"
                    };
                    outln!("✅ Goal {action} successfully");
                    outln!("   Challenge: {}\n   Goal: {}", r.challenge_id, r.goal_id);
                    if !r.message.is_empty() {
                        outln!("   {}", r.message);
                    }
                }
            }
            Ok(())
        }
        Command::BatchSelect {
            goal_ids,
            replace_existing,
            args,
        } => {
            let replace_existing = go_bool(replace_existing.as_deref(), "replace-existing", false)?;
            exact_args(&args, 1)?;
            required(&[("goal-ids", goal_ids.is_some())])?;
            let goal_ids: Vec<String> = goal_ids
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .collect();
            let ctx = Ctx::new(g).await;
            let req = BatchSelectRequest {
                goal_ids,
                replace_existing,
            };
            let r = ctx
                .api()
                .batch_select(&args[0], &req)
                .await
                .map_err(|e| format!("failed to batch select goals: {e}"))?;
            print_selection(&format, &r, false);
            Ok(())
        }
        Command::RandomSelect {
            count,
            replace_existing,
            exclude_active,
            args,
        } => {
            let count = go_int(count.as_deref(), "count", 3)?;
            let replace_existing = go_bool(replace_existing.as_deref(), "replace-existing", false)?;
            let exclude_active = go_bool(exclude_active.as_deref(), "exclude-active", false)?;
            exact_args(&args, 1)?;
            if count <= 0 {
                return Err("count must be greater than 0".into());
            }
            let ctx = Ctx::new(g).await;
            let req = RandomSelectRequest {
                count,
                replace_existing,
                exclude_active,
            };
            let r = ctx
                .api()
                .random_select(&args[0], &req)
                .await
                .map_err(|e| format!("failed to random select goals: {e}"))?;
            print_selection(&format, &r, true);
            Ok(())
        }
        Command::GetRotationStatus { args } => {
            exact_args(&args, 1)?;
            let ctx = Ctx::new(g).await;
            let r = ctx
                .api()
                .rotation_status(&args[0])
                .await
                .map_err(|e| format!("failed to get rotation status: {e}"))?;
            outln!("{}", to_go_json(&r));
            Ok(())
        }
        Command::VerifyEntitlement { item_id, .. } => {
            required(&[("item-id", item_id.is_some())])?;
            let item_id = item_id.unwrap_or_default();
            if item_id.is_empty() {
                return Err("--item-id is required".into());
            }
            let ctx = Ctx::new(g).await;
            let e = ctx
                .verifier()
                .entitlement(&item_id)
                .await
                .map_err(|e| format!("failed to get entitlement: {e}"))?;
            outln!("{}", output::entitlement(shared, &e));
            Ok(())
        }
        Command::VerifyWallet { currency, .. } => {
            required(&[("currency", currency.is_some())])?;
            let currency = currency.unwrap_or_default();
            if currency.is_empty() {
                return Err("--currency is required".into());
            }
            let ctx = Ctx::new(g).await;
            let w = ctx
                .verifier()
                .wallet(&currency)
                .await
                .map_err(|e| format!("failed to get wallet: {e}"))?;
            outln!("{}", output::wallet(shared, &w));
            Ok(())
        }
        Command::ListInventory { status, .. } => {
            let ctx = Ctx::new(g).await;
            let list = ctx
                .verifier()
                .entitlements(&status)
                .await
                .map_err(|e| format!("failed to query entitlements: {e}"))?;
            outln!("{}", output::entitlements(shared, &list));
            Ok(())
        }
        Command::ListWallets { .. } => {
            let ctx = Ctx::new(g).await;
            let list = ctx
                .verifier()
                .wallets()
                .await
                .map_err(|e| format!("failed to query wallets: {e}"))?;
            outln!("{}", output::wallets(shared, &list));
            Ok(())
        }
    }
}

/// `trigger-event login|stat-update`: the envelope on stdout (no trailing newline), then
/// `event trigger failed: ...` as the error when the call failed.
async fn trigger(
    ctx: &Ctx,
    format: Format,
    event: &'static str,
    stat_code: String,
    value: i64,
    inc: i64,
) -> Result<(), CliError> {
    let start = Instant::now();
    let result = match ctx.events(None) {
        None => Err("event handler address cannot be empty (--event-handler-url)".to_string()),
        Some(sender) => {
            if event == "login" {
                sender.login(&ctx.user_id, &ctx.g.namespace).await
            } else {
                sender
                    .stat_update(&ctx.user_id, &ctx.g.namespace, &stat_code, value, inc)
                    .await
            }
        }
    };
    let r = EventResult {
        event,
        user_id: ctx.user_id.clone(),
        stat_code,
        value,
        timestamp: Local::now().fixed_offset(),
        duration_ms: start.elapsed().as_millis() as i64,
        error: result.as_ref().err().cloned(),
    };
    out!("{}", output::event_result(format, &r));
    result.map_err(|e| format!("event trigger failed: {e}").into())
}

fn print_initialize(format: &str, r: &crate::model::InitializeResponse) {
    let goals = r.assigned_goals.as_deref().unwrap_or_default();
    match format {
        "json" => outln!("{}", to_go_json(r)),
        "table" => {
            outln!("Player Initialized Successfully");
            outln!("New Assignments: {}", r.new_assignments);
            outln!("Total Active: {}\n", r.total_active);
            if !goals.is_empty() {
                let line = "─".repeat(65);
                outln!("Assigned Goals:\n{line}");
                outln!(
                    "{:<20} {:<20} {:<12} {:<10}\n{line}",
                    "Challenge ID",
                    "Goal ID",
                    "Status",
                    "Progress"
                );
                for g in goals {
                    outln!(
                        "{:<20} {:<20} {:<12} {}/{}",
                        output::truncate(&g.challenge_id, 20),
                        output::truncate(&g.goal_id, 20),
                        if g.is_active { "active" } else { "inactive" },
                        g.progress,
                        g.target
                    );
                }
                outln!("{line}");
            }
        }
        _ => {
            outln!("✅ Player initialized successfully");
            outln!("   New assignments: {}", r.new_assignments);
            outln!("   Total active goals: {}", r.total_active);
            if !goals.is_empty() {
                outln!("\nAssigned goals:");
                for g in goals {
                    outln!(
                        "  - {} / {} ({}) - {}/{}",
                        g.challenge_id,
                        g.goal_id,
                        if g.is_active { "active" } else { "inactive" },
                        g.progress,
                        g.target
                    );
                }
            }
        }
    }
}

fn print_selection(format: &str, r: &crate::model::SelectResponse, random: bool) {
    let selected = r.selected_goals.as_deref().unwrap_or_default();
    let replaced = r.replaced_goals.as_deref().unwrap_or_default();
    match format {
        "json" => outln!("{}", to_go_json(r)),
        "table" => {
            let line = "─".repeat(41);
            let title = if random { "Random" } else { "Batch" };
            outln!("{title} Goal Selection Completed\n{line}");
            outln!("Challenge ID:      {}", r.challenge_id);
            outln!("Selected Goals:    {}", selected.len());
            outln!("Total Active:      {}", r.total_active_goals);
            outln!("Replaced Goals:    {}\n{line}", replaced.len());
            outln!(
                "{}",
                if random {
                    "Randomly Selected Goals:"
                } else {
                    "Selected Goals:"
                }
            );
            for g in selected {
                outln!("  - {} ({})", g.name, g.id);
            }
        }
        _ => {
            let kind = if random { "random goals" } else { "goals" };
            outln!("✅ Successfully selected {} {kind}", selected.len());
            outln!("   Challenge: {}", r.challenge_id);
            outln!("   Total Active: {}", r.total_active_goals);
            if !replaced.is_empty() {
                outln!("   Replaced: {} goals", replaced.len());
            }
        }
    }
}

/// `watch`: the challenge list now and on every tick until Ctrl-C (or once).
async fn watch(
    ctx: &Ctx,
    format: &str,
    interval: Duration,
    challenge: &str,
    once: bool,
) -> Result<(), CliError> {
    let api = ctx.api();
    let shared = Format::shared(format);
    let mut prev: Option<Vec<Challenge>> = None;
    let mut tick = async || -> Result<(), String> {
        let mut list = api.list_challenges(false).await?;
        if !challenge.is_empty() {
            list = Some(
                list.unwrap_or_default()
                    .into_iter()
                    .filter(|c| c.id == challenge)
                    .collect(),
            );
        }
        let printed = output::challenges(shared, &list);
        let current = list.unwrap_or_default();
        if format == "text" || format.is_empty() {
            let stamp = Local::now().format("%Y-%m-%d %H:%M:%S");
            match prev.as_ref().filter(|p| !p.is_empty()) {
                None => outln!("[{stamp}] Initial fetch"),
                Some(p) => match change_count(p, &current) {
                    0 => outln!("[{stamp}] No changes"),
                    n => outln!("[{stamp}] {n} change(s) detected"),
                },
            }
        }
        outln!("{printed}");
        prev = Some(current);
        Ok(())
    };
    tick().await.map_err(CliError)?;
    if once {
        return Ok(());
    }
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // SIGINT or SIGTERM ends the watch normally, as in the demo.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("failed to listen for SIGTERM: {e}"))?;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(e) = tick().await {
                    errln!("Error: {e}");
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    outln!("\nStopping watch...");
    Ok(())
}

/// Goals whose progress or status changed between two fetches.
pub fn change_count(prev: &[Challenge], curr: &[Challenge]) -> usize {
    curr.iter()
        .filter_map(|c| prev.iter().find(|p| p.id == c.id).map(|p| (p, c)))
        .map(|(p, c)| {
            c.goals()
                .iter()
                .filter(|g| {
                    p.goals().iter().any(|pg| {
                        pg.id == g.id && (pg.progress != g.progress || pg.status != g.status)
                    })
                })
                .count()
        })
        .sum()
}
