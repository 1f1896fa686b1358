//! End-to-end scenarios against the real binaries (one test binary, so the suite links
//! once). Each scenario starts its own pair on a fresh database with a fake AGS; see
//! `extend_challenge_e2e` for the harness.

mod auth;
mod buffering;
mod errors;
mod faults;
mod flows;
mod gdpr;
mod goals_rich;
mod live;
mod live_ops;
mod observability;
mod packaging;
mod rewards;
mod rewards_complete;
mod rotation;
mod selection;
mod smoke;
mod support;
mod users;
mod wire;
