//! `scripts/smoke.sh` (real grpcurl over reflection, curl) passes against the pair.

use std::process::Command;

use crate::support::*;
use extend_challenge_e2e::NAMESPACE;
use extend_challenge_e2e::build::workspace_root;

/// `GRPCURL` as `scripts/test.sh` exports it; otherwise let that script install it.
fn grpcurl() -> String {
    if let Ok(p) = std::env::var("GRPCURL")
        && !p.is_empty()
    {
        return p;
    }
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/test.sh"))
        .arg("--install-grpcurl")
        .output()
        .expect("run scripts/test.sh --install-grpcurl");
    assert!(
        out.status.success(),
        "installing grpcurl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn smoke_script_passes_against_the_pair() {
    let (stack, _) = start("smoke").await;
    let u = user("smoke");
    let grpcurl = grpcurl();
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(workspace_root().join("scripts/smoke.sh"))
        .env("GRPCURL", &grpcurl)
        .env("HANDLER_ADDR", stack.handler_addr())
        .env("SERVICE_URL", stack.service_url())
        .env("NAMESPACE", NAMESPACE)
        .env("USER_ID", &u)
        .env(
            "CONFIG",
            extend_challenge_e2e::build::fixture("challenges.json"),
        )
        .env("STAT_VALUE", "7")
        .env_remove("TOKEN")
        .env_remove("LOGIN_GOAL")
        .env_remove("STAT_GOAL")
        .env_remove("STAT_CODE");
    let out = cmd.output().await.expect("run scripts/smoke.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "smoke.sh failed:\n{text}\n{}",
        stack.log_tail()
    );
    assert!(text.contains("smoke: OK"), "{text}");

    // It picked the fixture's first login goal and first absolute stat goal.
    let api = stack.api(&u);
    assert_eq!(
        api.progress(VETERAN, "login-1000-times").await,
        (1, "in_progress".into())
    );
    assert_eq!(
        api.progress(WINTER, "complete-tutorial").await,
        (7, "completed".into())
    );

    // The service serves reflection too.
    let out = Command::new(&grpcurl)
        .args(["-plaintext", &stack.service_grpc_addr(), "list"])
        .output()
        .expect("grpcurl list on the service");
    let services = String::from_utf8_lossy(&out.stdout);
    assert!(
        services.lines().any(|l| l == "service.Service"),
        "{services}"
    );
}
