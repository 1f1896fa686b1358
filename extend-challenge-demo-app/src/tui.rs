//! The interactive TUI.

use crate::cli::CliError;
use crate::commands::Ctx;

pub async fn run(_ctx: Ctx) -> Result<(), CliError> {
    Err("the TUI is not built yet".into())
}
