//! Cross-goal checks on resolved challenges: ids, names, operators, stat codes,
//! prerequisites (existence and cycles).

use super::model::Challenge;

/// Appends one line per problem found.
pub(crate) fn check(file: &str, challenges: &[Challenge], problems: &mut Vec<String>) {
    let _ = (file, challenges, problems);
}
