//! Locating the repository and building the two binaries once per test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives in <workspace>/tests")
}

/// A file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Paths of the two executables under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub service: PathBuf,
    pub event_handler: PathBuf,
}

/// Builds both binaries (debug profile, same target directory as the test run) the first
/// time it is called, so `cargo test --workspace` works from a clean clone. Set
/// `E2E_BIN_DIR` to a directory holding already built executables to skip the build.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        if let Ok(dir) = std::env::var("E2E_BIN_DIR") {
            let dir = PathBuf::from(dir);
            return Binaries {
                service: dir.join("extend-challenge-service"),
                event_handler: dir.join("extend-challenge-event-handler"),
            };
        }
        cargo_build()
    })
}

fn cargo_build() -> Binaries {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--message-format=json-render-diagnostics",
            "-p",
            "extend-challenge-service",
            "-p",
            "extend-challenge-event-handler",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run cargo build for the binaries under test");
    assert!(
        out.status.success(),
        "cargo build of the binaries under test failed"
    );
    let mut service = None;
    let mut event_handler = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(name), Some(exe)) = (
            msg.pointer("/target/name").and_then(|v| v.as_str()),
            msg.get("executable").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        match name {
            "extend-challenge-service" => service = Some(PathBuf::from(exe)),
            "extend-challenge-event-handler" => event_handler = Some(PathBuf::from(exe)),
            _ => {}
        }
    }
    Binaries {
        service: service.expect("cargo reported no extend-challenge-service executable"),
        event_handler: event_handler
            .expect("cargo reported no extend-challenge-event-handler executable"),
    }
}
