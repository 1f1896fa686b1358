//! The TUI's state and how keys and results change it. No I/O here: a key or a finished
//! call goes in ([`App::key`], [`App::apply`]), the calls to make come out ([`Action`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::model::{Challenge, ClaimResult, Goal};
use crate::verifier::{Entitlement, Wallet};

/// How often the dashboard reloads the challenges on its own (live progress).
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);
const HISTORY_LEN: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Dashboard,
    Simulator,
    Inventory,
}

impl Screen {
    pub fn title(self) -> &'static str {
        match self {
            Screen::Dashboard => "Dashboard",
            Screen::Simulator => "Event Simulator",
            Screen::Inventory => "Inventory & Wallets",
        }
    }
}

/// A call for the runner to make; its result comes back as a [`Msg`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    LoadChallenges,
    Claim { challenge: String, goal: String },
    Login,
    StatUpdate { stat_code: String, value: i64 },
    LoadInventory,
}

/// Results of the runner's calls, and the clock.
#[derive(Debug)]
pub enum Msg {
    Challenges(Result<Vec<Challenge>, String>),
    Claimed {
        goal: String,
        result: Result<ClaimResult, String>,
    },
    Triggered {
        label: String,
        duration: Duration,
        result: Result<(), String>,
    },
    Inventory(Result<(Vec<Entitlement>, Vec<Wallet>), String>),
    Tick(Instant),
}

/// A failed call, with the service's JSON error taken apart when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorInfo {
    pub context: String,
    pub http_status: Option<u16>,
    pub grpc_code: Option<i64>,
    pub message: String,
    /// The response body, pretty-printed when it is JSON.
    pub body: Option<String>,
}

impl ErrorInfo {
    /// Reads `... HTTP 400: {"code":9,"message":"..."}` (the API client's error text).
    pub fn parse(context: &str, err: &str) -> ErrorInfo {
        let mut info = ErrorInfo {
            context: context.to_string(),
            http_status: None,
            grpc_code: None,
            message: err.to_string(),
            body: None,
        };
        if let Some(at) = err.find("HTTP ") {
            let rest = &err[at + 5..];
            if let Some((code, body)) = rest.split_once(": ") {
                info.http_status = code.trim().parse().ok();
                let body = body.trim();
                match serde_json::from_str::<serde_json::Value>(body) {
                    Ok(v) => {
                        info.grpc_code = v.get("code").and_then(|c| c.as_i64());
                        if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
                            info.message = m.to_string();
                        }
                        info.body = serde_json::to_string_pretty(&v).ok();
                    }
                    Err(_) if !body.is_empty() => {
                        info.message = body.to_string();
                        info.body = Some(body.to_string());
                    }
                    Err(_) => {}
                }
            }
        }
        info
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Login,
    StatUpdate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Type,
    StatCode,
    Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub ok: bool,
    pub label: String,
    pub duration_ms: u128,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct Dashboard {
    pub challenges: Vec<Challenge>,
    pub selected: usize,
    /// The challenge whose goals are shown, by id (survives reloads).
    pub detail: Option<String>,
    pub goal: usize,
    pub loading: bool,
    pub loaded_at: Option<Instant>,
    pub notice: Option<String>,
}

#[derive(Debug)]
pub struct Simulator {
    pub kind: EventKind,
    pub focus: Focus,
    pub stat_code: String,
    pub value: String,
    pub history: VecDeque<HistoryEntry>,
    pub sending: bool,
}

#[derive(Debug, Default)]
pub struct Inventory {
    pub entitlements: Vec<Entitlement>,
    pub wallets: Vec<Wallet>,
    /// 0: entitlements, 1: wallets.
    pub panel: usize,
    pub scroll: [usize; 2],
    pub loading: bool,
    pub loaded: bool,
}

pub struct App {
    pub screen: Screen,
    pub user_id: String,
    pub namespace: String,
    pub auth_mode: String,
    /// Token lifetime left at the last tick (`None`: no token yet).
    pub token_left: Option<Duration>,
    /// `None`: no event handler configured (`--event-handler-url=""`).
    pub handler: Option<String>,
    pub dashboard: Dashboard,
    pub simulator: Simulator,
    pub inventory: Inventory,
    pub error: Option<ErrorInfo>,
    pub now: Instant,
    pub quit: bool,
}

impl App {
    pub fn new(
        user_id: &str,
        namespace: &str,
        auth_mode: &str,
        handler: Option<String>,
        now: Instant,
    ) -> App {
        App {
            screen: Screen::Dashboard,
            user_id: user_id.to_string(),
            namespace: namespace.to_string(),
            auth_mode: auth_mode.to_string(),
            token_left: None,
            handler,
            dashboard: Dashboard {
                loading: true,
                ..Dashboard::default()
            },
            simulator: Simulator {
                kind: EventKind::Login,
                focus: Focus::Type,
                stat_code: String::new(),
                value: String::new(),
                history: VecDeque::new(),
                sending: false,
            },
            inventory: Inventory::default(),
            error: None,
            now,
            quit: false,
        }
    }

    /// The first calls: the challenge list.
    pub fn start(&mut self) -> Vec<Action> {
        self.dashboard.loading = true;
        vec![Action::LoadChallenges]
    }

    /// True while a simulator text field has the keyboard.
    pub fn input_mode(&self) -> bool {
        self.screen == Screen::Simulator && self.simulator.focus != Focus::Type
    }

    pub fn detail_challenge(&self) -> Option<&Challenge> {
        let id = self.dashboard.detail.as_ref()?;
        self.dashboard.challenges.iter().find(|c| &c.id == id)
    }

    pub fn selected_goal(&self) -> Option<&Goal> {
        self.detail_challenge()?.goals().get(self.dashboard.goal)
    }

    /// Seconds until a goal's period ends, counted down from the last load.
    pub fn expires_in(&self, goal: &Goal) -> Option<i64> {
        if goal.expires_at.is_empty() && goal.expires_in_seconds <= 0 {
            return None;
        }
        let elapsed = self
            .dashboard
            .loaded_at
            .map(|t| self.now.saturating_duration_since(t).as_secs() as i64)
            .unwrap_or(0);
        Some((goal.expires_in_seconds - elapsed).max(0))
    }

    /// The soonest rotation of a challenge's goals.
    pub fn challenge_expires_in(&self, c: &Challenge) -> Option<i64> {
        c.goals().iter().filter_map(|g| self.expires_in(g)).min()
    }

    pub fn key(&mut self, k: KeyEvent) -> Vec<Action> {
        if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return vec![];
        }
        if self.input_mode() {
            return self.simulator_input(k);
        }
        if self.error.is_some() && matches!(k.code, KeyCode::Char('x')) {
            self.error = None;
            return vec![];
        }
        match k.code {
            KeyCode::Char('q') => {
                self.quit = true;
                return vec![];
            }
            KeyCode::Char('1') => {
                self.screen = Screen::Dashboard;
                return vec![];
            }
            KeyCode::Char('2') | KeyCode::Char('e') => {
                self.screen = Screen::Simulator;
                return vec![];
            }
            KeyCode::Char('3') | KeyCode::Char('i') => {
                self.screen = Screen::Inventory;
                return self.load_inventory();
            }
            KeyCode::Esc if self.screen != Screen::Dashboard => {
                self.screen = Screen::Dashboard;
                return vec![];
            }
            _ => {}
        }
        match self.screen {
            Screen::Dashboard => self.dashboard_key(k),
            Screen::Simulator => self.simulator_key(k),
            Screen::Inventory => self.inventory_key(k),
        }
    }

    fn load_challenges(&mut self) -> Vec<Action> {
        if self.dashboard.loading {
            return vec![];
        }
        self.dashboard.loading = true;
        vec![Action::LoadChallenges]
    }

    fn load_inventory(&mut self) -> Vec<Action> {
        if self.inventory.loading {
            return vec![];
        }
        self.inventory.loading = true;
        vec![Action::LoadInventory]
    }

    fn dashboard_key(&mut self, k: KeyEvent) -> Vec<Action> {
        let d = &mut self.dashboard;
        match (k.code, d.detail.is_some()) {
            (KeyCode::Char('r'), _) => {
                self.error = None;
                self.load_challenges()
            }
            (KeyCode::Up | KeyCode::Char('k'), false) => {
                d.selected = d.selected.saturating_sub(1);
                vec![]
            }
            (KeyCode::Down | KeyCode::Char('j'), false) => {
                if d.selected + 1 < d.challenges.len() {
                    d.selected += 1;
                }
                vec![]
            }
            (KeyCode::Enter, false) => {
                if let Some(c) = d.challenges.get(d.selected) {
                    d.detail = Some(c.id.clone());
                    d.goal = 0;
                    d.notice = None;
                }
                vec![]
            }
            (KeyCode::Esc, true) => {
                d.detail = None;
                d.notice = None;
                vec![]
            }
            (KeyCode::Up | KeyCode::Char('k'), true) => {
                d.goal = d.goal.saturating_sub(1);
                vec![]
            }
            (KeyCode::Down | KeyCode::Char('j'), true) => {
                let n = self
                    .detail_challenge()
                    .map(|c| c.goals().len())
                    .unwrap_or(0);
                if self.dashboard.goal + 1 < n {
                    self.dashboard.goal += 1;
                }
                vec![]
            }
            (KeyCode::Char('c'), true) => {
                let Some(g) = self.selected_goal() else {
                    return vec![];
                };
                if g.status != "completed" {
                    let msg = format!(
                        "'{}' is {}: only completed goals can be claimed",
                        g.name, g.status
                    );
                    self.dashboard.notice = Some(msg);
                    return vec![];
                }
                let action = Action::Claim {
                    challenge: self.dashboard.detail.clone().unwrap_or_default(),
                    goal: g.id.clone(),
                };
                self.dashboard.notice = Some(format!("Claiming '{}'...", g.name));
                vec![action]
            }
            _ => vec![],
        }
    }

    fn simulator_key(&mut self, k: KeyEvent) -> Vec<Action> {
        let s = &mut self.simulator;
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => s.kind = EventKind::Login,
            KeyCode::Down | KeyCode::Char('j') => s.kind = EventKind::StatUpdate,
            KeyCode::Tab if s.kind == EventKind::StatUpdate => s.focus = Focus::StatCode,
            KeyCode::Enter => return self.trigger(),
            _ => {}
        }
        vec![]
    }

    fn simulator_input(&mut self, k: KeyEvent) -> Vec<Action> {
        let s = &mut self.simulator;
        match k.code {
            KeyCode::Esc => s.focus = Focus::Type,
            KeyCode::Tab => {
                s.focus = match s.focus {
                    Focus::Type => Focus::StatCode,
                    Focus::StatCode => Focus::Value,
                    Focus::Value => Focus::Type,
                }
            }
            KeyCode::Enter => return self.trigger(),
            KeyCode::Backspace => {
                let field = if s.focus == Focus::StatCode {
                    &mut s.stat_code
                } else {
                    &mut s.value
                };
                field.pop();
            }
            KeyCode::Char(c) => {
                let field = if s.focus == Focus::StatCode {
                    &mut s.stat_code
                } else {
                    &mut s.value
                };
                if field.chars().count() < 64 {
                    field.push(c);
                }
            }
            _ => {}
        }
        vec![]
    }

    fn trigger(&mut self) -> Vec<Action> {
        if self.handler.is_none() || self.simulator.sending {
            return vec![];
        }
        let s = &mut self.simulator;
        let action = match s.kind {
            EventKind::Login => Action::Login,
            EventKind::StatUpdate => {
                let code = if s.stat_code.trim().is_empty() {
                    "kills".to_string()
                } else {
                    s.stat_code.trim().to_string()
                };
                let value = if s.value.trim().is_empty() {
                    "10"
                } else {
                    s.value.trim()
                };
                match crate::cli::parse_go_int(value) {
                    Ok(value) => Action::StatUpdate {
                        stat_code: code,
                        value,
                    },
                    Err(_) => {
                        push_history(
                            &mut s.history,
                            HistoryEntry {
                                ok: false,
                                label: format!("Stat Update: {code} = {value}"),
                                duration_ms: 0,
                                error: Some("invalid value".into()),
                            },
                        );
                        return vec![];
                    }
                }
            }
        };
        s.sending = true;
        vec![action]
    }

    fn inventory_key(&mut self, k: KeyEvent) -> Vec<Action> {
        let inv = &mut self.inventory;
        let len = if inv.panel == 0 {
            inv.entitlements.len()
        } else {
            inv.wallets.len()
        };
        match k.code {
            KeyCode::Tab => inv.panel = 1 - inv.panel,
            KeyCode::Up | KeyCode::Char('k') => {
                inv.scroll[inv.panel] = inv.scroll[inv.panel].saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') if inv.scroll[inv.panel] + 1 < len => {
                inv.scroll[inv.panel] += 1
            }
            KeyCode::Char('r') => {
                self.error = None;
                return self.load_inventory();
            }
            _ => {}
        }
        vec![]
    }

    pub fn apply(&mut self, msg: Msg) -> Vec<Action> {
        match msg {
            Msg::Tick(now) => {
                self.now = now;
                let due = self
                    .dashboard
                    .loaded_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= REFRESH_EVERY);
                if self.screen == Screen::Dashboard && due && self.error.is_none() {
                    return self.load_challenges();
                }
                vec![]
            }
            Msg::Challenges(result) => {
                let d = &mut self.dashboard;
                d.loading = false;
                d.loaded_at = Some(self.now);
                match result {
                    Ok(list) => {
                        d.challenges = list;
                        if d.selected >= d.challenges.len() {
                            d.selected = d.challenges.len().saturating_sub(1);
                        }
                        if let Some(id) = &d.detail
                            && !d.challenges.iter().any(|c| &c.id == id)
                        {
                            d.detail = None;
                        }
                    }
                    Err(e) => self.error = Some(ErrorInfo::parse("Failed to load challenges", &e)),
                }
                vec![]
            }
            Msg::Claimed { goal, result } => match result {
                Ok(r) => {
                    self.dashboard.notice = Some(format!(
                        "✓ Reward claimed successfully! {} {} x{}",
                        r.reward.kind, r.reward.reward_id, r.reward.quantity
                    ));
                    self.load_challenges()
                }
                Err(e) => {
                    self.dashboard.notice = None;
                    self.error = Some(ErrorInfo::parse(&format!("Failed to claim '{goal}'"), &e));
                    vec![]
                }
            },
            Msg::Triggered {
                label,
                duration,
                result,
            } => {
                self.simulator.sending = false;
                push_history(
                    &mut self.simulator.history,
                    HistoryEntry {
                        ok: result.is_ok(),
                        label,
                        duration_ms: duration.as_millis(),
                        error: result.err(),
                    },
                );
                vec![]
            }
            Msg::Inventory(result) => {
                let inv = &mut self.inventory;
                inv.loading = false;
                match result {
                    Ok((e, w)) => {
                        inv.entitlements = e;
                        inv.wallets = w;
                        inv.loaded = true;
                        inv.scroll = [0, 0];
                    }
                    Err(e) => self.error = Some(ErrorInfo::parse("Failed to load inventory", &e)),
                }
                vec![]
            }
        }
    }
}

fn push_history(h: &mut VecDeque<HistoryEntry>, e: HistoryEntry) {
    h.push_front(e);
    h.truncate(HISTORY_LEN);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Requirement, Reward};

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    pub(crate) fn sample() -> Vec<Challenge> {
        let goal = |id: &str, status: &str, progress: i64, expires: i64| Goal {
            id: id.into(),
            name: format!("Goal {id}"),
            description: format!("About {id}"),
            requirement: Requirement {
                stat_code: "kills".into(),
                operator: ">=".into(),
                target_value: 10,
            },
            reward: Reward {
                kind: "ITEM".into(),
                reward_id: "sword".into(),
                quantity: 2,
            },
            progress,
            status: status.into(),
            is_active: true,
            expires_at: if expires > 0 {
                "2026-12-07T00:00:00Z".into()
            } else {
                String::new()
            },
            expires_in_seconds: expires,
            ..Goal::default()
        };
        vec![
            Challenge {
                id: "winter".into(),
                name: "Winter".into(),
                description: "Cold".into(),
                goals: Some(vec![
                    goal("a", "completed", 10, 0),
                    goal("b", "in_progress", 4, 0),
                ]),
            },
            Challenge {
                id: "daily".into(),
                name: "Daily".into(),
                description: "Every day".into(),
                goals: Some(vec![goal("d", "not_started", 0, 3661)]),
            },
        ]
    }

    fn loaded(now: Instant) -> App {
        let mut app = App::new("u1", "ns", "mock", Some("localhost:6566".into()), now);
        assert_eq!(app.start(), vec![Action::LoadChallenges]);
        app.apply(Msg::Challenges(Ok(sample())));
        app
    }

    #[test]
    fn claim_only_completed_goals_then_reload() {
        let now = Instant::now();
        let mut app = loaded(now);
        assert!(app.key(key(KeyCode::Enter)).is_empty());
        assert_eq!(app.detail_challenge().unwrap().id, "winter");
        assert_eq!(
            app.key(key(KeyCode::Char('c'))),
            vec![Action::Claim {
                challenge: "winter".into(),
                goal: "a".into()
            }]
        );
        app.key(key(KeyCode::Down));
        assert!(
            app.key(key(KeyCode::Char('c'))).is_empty(),
            "in_progress: nothing to claim"
        );
        assert!(
            app.dashboard
                .notice
                .as_deref()
                .unwrap()
                .contains("only completed goals")
        );
        let after = app.apply(Msg::Claimed {
            goal: "a".into(),
            result: Ok(ClaimResult {
                status: "claimed".into(),
                ..ClaimResult::default()
            }),
        });
        assert_eq!(after, vec![Action::LoadChallenges]);
        assert!(
            app.dashboard
                .notice
                .as_deref()
                .unwrap()
                .starts_with("✓ Reward claimed successfully!")
        );
    }

    #[test]
    fn server_errors_are_taken_apart() {
        let now = Instant::now();
        let mut app = loaded(now);
        app.apply(Msg::Claimed {
            goal: "a".into(),
            result: Err(r#"HTTP 409: {"code":6,"message":"Reward has already been claimed (goal_id: a)","details":[]}"#.into()),
        });
        let e = app.error.clone().unwrap();
        assert_eq!(e.http_status, Some(409));
        assert_eq!(e.grpc_code, Some(6));
        assert_eq!(e.message, "Reward has already been claimed (goal_id: a)");
        assert!(e.body.unwrap().contains("\"details\": []"));
        let plain = ErrorInfo::parse(
            "x",
            "list challenges: request failed after 3 attempts: server error: status 503",
        );
        assert_eq!((plain.http_status, plain.body), (None, None));
        app.key(key(KeyCode::Char('x')));
        assert!(app.error.is_none());
    }

    #[test]
    fn live_refresh_and_countdown_follow_the_clock() {
        let start = Instant::now();
        let mut app = loaded(start);
        assert!(
            app.apply(Msg::Tick(start + Duration::from_secs(1)))
                .is_empty()
        );
        let daily = app.dashboard.challenges[1].clone();
        assert_eq!(app.challenge_expires_in(&daily), Some(3660));
        assert_eq!(
            app.apply(Msg::Tick(start + REFRESH_EVERY)),
            vec![Action::LoadChallenges]
        );
        assert!(
            app.apply(Msg::Tick(start + REFRESH_EVERY * 2)).is_empty(),
            "one load at a time"
        );
        // Not on other screens.
        app.apply(Msg::Challenges(Ok(sample())));
        app.key(key(KeyCode::Char('2')));
        assert!(app.apply(Msg::Tick(start + REFRESH_EVERY * 4)).is_empty());
    }

    #[test]
    fn simulator_inputs_take_the_keyboard() {
        let now = Instant::now();
        let mut app = loaded(now);
        app.key(key(KeyCode::Char('e')));
        assert_eq!(app.screen, Screen::Simulator);
        assert_eq!(app.key(key(KeyCode::Enter)), vec![Action::Login]);
        app.apply(Msg::Triggered {
            label: "Login Event".into(),
            duration: Duration::from_millis(3),
            result: Ok(()),
        });
        app.key(key(KeyCode::Down));
        app.key(key(KeyCode::Tab));
        assert!(app.input_mode());
        for c in "q1wins".chars() {
            app.key(key(KeyCode::Char(c)));
        }
        assert_eq!(
            app.screen,
            Screen::Simulator,
            "q and 1 were typed, not obeyed"
        );
        assert!(!app.quit);
        app.key(key(KeyCode::Tab));
        app.key(key(KeyCode::Char('x')));
        assert_eq!(app.key(key(KeyCode::Enter)), vec![], "invalid value");
        assert_eq!(
            app.simulator.history[0].error.as_deref(),
            Some("invalid value")
        );
        app.key(key(KeyCode::Backspace));
        app.key(key(KeyCode::Char('-')));
        app.key(key(KeyCode::Char('7')));
        assert_eq!(
            app.key(key(KeyCode::Enter)),
            vec![Action::StatUpdate {
                stat_code: "q1wins".into(),
                value: -7
            }]
        );
        app.key(key(KeyCode::Esc));
        assert!(!app.input_mode());
        app.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(app.quit);
    }
}
