pub mod auth;
pub mod rewards;
