//! `challenges.json`: the raw serde model ([`raw`]), the resolved, validated model
//! ([`model`]) both binaries use, and the loader/validator ([`loader`]).

pub mod diff;
pub mod loader;
pub mod model;
pub mod raw;
mod validate;

pub use loader::{ConfigError, load_from_path, parse_and_validate};
pub use model::{
    Challenge, ChallengeConfig, Criterion, EventSource, Goal, GoalRef, Groups, OnExpiry, Operator,
    Part, ProgressMode, Repeat, Requirement, Reward, RewardType, Rotation, Schedule,
    format_duration, parse_duration,
};
