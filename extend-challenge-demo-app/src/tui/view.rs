//! Drawing the [`App`]: header, the current screen, the error panel, footer.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::app::{App, ErrorInfo, EventKind, Focus, Screen};
use crate::model::Goal;
use crate::verifier::short_time;

const BAR_CELLS: usize = 20;

pub fn draw(f: &mut Frame, app: &App) {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(header_line(app)), header);
    match app.screen {
        Screen::Dashboard => dashboard(f, app, body),
        Screen::Simulator => simulator(f, app, body),
        Screen::Inventory => inventory(f, app, body),
    }
    if let Some(e) = &app.error {
        error_panel(f, e, body);
    }
    f.render_widget(
        Paragraph::new(footer_line(app)).style(Style::default().fg(Color::DarkGray)),
        footer,
    );
}

fn header_line(app: &App) -> Line<'static> {
    let token = match app.token_left {
        Some(left) if left.as_secs() >= 3600 => format!("✓ User ({}h)", left.as_secs() / 3600),
        Some(left) => format!("✓ User ({}m)", left.as_secs() / 60),
        None => "✗ no token".to_string(),
    };
    let quit = if app.input_mode() {
        "[Ctrl+C] Quit"
    } else {
        "[q] Quit"
    };
    Line::from(vec![
        Span::styled(
            format!("Challenge Demo App - {}", app.screen.title()),
            Style::default()
                .add_modifier(Modifier::BOLD)
                .fg(Color::Cyan),
        ),
        Span::raw(format!(
            " | Auth: {token} ({}) | User: {} | {quit}",
            app.auth_mode, app.user_id
        )),
    ])
}

fn footer_line(app: &App) -> String {
    if app.input_mode() {
        return "⚠ Input Mode: Navigation disabled | [Esc] Unfocus | [Tab] Next field | [Enter] Send | [Ctrl+C] Quit".into();
    }
    let nav = "[1] Dashboard  [2/e] Event Simulator  [3/i] Inventory";
    let extra = match app.screen {
        Screen::Dashboard if app.dashboard.detail.is_some() => {
            "[↑↓] Goal  [c] Claim  [r] Refresh  [Esc] Back"
        }
        Screen::Dashboard => "[↑↓] Select  [Enter] Goals  [r] Refresh",
        Screen::Simulator => "[↑↓] Event  [Tab] Edit fields  [Enter] Send  [Esc] Dashboard",
        Screen::Inventory => "[Tab] Panel  [↑↓] Scroll  [r] Reload  [Esc] Dashboard",
    };
    let dismiss = if app.error.is_some() {
        "  [x] Dismiss error"
    } else {
        ""
    };
    format!("{nav}  |  {extra}{dismiss}")
}

/// `1h 01m 05s` / `4m 05s` / `12s`.
pub fn countdown(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// The demo's 20-cell bar: `████████░░░░░░░░░░░░`.
pub fn progress_bar(progress: i64, target: i64) -> String {
    let filled = if target <= 0 {
        if progress > 0 { BAR_CELLS } else { 0 }
    } else {
        ((progress.max(0) as f64 / target as f64) * BAR_CELLS as f64).min(BAR_CELLS as f64) as usize
    };
    format!("{}{}", "█".repeat(filled), "░".repeat(BAR_CELLS - filled))
}

fn status_icon(status: &str) -> (&'static str, Color) {
    match status {
        "in_progress" => ("●", Color::Yellow),
        "completed" => ("✓", Color::Green),
        "claimed" => ("⚡", Color::Magenta),
        _ => ("○", Color::Gray),
    }
}

fn operator(op: &str) -> &str {
    match op {
        "gte" => ">=",
        "lte" => "<=",
        "eq" => "==",
        other => other,
    }
}

fn dashboard(f: &mut Frame, app: &App, area: Rect) {
    let d = &app.dashboard;
    let mut lines: Vec<Line> = Vec::new();
    let loading = if d.loading { "  (loading…)" } else { "" };
    if let Some(c) = app.detail_challenge() {
        let mut title = vec![Span::styled(
            c.name.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        )];
        if let Some(left) = app.challenge_expires_in(c) {
            title.push(Span::styled(
                format!("   ⟳ rotates in {}", countdown(left)),
                Style::default().fg(Color::Cyan),
            ));
        }
        title.push(Span::raw(loading));
        lines.push(Line::from(title));
        lines.push(Line::styled(
            c.description.clone(),
            Style::default().fg(Color::DarkGray),
        ));
        lines.push(Line::raw(""));
        for (i, g) in c.goals().iter().enumerate() {
            goal_lines(app, g, i == d.goal, &mut lines);
        }
    } else {
        lines.push(Line::from(vec![
            Span::styled("Challenges", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(loading),
        ]));
        lines.push(Line::raw(""));
        if d.challenges.is_empty() && !d.loading {
            lines.push(Line::raw("No challenges. Press 'r' to refresh."));
        }
        for (i, c) in d.challenges.iter().enumerate() {
            let done = c
                .goals()
                .iter()
                .filter(|g| g.status == "completed" || g.status == "claimed")
                .count();
            let cursor = if i == d.selected { ">" } else { " " };
            let mut spans = vec![Span::styled(
                format!("{cursor} {} [{done}/{}]", c.name, c.goals().len()),
                if i == d.selected {
                    Style::default()
                        .fg(Color::Cyan)
                        .add_modifier(Modifier::BOLD)
                } else {
                    Style::default()
                },
            )];
            if let Some(left) = app.challenge_expires_in(c) {
                spans.push(Span::styled(
                    format!("  ⟳ {}", countdown(left)),
                    Style::default().fg(Color::DarkGray),
                ));
            }
            lines.push(Line::from(spans));
        }
    }
    if let Some(n) = &d.notice {
        lines.push(Line::raw(""));
        lines.push(Line::styled(n.clone(), Style::default().fg(Color::Green)));
    }
    // Keep the selected goal in view.
    let scroll = if d.detail.is_some() {
        let per_goal = 6u16;
        let goal = u16::try_from(d.goal).unwrap_or(u16::MAX);
        let wanted = per_goal
            .saturating_mul(goal.saturating_add(1))
            .saturating_add(3);
        wanted.saturating_sub(area.height.saturating_sub(2))
    } else {
        0
    };
    f.render_widget(
        Paragraph::new(lines)
            .block(Block::default().borders(Borders::ALL).title(" Dashboard "))
            .scroll((scroll, 0)),
        area,
    );
}

fn goal_lines(app: &App, g: &Goal, selected: bool, lines: &mut Vec<Line<'static>>) {
    let (icon, color) = status_icon(&g.status);
    let cursor = if selected { ">" } else { " " };
    let mut head = vec![
        Span::raw(format!("{cursor} ")),
        Span::styled(icon, Style::default().fg(color)),
        Span::styled(
            format!(" {}", g.name),
            if selected {
                Style::default()
                    .fg(Color::Cyan)
                    .add_modifier(Modifier::BOLD)
            } else {
                Style::default().add_modifier(Modifier::BOLD)
            },
        ),
    ];
    if !g.is_active {
        head.push(Span::styled(
            " (inactive)",
            Style::default().fg(Color::DarkGray),
        ));
    }
    if g.locked {
        head.push(Span::styled(
            " 🔒 locked",
            Style::default().fg(Color::DarkGray),
        ));
    }
    lines.push(Line::from(head));
    lines.push(Line::styled(
        format!("    {}", g.description),
        Style::default().fg(Color::DarkGray),
    ));
    if !g.requirement.stat_code.is_empty() {
        lines.push(Line::raw(format!(
            "    Requirement: {} {} {}",
            g.requirement.stat_code,
            operator(&g.requirement.operator),
            g.requirement.target_value
        )));
    }
    let claim = if g.status == "completed" {
        "  [c] Claim"
    } else {
        ""
    };
    lines.push(Line::from(vec![
        Span::raw("    "),
        Span::styled(
            progress_bar(g.progress, g.requirement.target_value),
            Style::default().fg(color),
        ),
        Span::raw(format!(" {}/{}", g.progress, g.requirement.target_value)),
        Span::styled(claim, Style::default().fg(Color::Green)),
    ]));
    let mut reward = format!("    Reward: {} {}", g.reward.kind, g.reward.reward_id);
    if g.reward.quantity > 1 {
        reward.push_str(&format!(" x{}", g.reward.quantity));
    }
    if let Some(left) = app.expires_in(g) {
        reward.push_str(&format!("   ⟳ resets in {}", countdown(left)));
    }
    lines.push(Line::raw(reward));
    lines.push(Line::raw(""));
}

fn simulator(f: &mut Frame, app: &App, area: Rect) {
    let s = &app.simulator;
    let mut lines: Vec<Line> = vec![Line::raw(format!(
        "User: {}   Namespace: {}   Handler: {}",
        app.user_id,
        app.namespace,
        app.handler.as_deref().unwrap_or("-")
    ))];
    lines.push(Line::raw(""));
    if app.handler.is_none() {
        lines.push(Line::styled(
            "⚠ Event Handler Not Connected (start with --event-handler-url=<host:port>)",
            Style::default().fg(Color::Yellow),
        ));
    }
    let pick = |kind: EventKind, label: &str| {
        let on = s.kind == kind;
        Line::styled(
            format!("{} {label}", if on { ">" } else { " " }),
            if on && s.focus == Focus::Type {
                Style::default()
                    .fg(Color::Cyan)
                    .add_modifier(Modifier::BOLD)
            } else if on {
                Style::default().add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            },
        )
    };
    lines.push(pick(EventKind::Login, "Login"));
    lines.push(pick(EventKind::StatUpdate, "Stat Update"));
    if s.kind == EventKind::StatUpdate {
        let field = |label: &str, value: &str, placeholder: &str, focused: bool| {
            let shown = if value.is_empty() && !focused {
                Span::styled(
                    placeholder.to_string(),
                    Style::default().fg(Color::DarkGray),
                )
            } else {
                Span::raw(format!("{value}{}", if focused { "▏" } else { "" }))
            };
            Line::from(vec![
                Span::styled(
                    format!("    {label}: "),
                    if focused {
                        Style::default().fg(Color::Cyan)
                    } else {
                        Style::default()
                    },
                ),
                shown,
            ])
        };
        lines.push(field(
            "Stat code",
            &s.stat_code,
            "kills",
            s.focus == Focus::StatCode,
        ));
        lines.push(field("Value", &s.value, "10", s.focus == Focus::Value));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        if s.sending {
            "History (sending…)"
        } else {
            "History"
        },
        Style::default().add_modifier(Modifier::BOLD),
    ));
    if s.history.is_empty() {
        lines.push(Line::styled(
            "  no events sent yet",
            Style::default().fg(Color::DarkGray),
        ));
    }
    for h in &s.history {
        let (mark, color) = if h.ok {
            ("✓", Color::Green)
        } else {
            ("✗", Color::Red)
        };
        lines.push(Line::from(vec![
            Span::styled(format!("  {mark} "), Style::default().fg(color)),
            Span::raw(format!("{} ({}ms)", h.label, h.duration_ms)),
        ]));
        if let Some(e) = &h.error {
            lines.push(Line::styled(
                format!("      {e}"),
                Style::default().fg(Color::Red),
            ));
        }
    }
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Event Simulator "),
        ),
        area,
    );
}

fn inventory(f: &mut Frame, app: &App, area: Rect) {
    let inv = &app.inventory;
    let [panels, summary] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(area);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(panels);
    let border = |on: bool| {
        if on {
            Style::default().fg(Color::Cyan)
        } else {
            Style::default()
        }
    };
    let mut ents: Vec<Line> = Vec::new();
    for e in inv.entitlements.iter().skip(inv.scroll[0]) {
        ents.push(Line::styled(
            format!("[{}] {}", e.status, e.item_id),
            Style::default().add_modifier(Modifier::BOLD),
        ));
        ents.push(Line::raw(format!(
            "  qty {}  granted {}",
            e.quantity,
            short_time(e.granted_at.as_ref())
        )));
    }
    let mut wallets: Vec<Line> = Vec::new();
    for w in inv.wallets.iter().skip(inv.scroll[1]) {
        let ok = if w.status == "ACTIVE" { "✓" } else { "✗" };
        wallets.push(Line::styled(
            format!("{}: {} {ok}", w.currency_code, w.balance),
            Style::default().add_modifier(Modifier::BOLD),
        ));
        wallets.push(Line::raw(format!("  {}", w.status)));
    }
    f.render_widget(
        Paragraph::new(ents).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Item Entitlements ")
                .border_style(border(inv.panel == 0)),
        ),
        left,
    );
    f.render_widget(
        Paragraph::new(wallets).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Wallet Balances ")
                .border_style(border(inv.panel == 1)),
        ),
        right,
    );
    let text = if inv.loading {
        "Loading…".to_string()
    } else {
        format!(
            "Showing {} entitlement(s), {} wallet(s)",
            inv.entitlements.len(),
            inv.wallets.len()
        )
    };
    f.render_widget(Paragraph::new(text), summary);
}

/// The error, readable: what failed, the HTTP status and gRPC code, the server's message
/// and its JSON body.
fn error_panel(f: &mut Frame, e: &ErrorInfo, body: Rect) {
    let height = (8 + e.body.as_ref().map_or(0, |b| b.lines().count()) as u16).min(body.height);
    let width = body.width.saturating_sub(4).max(10).min(body.width);
    let area = Rect {
        x: body.x + (body.width - width) / 2,
        y: body.y + body.height.saturating_sub(height),
        width,
        height,
    };
    let mut lines = vec![Line::styled(
        e.context.clone(),
        Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
    )];
    let mut status = Vec::new();
    if let Some(s) = e.http_status {
        status.push(format!("HTTP {s}"));
    }
    if let Some(c) = e.grpc_code {
        status.push(format!("gRPC code {c}"));
    }
    if !status.is_empty() {
        lines.push(Line::raw(status.join(" · ")));
    }
    lines.push(Line::styled(
        e.message.clone(),
        Style::default().add_modifier(Modifier::BOLD),
    ));
    if let Some(b) = &e.body {
        lines.push(Line::raw(""));
        lines.extend(
            b.lines()
                .map(|l| Line::styled(l.to_string(), Style::default().fg(Color::Gray))),
        );
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "Press 'r' to retry, 'x' to dismiss",
        Style::default().fg(Color::DarkGray),
    ));
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Error ")
                .border_style(Style::default().fg(Color::Red)),
        ),
        area,
    );
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::super::app::{App, Msg};
    use super::*;

    fn render(app: &App, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, app)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn key(app: &mut App, c: KeyCode) {
        app.key(KeyEvent::new(c, KeyModifiers::NONE));
    }

    fn loaded() -> (App, Instant) {
        let now = Instant::now();
        let mut app = App::new("u1", "ns", "mock", Some("localhost:6566".into()), now);
        app.token_left = Some(Duration::from_secs(3599));
        app.start();
        app.apply(Msg::Challenges(Ok(super::super::app::tests::sample())));
        (app, now)
    }

    #[test]
    fn tiny_terminals_do_not_panic() {
        let (mut app, _) = loaded();
        app.apply(Msg::Challenges(Err("HTTP 500: {}".into())));
        for (w, h) in [(1, 1), (5, 3), (9, 4), (20, 6)] {
            for screen in ['1', '2', '3'] {
                key(&mut app, KeyCode::Char(screen));
                render(&app, w, h);
            }
        }
    }

    #[test]
    fn bars_and_countdowns() {
        assert_eq!(
            progress_bar(4, 10),
            format!("{}{}", "█".repeat(8), "░".repeat(12))
        );
        assert_eq!(progress_bar(15, 10), "█".repeat(20));
        assert_eq!(progress_bar(0, 0), "░".repeat(20));
        assert_eq!(countdown(3661), "1h 01m 01s");
        assert_eq!(countdown(65), "1m 05s");
        assert_eq!(countdown(9), "9s");
    }

    #[test]
    fn dashboard_lists_then_details_goals_with_bars() {
        let (mut app, now) = loaded();
        let screen = render(&app, 100, 30);
        assert!(
            screen.contains(
                "Challenge Demo App - Dashboard | Auth: ✓ User (59m) (mock) | User: u1 | [q] Quit"
            ),
            "{screen}"
        );
        assert!(screen.contains("> Winter [1/2]"), "{screen}");
        assert!(screen.contains("  Daily [0/1]  ⟳ 1h 01m 01s"), "{screen}");
        assert!(
            screen.contains("[1] Dashboard  [2/e] Event Simulator  [3/i] Inventory"),
            "{screen}"
        );

        key(&mut app, KeyCode::Down);
        key(&mut app, KeyCode::Enter);
        app.apply(Msg::Tick(now + Duration::from_secs(2)));
        let screen = render(&app, 100, 30);
        assert!(
            screen.contains("⟳ rotates in 1h 00m 59s"),
            "the countdown runs: {screen}"
        );
        assert!(screen.contains("> ○ Goal d"), "{screen}");
        assert!(screen.contains("Requirement: kills >= 10"), "{screen}");
        assert!(
            screen.contains(&format!("{} 0/10", "░".repeat(20))),
            "{screen}"
        );
        assert!(screen.contains("Reward: ITEM sword x2"), "{screen}");

        key(&mut app, KeyCode::Esc);
        key(&mut app, KeyCode::Up);
        key(&mut app, KeyCode::Enter);
        let screen = render(&app, 100, 30);
        assert!(screen.contains("> ✓ Goal a"), "{screen}");
        assert!(
            screen.contains(&format!("{} 10/10  [c] Claim", "█".repeat(20))),
            "{screen}"
        );
        assert!(
            screen.contains(&format!("{}{} 4/10", "█".repeat(8), "░".repeat(12))),
            "{screen}"
        );
    }

    #[test]
    fn the_error_panel_shows_the_servers_json() {
        let (mut app, _) = loaded();
        app.apply(Msg::Claimed {
            goal: "a".into(),
            result: Err(r#"HTTP 400: {"code":9,"message":"Goal not completed. Please wait 1 second and try again. (goal_id: a, status: in_progress)","details":[]}"#.into()),
        });
        let screen = render(&app, 120, 30);
        assert!(screen.contains("Failed to claim 'a'"), "{screen}");
        assert!(screen.contains("HTTP 400 · gRPC code 9"), "{screen}");
        assert!(
            screen.contains("Goal not completed. Please wait 1 second"),
            "{screen}"
        );
        assert!(screen.contains("\"code\": 9,"), "{screen}");
        assert!(screen.contains("[x] Dismiss error"), "{screen}");
    }

    #[test]
    fn simulator_and_inventory_screens() {
        let (mut app, _) = loaded();
        key(&mut app, KeyCode::Char('2'));
        key(&mut app, KeyCode::Down);
        key(&mut app, KeyCode::Tab);
        let screen = render(&app, 110, 24);
        assert!(
            screen.contains("Challenge Demo App - Event Simulator"),
            "{screen}"
        );
        assert!(screen.contains("[Ctrl+C] Quit"), "{screen}");
        assert!(
            screen.contains("⚠ Input Mode: Navigation disabled"),
            "{screen}"
        );
        assert!(screen.contains("Stat code: ▏"), "{screen}");
        app.apply(Msg::Triggered {
            label: "Stat Update: kills = 10".into(),
            duration: Duration::from_millis(4),
            result: Err("trigger stat update event failed: boom".into()),
        });
        let screen = render(&app, 110, 24);
        assert!(
            screen.contains("✗ Stat Update: kills = 10 (4ms)"),
            "{screen}"
        );
        assert!(
            screen.contains("trigger stat update event failed: boom"),
            "{screen}"
        );

        key(&mut app, KeyCode::Esc);
        key(&mut app, KeyCode::Char('i'));
        assert!(app.inventory.loading);
        app.apply(Msg::Inventory(Ok((
            vec![crate::verifier::Entitlement {
                entitlement_id: "e1".into(),
                item_id: "winter_sword".into(),
                namespace: "demo".into(),
                status: "ACTIVE".into(),
                quantity: 1,
                granted_at: None,
            }],
            vec![crate::verifier::Wallet {
                wallet_id: "w".into(),
                currency_code: "GOLD".into(),
                namespace: "demo".into(),
                balance: 150,
                status: "ACTIVE".into(),
            }],
        ))));
        let screen = render(&app, 100, 20);
        assert!(screen.contains("Item Entitlements"), "{screen}");
        assert!(screen.contains("[ACTIVE] winter_sword"), "{screen}");
        assert!(screen.contains("GOLD: 150 ✓"), "{screen}");
        assert!(
            screen.contains("Showing 1 entitlement(s), 1 wallet(s)"),
            "{screen}"
        );

        let mut none = App::new("u1", "ns", "mock", None, Instant::now());
        key(&mut none, KeyCode::Char('e'));
        assert!(render(&none, 100, 20).contains("⚠ Event Handler Not Connected"));
    }
}
