//! The pair under test: the event handler and the service as real processes.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::api::{Api, Caller};
use crate::build::{binaries, fixture, workspace_root};
use crate::db::TestDb;
use crate::events::Events;
use crate::{FakeAgs, NAMESPACE};

/// How to start the pair. The defaults: auth disabled (`x-mock-user-id`), real rewards
/// against the fake AGS, the suite's fixture config, and a clock set to today's noon UTC.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub auth_enabled: bool,
    /// `CLOCK_OFFSET_SECONDS` for both binaries.
    pub clock_offset_seconds: i64,
    /// `challenges.json` for both binaries.
    pub config: PathBuf,
    /// Extra variables (both binaries), set last so they win.
    pub env: Vec<(String, String)>,
    /// Reach Postgres through this address (a [`crate::PgProxy`]) instead of directly.
    pub database_via: Option<std::net::SocketAddr>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            auth_enabled: false,
            clock_offset_seconds: seconds_to_noon(),
            config: fixture("challenges.json"),
            env: Vec::new(),
            database_via: None,
        }
    }
}

/// SIGTERM to every process (orderly shutdown, final flush), then waits; SIGKILL for any
/// still running after 10 s.
fn terminate(procs: Vec<Proc>) {
    for p in &procs {
        // SAFETY: plain kill(2) on a child we spawned and have not reaped yet.
        unsafe {
            libc::kill(p.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for mut p in procs {
        loop {
            match p.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// Ports of one running binary.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub grpc: u16,
    pub http: u16,
    pub metrics: u16,
}

struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

pub struct Stack {
    pub ags: FakeAgs,
    pub db: TestDb,
    pub options: StackOptions,
    pub service_ports: Ports,
    pub handler_ports: Ports,
    log_dir: PathBuf,
    procs: Vec<Proc>,
    /// Event handler replicas started with [`Stack::add_handler`] (index 1 onwards).
    replicas: Vec<Replica>,
    /// Metrics ports of the service processes started with [`Stack::add_service`].
    service_replicas: Vec<u16>,
    generation: u32,
}

/// An extra event handler process: its ports, its extra variables, and the process while
/// it runs.
struct Replica {
    ports: Ports,
    extra: Vec<(String, String)>,
    proc: Option<Proc>,
}

impl Stack {
    /// Creates a fresh database and a fake AGS, then starts both binaries and waits until
    /// both answer `/healthz` with 200. `name` labels the log directory
    /// (`target/e2e-logs/<name>-<db>/`).
    pub async fn start(name: &str, options: StackOptions) -> Stack {
        let ags = FakeAgs::start().await;
        let db = TestDb::create().await;
        let log_dir = workspace_root()
            .join("target")
            .join("e2e-logs")
            .join(format!("{name}-{}", &db.name[4..12]));
        std::fs::create_dir_all(&log_dir).expect("create the log directory");
        let mut stack = Stack {
            ags,
            db,
            options,
            service_ports: free_ports(),
            handler_ports: free_ports(),
            log_dir,
            procs: Vec::new(),
            replicas: Vec::new(),
            service_replicas: Vec::new(),
            generation: 0,
        };
        stack.spawn_and_wait().await;
        stack
    }

    /// Stops both binaries (SIGTERM, then SIGKILL after 10 s) and starts them again with
    /// `options` against the same database and fake AGS.
    pub async fn restart(&mut self, options: StackOptions) {
        self.stop();
        self.options = options;
        self.service_ports = free_ports();
        self.handler_ports = free_ports();
        self.spawn_and_wait().await;
    }

    /// REST base URL (`http://127.0.0.1:<port>/challenge`).
    pub fn service_url(&self) -> String {
        format!("http://127.0.0.1:{}/challenge", self.service_ports.http)
    }

    /// `host:port` of the event handler's gRPC server.
    pub fn handler_addr(&self) -> String {
        format!("127.0.0.1:{}", self.handler_ports.grpc)
    }

    /// `host:port` of the service's gRPC server.
    pub fn service_grpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.service_ports.grpc)
    }

    /// The REST API as `user` (auth disabled: `x-mock-user-id`).
    pub fn api(&self, user: &str) -> Api {
        Api::new(self.service_url(), Caller::Mock(user.to_string()))
    }

    /// The REST API with an explicit caller.
    pub fn api_as(&self, caller: Caller) -> Api {
        Api::new(self.service_url(), caller)
    }

    /// A gRPC client of the event handler, stamping events with the stack's clock.
    pub async fn events(&self) -> Events {
        Events::connect(&self.handler_addr(), self.options.clock_offset_seconds).await
    }

    /// The whole log so far of the running process named `name` (`service`, `event-handler`).
    pub fn log_of(&self, name: &str) -> String {
        self.procs
            .iter()
            .filter(|p| p.name == name)
            .map(|p| std::fs::read_to_string(&p.log).unwrap_or_default())
            .collect()
    }

    /// The last lines of both binaries' logs (for failure messages).
    pub fn log_tail(&self) -> String {
        self.procs
            .iter()
            .map(|p| format!("--- {} ({})\n{}", p.name, p.log.display(), tail(&p.log, 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The `DATABASE_URL` the binaries get (through [`StackOptions::database_via`] if set).
    pub fn database_url(&self) -> String {
        match self.options.database_via {
            None => self.db.url.clone(),
            Some(addr) => {
                let mut u = reqwest::Url::parse(&self.db.url).expect("database URL");
                u.set_host(Some(&addr.ip().to_string())).expect("set host");
                u.set_port(Some(addr.port())).expect("set port");
                u.to_string()
            }
        }
    }

    fn env(&self, ports: Ports) -> Vec<(String, String)> {
        let o = &self.options;
        let mut env: Vec<(String, String)> = [
            ("DATABASE_URL", self.database_url()),
            ("AB_BASE_URL", self.ags.url()),
            ("AB_NAMESPACE", NAMESPACE.to_string()),
            ("AB_CLIENT_ID", "e2e-client".to_string()),
            ("AB_CLIENT_SECRET", "e2e-secret".to_string()),
            ("BASE_PATH", "/challenge".to_string()),
            (
                "PLUGIN_GRPC_SERVER_AUTH_ENABLED",
                o.auth_enabled.to_string(),
            ),
            ("REWARD_CLIENT_MODE", "real".to_string()),
            ("CHALLENGE_CONFIG_PATH", o.config.display().to_string()),
            ("GRPC_PORT", ports.grpc.to_string()),
            ("HTTP_PORT", ports.http.to_string()),
            ("METRICS_PORT", ports.metrics.to_string()),
            ("CLOCK_OFFSET_SECONDS", o.clock_offset_seconds.to_string()),
            ("DB_MAX_OPEN_CONNS", "10".to_string()),
            ("LOG_LEVEL", "info".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(o.env.iter().cloned());
        env
    }

    /// Starts both binaries and waits until they are healthy. A port taken by someone else
    /// between choosing and binding it is retried with new ports.
    async fn spawn_and_wait(&mut self) {
        for attempt in 1..=3 {
            self.generation += 1;
            let bins = binaries();
            let handler_env = self.env(self.handler_ports);
            let service_env = self.env(self.service_ports);
            let handler = self.spawn("event-handler", &bins.event_handler, handler_env);
            self.procs.push(handler);
            let service = self.spawn("service", &bins.service, service_env);
            self.procs.push(service);
            let mut result = Ok(());
            for ports in [self.handler_ports, self.service_ports] {
                result = result.and(self.wait_healthy(ports.metrics).await);
            }
            match result {
                Ok(()) => return,
                Err(e) if attempt < 3 && e.contains("Address already in use") => {
                    self.stop();
                    self.service_ports = free_ports();
                    self.handler_ports = free_ports();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn spawn(&self, name: &'static str, exe: &Path, env: Vec<(String, String)>) -> Proc {
        let log = self.log_dir.join(format!("{name}.{}.log", self.generation));
        let out = File::create(&log).expect("create a log file");
        let err = out.try_clone().expect("clone the log file handle");
        // A clean environment: nothing from the developer's shell leaks into the run.
        let child = Command::new(exe)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_BACKTRACE", "1")
            .envs(env)
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {} ({}): {e}", name, exe.display()));
        Proc { name, child, log }
    }

    /// Polls `/healthz` until 200; `Err` with the logs if a binary exits or 60 s pass.
    async fn wait_healthy(&mut self, metrics_port: u16) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{metrics_port}/healthz");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for p in &mut self.procs {
                if let Ok(Some(status)) = p.child.try_wait() {
                    return Err(format!(
                        "{} exited during start-up ({status})\n{}",
                        p.name,
                        tail(&p.log, 60)
                    ));
                }
            }
            if let Ok(r) = client.get(&url).send().await
                && r.status().as_u16() == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{url} did not answer 200 within 60 s\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops both binaries: SIGTERM (orderly shutdown, final flush), SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let replicas: Vec<Proc> = self
            .replicas
            .iter_mut()
            .filter_map(|r| r.proc.take())
            .collect();
        self.procs.extend(replicas);
        terminate(self.procs.drain(..).collect());
    }

    /// Stops the service alone (SIGTERM, SIGKILL after 10 s); the event handler keeps
    /// running. [`Stack::start_service`] brings it back on the same ports.
    pub fn stop_service(&mut self) {
        if let Some(i) = self.procs.iter().position(|p| p.name == "service") {
            terminate(vec![self.procs.remove(i)]);
        }
    }

    /// Starts the service again (after [`Stack::stop_service`]) and waits until it is
    /// healthy.
    pub async fn start_service(&mut self) {
        self.generation += 1;
        let env = self.env(self.service_ports);
        let service = self.spawn("service", &binaries().service, env);
        self.procs.push(service);
        if let Err(e) = self.wait_healthy(self.service_ports.metrics).await {
            panic!("{e}");
        }
    }

    /// Starts another event handler process on the same database, fake AGS and settings
    /// (plus `extra`, which wins), on ports of its own; waits until it is healthy. Returns
    /// its index for [`Stack::handler_addrs`], [`Stack::kill_handler`] and
    /// [`Stack::respawn_handler`] (the stack's own handler is index 0).
    pub async fn add_handler(&mut self, extra: Vec<(String, String)>) -> usize {
        self.replicas.push(Replica {
            ports: free_ports(),
            extra,
            proc: None,
        });
        let i = self.replicas.len();
        self.respawn_handler(i).await;
        i
    }

    /// Starts another service process on the same database, fake AGS and settings, on
    /// ports of its own; waits until it is healthy and returns its REST base URL
    /// (`http://127.0.0.1:<port>/challenge`). Stopped with the stack.
    pub async fn add_service(&mut self) -> String {
        self.generation += 1;
        let ports = free_ports();
        let env = self.env(ports);
        let proc = self.spawn("service-replica", &binaries().service, env);
        self.procs.push(proc);
        if let Err(e) = self.wait_healthy(ports.metrics).await {
            panic!("{e}");
        }
        self.service_replicas.push(ports.metrics);
        format!("http://127.0.0.1:{}/challenge", ports.http)
    }

    /// The metrics ports (`/healthz`, `/metrics`) of every process: the event handlers
    /// (index 0 first), then the services (the stack's own first).
    pub fn metrics_ports(&self) -> Vec<u16> {
        std::iter::once(self.handler_ports.metrics)
            .chain(self.replicas.iter().map(|r| r.ports.metrics))
            .chain(std::iter::once(self.service_ports.metrics))
            .chain(self.service_replicas.iter().copied())
            .collect()
    }

    /// `host:port` of every event handler's gRPC server, index 0 first.
    pub fn handler_addrs(&self) -> Vec<String> {
        std::iter::once(self.handler_ports.grpc)
            .chain(self.replicas.iter().map(|r| r.ports.grpc))
            .map(|port| format!("127.0.0.1:{port}"))
            .collect()
    }

    /// SIGKILLs event handler `i` (no shutdown, no final flush) and reaps it.
    pub fn kill_handler(&mut self, i: usize) {
        let proc = if i == 0 {
            let at = self.procs.iter().position(|p| p.name == "event-handler");
            at.map(|at| self.procs.remove(at))
        } else {
            self.replicas[i - 1].proc.take()
        };
        if let Some(mut p) = proc {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Starts event handler `i` again, on its old ports, and waits until it is healthy.
    pub async fn respawn_handler(&mut self, i: usize) {
        self.generation += 1;
        let bins = binaries();
        let (ports, env) = if i == 0 {
            (self.handler_ports, self.env(self.handler_ports))
        } else {
            let r = &self.replicas[i - 1];
            let mut env = self.env(r.ports);
            env.extend(r.extra.iter().cloned());
            (r.ports, env)
        };
        let name = if i == 0 {
            "event-handler"
        } else {
            "event-handler-replica"
        };
        let proc = self.spawn(name, &bins.event_handler, env);
        if i == 0 {
            self.procs.push(proc);
        } else {
            self.replicas[i - 1].proc = Some(proc);
        }
        let url = format!("http://127.0.0.1:{}/healthz", ports.metrics);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status().as_u16() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "event handler {i} did not become healthy within 60 s\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERMs every process of the stack and returns how each ended: `(name, exit code)`
    /// (`None`: killed by a signal, or still running after 30 s and then SIGKILLed).
    pub fn terminate(&mut self) -> Vec<(&'static str, Option<i32>)> {
        let mut procs: Vec<Proc> = self.procs.drain(..).collect();
        procs.extend(self.replicas.iter_mut().filter_map(|r| r.proc.take()));
        for p in &procs {
            // SAFETY: plain kill(2) on a child we spawned and have not reaped yet.
            unsafe {
                libc::kill(p.child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        procs
            .into_iter()
            .map(|mut p| {
                loop {
                    match p.child.try_wait() {
                        Ok(Some(status)) => break (p.name, status.code()),
                        Ok(None) if Instant::now() > deadline => {
                            let _ = p.child.kill();
                            let _ = p.child.wait();
                            break (p.name, None);
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                        Err(_) => break (p.name, None),
                    }
                }
            })
            .collect()
    }

    /// Where the binaries' logs of this stack are written.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
        // Logs are kept for a failed scenario (or always with E2E_KEEP_LOGS=1).
        if !std::thread::panicking() && std::env::var_os("E2E_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }
}

/// Seconds from now to 12:00 UTC today (negative in the afternoon). Running the binaries
/// at noon keeps daily goals and rotations away from a midnight a test could straddle.
pub fn seconds_to_noon() -> i64 {
    let now = chrono::Utc::now();
    let noon = now
        .date_naive()
        .and_hms_opt(12, 0, 0)
        .expect("noon exists")
        .and_utc();
    (noon - now).num_seconds()
}

/// Three ports that were free a moment ago. They come from 20000–31999, below the kernel's
/// ephemeral range, so outgoing connections and port-0 listeners elsewhere on the machine
/// cannot take them before the binaries bind; each test process walks its own sequence.
fn free_ports() -> Ports {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const BASE: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let start = (std::process::id() * 97) % SPAN;
    let take = || loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "ran out of test ports");
        let port = (BASE + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("0.0.0.0", port)).is_ok()
        {
            return port;
        }
    };
    Ports {
        grpc: take(),
        http: take(),
        metrics: take(),
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
