//! `challenge-demo`: the developer CLI and TUI for the Extend Challenge pair,
//! flag-compatible with AccelByte's demo app (CONTRACT §11).
//!
//! `main` only parses, runs and maps the outcome to an exit code: 0 on success and for
//! help, 1 for every failure (usage errors included), after `Error: <msg>` and the
//! command's usage on stderr.

/// `print!`/`println!`/`eprint!`/`eprintln!` that ignore a closed pipe
/// (`challenge-demo list-challenges | head -1`) instead of panicking, as Go's `fmt` does.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($t)*);
    }};
}
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

mod api;
mod auth;
mod cli;
mod commands;
mod events;
mod model;
mod output;
mod tui;
mod verifier;

use std::ffi::OsString;
use std::io::Write;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, CliError};

fn main() {
    let code = run(std::env::args_os().collect());
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn run(argv: Vec<OsString>) -> i32 {
    let strings: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let parsed = Cli::command()
        .try_get_matches_from(&argv)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => return parse_error(e, &strings),
    };
    let path = commands::path_of(&cli.command);
    let runtime = if cli.command.is_none() || matches!(cli.command, Some(cli::Command::Tui { .. }))
    {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            errln!("Error: failed to start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => 0,
        Err(CliError(msg)) => {
            let _ = std::io::stdout().flush();
            errln!("Error: {msg}");
            err!("{}", usage(&path));
            1
        }
    }
}

/// A parse failure reported the way cobra/pflag word it.
fn parse_error(e: clap::Error, argv: &[String]) -> i32 {
    let path = commands::path_in_argv(argv);
    let msg = match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // Help (also a bare `trigger-event`): stdout, exit 0.
            out!("{}", e.render());
            return 0;
        }
        ErrorKind::InvalidSubcommand => {
            let name = context_str(&e, ContextKind::InvalidSubcommand).unwrap_or_default();
            let parent = std::iter::once("challenge-demo")
                .chain(path.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            errln!("Error: unknown command \"{name}\" for \"{parent}\"");
            errln!("Run '{parent} --help' for usage.");
            return 1;
        }
        ErrorKind::UnknownArgument => {
            let arg = context_str(&e, ContextKind::InvalidArg).unwrap_or_default();
            unknown_flag(&arg, &path)
        }
        ErrorKind::InvalidValue | ErrorKind::NoEquals => {
            let arg = context_str(&e, ContextKind::InvalidArg).unwrap_or_default();
            let flag = arg
                .split([' ', '[', '='])
                .next()
                .unwrap_or_default()
                .to_string();
            format!("flag needs an argument: {flag}")
        }
        _ => {
            let text = e.render().to_string();
            text.lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_string()
        }
    };
    errln!("Error: {msg}");
    err!("{}", usage(&path));
    1
}

/// pflag's words for an unknown flag (`--x`, `--x=1`, `-x`). An unexpected positional
/// at the root is an unknown command.
fn unknown_flag(arg: &str, path: &[String]) -> String {
    if let Some(long) = arg.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or_default();
        format!("unknown flag: --{name}")
    } else if let Some(short) = arg.strip_prefix('-') {
        let c = short.chars().next().unwrap_or('-');
        format!("unknown shorthand flag: '{c}' in -{short}")
    } else {
        let parent = std::iter::once("challenge-demo")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        format!("unknown command \"{arg}\" for \"{parent}\"")
    }
}

fn context_str(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => v.first().cloned(),
        other => Some(other.to_string()),
    }
}

/// The usage text of the command at `path` (cobra prints it after every error).
fn usage(path: &[String]) -> String {
    let mut cmd = Cli::command();
    cmd.build();
    let mut current = cmd;
    for name in path {
        match current.find_subcommand(name) {
            Some(sub) => current = sub.clone(),
            None => break,
        }
    }
    format!("{}\n", current.render_help())
}

/// A log line as Go's `log` writes it: `YYYY/MM/DD HH:MM:SS <msg>` on stderr.
pub fn log(msg: &str) {
    let now = chrono::Local::now();
    errln!("{} {msg}", now.format("%Y/%m/%d %H:%M:%S"));
}
