//! The interactive TUI (no subcommand, or `tui`): dashboard with goal detail and claim,
//! event simulator, inventory and wallets, with the demo's key bindings, plus live
//! progress (the dashboard reloads every few seconds), a readable error panel with the
//! server's JSON error, and rotation countdowns.
//!
//! [`app`] holds the state and reacts to keys and results; [`view`] draws it; this module
//! owns the terminal and runs the calls the app asks for.

pub mod app;
pub mod view;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyEventKind};
use tokio::sync::mpsc;

use crate::cli::CliError;
use crate::commands::Ctx;
use app::{Action, App, Msg};

pub async fn run(ctx: Ctx) -> Result<(), CliError> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(
            "the TUI needs an interactive terminal (stdin and stdout); use a subcommand, e.g. list-challenges"
                .into(),
        );
    }
    let ctx = Arc::new(ctx);
    let events = Arc::new(ctx.events(Some(Duration::from_secs(5))));
    // Built before the screen is taken: it may log.
    let verifier = Arc::new(ctx.verifier());
    let mut app = App::new(
        &ctx.user_id,
        &ctx.g.namespace,
        ctx.auth.mode_name(),
        events.as_ref().as_ref().map(|e| e.addr().to_string()),
        Instant::now(),
    );
    let (tx, mut rx) = mpsc::unbounded_channel::<Option<Msg>>();
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            ratatui::restore();
            return Err(format!("the TUI could not take the terminal: {e}").into());
        }
    };

    // Keys come from a blocking reader thread; `None` asks for a redraw (resize).
    let keys = tx.clone();
    let (key_tx, mut key_rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while !keys.is_closed() {
            match event::poll(Duration::from_millis(200)) {
                Ok(true) => match event::read() {
                    Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => {
                        if key_tx.send(k).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Resize(..)) => {
                        let _ = keys.send(None);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
                Ok(false) => {}
                Err(_) => return,
            }
        }
    });
    let ticks = tx.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            if ticks.send(Some(Msg::Tick(Instant::now()))).is_err() {
                return;
            }
        }
    });

    let mut pending = app.start();
    let result = loop {
        for action in pending.drain(..) {
            spawn(
                action,
                ctx.clone(),
                events.clone(),
                verifier.clone(),
                tx.clone(),
            );
        }
        app.token_left = ctx.auth.expires_in().await;
        if let Err(e) = terminal.draw(|f| view::draw(f, &app)) {
            break Err(CliError(format!("drawing the TUI failed: {e}")));
        }
        tokio::select! {
            Some(k) = key_rx.recv() => pending = app.key(k),
            Some(msg) = rx.recv() => {
                if let Some(msg) = msg {
                    pending = app.apply(msg);
                }
            }
            else => break Ok(()),
        }
        if app.quit {
            break Ok(());
        }
    };
    ratatui::restore();
    result
}

fn spawn(
    action: Action,
    ctx: Arc<Ctx>,
    events: Arc<Option<crate::events::EventSender>>,
    verifier: Arc<crate::verifier::Verifier>,
    tx: mpsc::UnboundedSender<Option<Msg>>,
) {
    tokio::spawn(async move {
        let msg = match action {
            Action::LoadChallenges => Msg::Challenges(
                ctx.api()
                    .list_challenges(false)
                    .await
                    .map(Option::unwrap_or_default),
            ),
            Action::Claim { challenge, goal } => {
                let result = ctx.api().claim_reward(&challenge, &goal).await;
                Msg::Claimed { goal, result }
            }
            Action::Login | Action::StatUpdate { .. } => {
                let start = Instant::now();
                let (label, result) = match (&action, events.as_ref()) {
                    (_, None) => ("Event".to_string(), Err("no event handler".to_string())),
                    (Action::StatUpdate { stat_code, value }, Some(sender)) => (
                        format!("Stat Update: {stat_code} = {value}"),
                        sender
                            .stat_update(&ctx.user_id, &ctx.g.namespace, stat_code, *value, 0)
                            .await,
                    ),
                    (_, Some(sender)) => (
                        "Login Event".to_string(),
                        sender.login(&ctx.user_id, &ctx.g.namespace).await,
                    ),
                };
                Msg::Triggered {
                    label,
                    duration: start.elapsed(),
                    result,
                }
            }
            Action::LoadInventory => {
                let result = match verifier.entitlements("").await {
                    Err(e) => Err(e),
                    Ok(ents) => verifier.wallets().await.map(|w| (ents, w)),
                };
                Msg::Inventory(result)
            }
        };
        let _ = tx.send(Some(msg));
    });
}
