//! The command line: clap definitions shaped like the demo's cobra/pflag grammar.
//!
//! Typed flags (bools, ints, durations) are taken as strings and converted after parsing
//! ([`go_bool`], [`go_int`], [`go_duration`]), so a bad value reports pflag's own text
//! (`invalid argument "abc" for "--count" flag: strconv.ParseInt: ...`). Required flags
//! are checked by the commands, in cobra's order (arity, then required flags, then the
//! command's own checks).

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "challenge-demo",
    about = "Challenge Service Demo CLI",
    long_about = "Interactive TUI and CLI tool for testing the Extend Challenge service.\n\
                  With no subcommand it starts the TUI."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Globals,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The 14 persistent flags, accepted before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct Globals {
    /// Challenge service backend URL (gRPC Gateway)
    #[arg(
        long,
        global = true,
        default_value = "http://localhost:8000/challenge",
        allow_hyphen_values = true
    )]
    pub backend_url: String,
    /// Authentication mode (mock|password|client)
    #[arg(
        long,
        global = true,
        default_value = "mock",
        allow_hyphen_values = true
    )]
    pub auth_mode: String,
    /// Event handler gRPC address (for event simulation; "" = none)
    #[arg(
        long,
        global = true,
        default_value = "localhost:6566",
        allow_hyphen_values = true
    )]
    pub event_handler_url: String,
    /// User ID for mock mode
    #[arg(
        long,
        global = true,
        default_value = "test-user-123",
        allow_hyphen_values = true
    )]
    pub user_id: String,
    /// AccelByte namespace
    #[arg(
        long,
        global = true,
        default_value = "test",
        allow_hyphen_values = true
    )]
    pub namespace: String,
    /// User email for password mode
    #[arg(long, global = true, default_value = "", allow_hyphen_values = true)]
    pub email: String,
    /// User password for password mode
    #[arg(long, global = true, default_value = "", allow_hyphen_values = true)]
    pub password: String,
    /// OAuth2 client ID (for password or client mode)
    #[arg(long, global = true, default_value = "", allow_hyphen_values = true)]
    pub client_id: String,
    /// OAuth2 client secret (for password or client mode)
    #[arg(long, global = true, default_value = "", allow_hyphen_values = true)]
    pub client_secret: String,
    /// AGS IAM URL (for password or client mode)
    #[arg(
        long,
        global = true,
        default_value = "https://demo.accelbyte.io/iam",
        allow_hyphen_values = true
    )]
    pub iam_url: String,
    /// AGS Platform URL (for reward verification)
    #[arg(
        long,
        global = true,
        default_value = "https://demo.accelbyte.io/platform",
        allow_hyphen_values = true
    )]
    pub platform_url: String,
    /// Admin OAuth2 client ID (optional - for AGS Platform verification)
    #[arg(long, global = true, default_value = "", allow_hyphen_values = true)]
    pub admin_client_id: String,
    /// Admin OAuth2 client secret (optional - for AGS Platform verification)
    #[arg(long, global = true, default_value = "", allow_hyphen_values = true)]
    pub admin_client_secret: String,
    /// Output format (json|table|text)
    #[arg(
        long,
        global = true,
        default_value = "json",
        allow_hyphen_values = true
    )]
    pub format: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List all challenges with progress
    ListChallenges {
        /// Show only active goals (M3 feature)
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        active_only: Option<String>,
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// Get specific challenge details
    GetChallenge {
        #[arg(value_name = "challenge-id")]
        args: Vec<String>,
    },
    /// Trigger gameplay events
    #[command(subcommand_required = true, arg_required_else_help = true)]
    TriggerEvent {
        #[command(subcommand)]
        event: Option<TriggerEvent>,
    },
    /// Claim reward for completed goal
    ClaimReward {
        #[arg(value_name = "challenge-id> <goal-id")]
        args: Vec<String>,
    },
    /// Continuously monitor challenges
    Watch {
        /// Refresh interval
        #[arg(long, allow_hyphen_values = true)]
        interval: Option<String>,
        /// Watch specific challenge only
        #[arg(long, allow_hyphen_values = true, default_value = "")]
        challenge: String,
        /// Print once and exit
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        once: Option<String>,
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// Initialize player goals with default assignments
    InitializePlayer {
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// Activate or deactivate a goal
    SetGoalActive {
        /// Set goal active (true) or inactive (false)
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        active: Option<String>,
        #[arg(value_name = "challenge-id> <goal-id")]
        args: Vec<String>,
    },
    /// Batch select multiple goals
    BatchSelect {
        /// Comma-separated goal IDs (required)
        #[arg(long, allow_hyphen_values = true)]
        goal_ids: Option<String>,
        /// Deactivate existing goals first
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        replace_existing: Option<String>,
        #[arg(value_name = "challenge-id")]
        args: Vec<String>,
    },
    /// Randomly select N goals
    RandomSelect {
        /// Number of goals to select
        #[arg(long, allow_hyphen_values = true)]
        count: Option<String>,
        /// Deactivate existing goals first
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        replace_existing: Option<String>,
        /// Exclude already-active goals
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        exclude_active: Option<String>,
        #[arg(value_name = "challenge-id")]
        args: Vec<String>,
    },
    /// Get rotation status for a challenge
    GetRotationStatus {
        #[arg(value_name = "challenge-id")]
        args: Vec<String>,
    },
    /// Verify item entitlement for user
    VerifyEntitlement {
        /// Item ID to query (required)
        #[arg(long, allow_hyphen_values = true)]
        item_id: Option<String>,
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// Verify wallet balance for user
    VerifyWallet {
        /// Currency code to query (required)
        #[arg(long, allow_hyphen_values = true)]
        currency: Option<String>,
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// List all user entitlements
    ListInventory {
        /// Filter by status (ACTIVE, INACTIVE)
        #[arg(long, allow_hyphen_values = true, default_value = "")]
        status: String,
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// List all user wallets
    ListWallets {
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// Launch interactive TUI (default)
    Tui {
        #[arg(hide = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TriggerEvent {
    /// Trigger user login event
    Login {
        #[arg(hide = true)]
        args: Vec<String>,
    },
    /// Trigger statistic update event
    StatUpdate {
        /// Statistic code (required)
        #[arg(long, allow_hyphen_values = true)]
        stat_code: Option<String>,
        /// New statistic value (required)
        #[arg(long, allow_hyphen_values = true)]
        value: Option<String>,
        /// Increment value (for baseline calculation in relative progress mode)
        #[arg(long, allow_hyphen_values = true)]
        inc: Option<String>,
        #[arg(hide = true)]
        args: Vec<String>,
    },
}

/// A usage error or a failed command: printed as `Error: <msg>`, exit 1.
#[derive(Debug)]
pub struct CliError(pub String);

impl<T: Into<String>> From<T> for CliError {
    fn from(s: T) -> Self {
        CliError(s.into())
    }
}

/// cobra's `ExactArgs(n)`.
pub fn exact_args(args: &[String], n: usize) -> Result<(), CliError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("accepts {n} arg(s), received {}", args.len()).into())
    }
}

/// cobra's required-flag check: every flag in `flags` must have been given (even empty).
pub fn required(flags: &[(&str, bool)]) -> Result<(), CliError> {
    let missing: Vec<String> = flags
        .iter()
        .filter(|(_, set)| !set)
        .map(|(name, _)| format!("\"{name}\""))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("required flag(s) {} not set", missing.join(", ")).into())
    }
}

fn invalid(value: &str, flag: &str, why: String) -> CliError {
    CliError(format!(
        "invalid argument \"{value}\" for \"--{flag}\" flag: {why}"
    ))
}

/// A bool flag's value as Go's `strconv.ParseBool` reads it; absent = `default`.
pub fn go_bool(value: Option<&str>, flag: &str, default: bool) -> Result<bool, CliError> {
    match value {
        None => Ok(default),
        Some(v) => parse_go_bool(v).ok_or_else(|| {
            invalid(
                v,
                flag,
                format!("strconv.ParseBool: parsing \"{v}\": invalid syntax"),
            )
        }),
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// An int flag's value as pflag reads it (`strconv.ParseInt(s, 0, 64)`); absent = `default`.
pub fn go_int(value: Option<&str>, flag: &str, default: i64) -> Result<i64, CliError> {
    match value {
        None => Ok(default),
        Some(v) => parse_go_int(v)
            .map_err(|why| invalid(v, flag, format!("strconv.ParseInt: parsing \"{v}\": {why}"))),
    }
}

/// `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b`/`0` prefixes, underscores
/// between digits when a prefix is used.
pub fn parse_go_int(s: &str) -> Result<i64, &'static str> {
    const SYNTAX: &str = "invalid syntax";
    const RANGE: &str = "value out of range";
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return Err(SYNTAX);
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower, false)
    };
    if digits.contains('_') {
        // Go allows `_` only with a base prefix (which counts as a digit), and only
        // between digits.
        if !prefixed || digits.ends_with('_') || digits.contains("__") {
            return Err(SYNTAX);
        }
    }
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(SYNTAX);
    }
    let magnitude = u128::from_str_radix(&digits, radix).map_err(|_| RANGE)?;
    let limit = if neg { 1u128 << 63 } else { (1u128 << 63) - 1 };
    if magnitude > limit {
        return Err(RANGE);
    }
    Ok(if neg {
        (magnitude as i128).wrapping_neg() as i64
    } else {
        magnitude as i64
    })
}

/// A duration flag's value as Go's `time.ParseDuration` reads it; absent = `default`.
pub fn go_duration(
    value: Option<&str>,
    flag: &str,
    default: Duration,
) -> Result<Duration, CliError> {
    match value {
        None => Ok(default),
        Some(v) => parse_go_duration(v).map_err(|why| invalid(v, flag, why)),
    }
}

/// Go's `time.ParseDuration` (`1h2m3.5s`, `500ms`, `-1s`, `0`). Negative durations come
/// back as an error here: nothing in the CLI can use one.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration \"{s}\"");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        let nanos = match unit {
            "ns" => 1e0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration \"{s}\"")),
            u => return Err(format!("time: unknown unit \"{u}\" in duration \"{s}\"")),
        };
        total += value * nanos;
        rest = &rest[unit_end..];
    }
    if total > i64::MAX as f64 {
        return Err(bad());
    }
    if neg && total > 0.0 {
        return Err("negative durations are not supported".into());
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_bool_accepts_exactly_parsebool_values() {
        for v in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(v), Some(true), "{v}");
        }
        for v in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(v), Some(false), "{v}");
        }
        for v in ["yes", "no", "tRUE", "", "2"] {
            assert_eq!(parse_go_bool(v), None, "{v}");
        }
        let e = go_bool(Some("yes"), "active", true).unwrap_err();
        assert_eq!(
            e.0,
            "invalid argument \"yes\" for \"--active\" flag: strconv.ParseBool: parsing \"yes\": invalid syntax"
        );
    }

    #[test]
    fn go_int_reads_like_parseint_base_zero() {
        assert_eq!(parse_go_int("-10"), Ok(-10));
        assert_eq!(parse_go_int("+7"), Ok(7));
        assert_eq!(parse_go_int("2147483647"), Ok(2147483647));
        assert_eq!(parse_go_int("0x1f"), Ok(31));
        assert_eq!(parse_go_int("010"), Ok(8));
        assert_eq!(parse_go_int("0b101"), Ok(5));
        assert_eq!(parse_go_int("0x_1_0"), Ok(16));
        assert_eq!(parse_go_int("0"), Ok(0));
        assert_eq!(parse_go_int("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(
            parse_go_int("9223372036854775808"),
            Err("value out of range")
        );
        assert_eq!(parse_go_int("1_000"), Err("invalid syntax"));
        assert_eq!(parse_go_int("abc"), Err("invalid syntax"));
        assert_eq!(parse_go_int(""), Err("invalid syntax"));
        assert_eq!(parse_go_int("-"), Err("invalid syntax"));
        assert_eq!(parse_go_int("09"), Err("invalid syntax"));
        let e = go_int(Some("abc"), "count", 3).unwrap_err();
        assert_eq!(
            e.0,
            "invalid argument \"abc\" for \"--count\" flag: strconv.ParseInt: parsing \"abc\": invalid syntax"
        );
    }

    #[test]
    fn go_duration_reads_like_parseduration() {
        assert_eq!(parse_go_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("5").unwrap_err().contains("missing unit"));
        assert!(
            parse_go_duration("5x")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("s").is_err());
    }

    #[test]
    fn arity_and_required_messages_are_cobras() {
        assert_eq!(
            exact_args(&["a".into()], 2).unwrap_err().0,
            "accepts 2 arg(s), received 1"
        );
        assert_eq!(
            required(&[("stat-code", false), ("value", false)])
                .unwrap_err()
                .0,
            "required flag(s) \"stat-code\", \"value\" not set"
        );
        assert!(required(&[("value", true)]).is_ok());
    }
}
