//! Structural checks on the raw configuration (CONTRACT §5): ids, names, lengths,
//! uniqueness, operators, stat codes, reward ids, prerequisites (existence and cycles).
//! The loader checks the enums and numbers while it resolves each goal.
//!
//! Every problem is one line naming the file, the challenge, the goal (for goal problems),
//! the JSON position (so an empty id can still be found) and the field.
//!
//! Choices beyond the contract:
//! - a challenge needs at least one goal (as in the reference);
//! - a `login` goal's `statCode` is not used to route events, so it may be empty;
//! - ids may not contain `/`: they are REST path segments;
//! - ids are limited to 100 characters, the width of the `VARCHAR(100)` columns.

use std::collections::{HashMap, HashSet};

use super::raw::{RawChallenge, RawConfig, RawGoal};

/// Width of the `goal_id` / `challenge_id` columns, in characters.
pub(crate) const MAX_ID_CHARS: usize = crate::store::ID_COLUMN_CHARS;

/// Formats a problem with a goal.
pub(crate) fn goal_problem(
    file: &str,
    ci: usize,
    challenge_id: &str,
    gi: usize,
    goal_id: &str,
    field: &str,
    msg: &str,
) -> String {
    format!(
        "{file}: challenge '{challenge_id}' goal '{goal_id}' (challenges[{ci}].goals[{gi}]): \
         field {field}: {msg}"
    )
}

/// Formats a problem with a challenge itself.
pub(crate) fn challenge_problem(
    file: &str,
    ci: usize,
    challenge_id: &str,
    field: &str,
    msg: &str,
) -> String {
    format!("{file}: challenge '{challenge_id}' (challenges[{ci}]): field {field}: {msg}")
}

/// Appends one line per problem found.
pub(crate) fn check(file: &str, raw: &RawConfig, problems: &mut Vec<String>) {
    if raw.challenges.is_empty() {
        problems.push(format!("{file}: field challenges: no challenges defined"));
        return;
    }

    let mut challenge_seen: HashMap<&str, usize> = HashMap::new();
    // Goal id → (challenge index, goal index) of its first definition.
    let mut goal_seen: HashMap<&str, (usize, usize)> = HashMap::new();

    for (ci, c) in raw.challenges.iter().enumerate() {
        let cid = c.challenge_id.as_str();
        let mut cerr = |field: &str, msg: String| {
            problems.push(challenge_problem(file, ci, cid, field, &msg));
        };
        check_id(cid, "challengeId", &mut cerr);
        if c.name.trim().is_empty() {
            cerr("name", "must not be empty".into());
        }
        if c.goals.is_empty() {
            cerr("goals", "a challenge needs at least one goal".into());
        }
        check_tags(&c.tags, &mut cerr);
        if !cid.is_empty() {
            if let Some(&first) = challenge_seen.get(cid) {
                cerr(
                    "challengeId",
                    format!("duplicate challenge id (first defined at challenges[{first}])"),
                );
            } else {
                challenge_seen.insert(cid, ci);
            }
        }

        for (gi, g) in c.goals.iter().enumerate() {
            let gid = g.goal_id.as_str();
            let mut gerr = |field: &str, msg: String| {
                problems.push(goal_problem(file, ci, cid, gi, gid, field, &msg));
            };
            check_goal(g, &mut gerr);
            check_tags(&g.tags, &mut gerr);
            if !gid.is_empty() {
                if let Some(&(fc, fg)) = goal_seen.get(gid) {
                    gerr(
                        "goalId",
                        format!(
                            "duplicate goal id (first defined in challenge '{}' at \
                             challenges[{fc}].goals[{fg}]); goal ids must be unique across \
                             all challenges",
                            raw.challenges[fc].challenge_id
                        ),
                    );
                } else {
                    goal_seen.insert(gid, (ci, gi));
                }
            }
            for p in &g.prerequisites {
                if !goal_id_exists(raw, p) {
                    gerr(
                        "prerequisites",
                        format!("prerequisite '{p}' does not exist"),
                    );
                }
            }
        }
    }

    check_cycles(file, raw, &goal_seen, problems);
}

fn goal_id_exists(raw: &RawConfig, id: &str) -> bool {
    !id.is_empty()
        && raw
            .challenges
            .iter()
            .flat_map(|c| &c.goals)
            .any(|g| g.goal_id == id)
}

/// Longest tag, in characters.
pub(crate) const MAX_TAG_CHARS: usize = 100;

/// `tags` of a challenge or goal (CONTRACT §8): each non-empty, without a comma (the list
/// takes `tags=a,b`) or control characters, at most [`MAX_TAG_CHARS`]; none twice.
fn check_tags(tags: &[String], err: &mut impl FnMut(&str, String)) {
    for (i, tag) in tags.iter().enumerate() {
        let field = format!("tags[{i}]");
        if tag.trim().is_empty() {
            err(&field, "must not be empty".into());
            continue;
        }
        if tag.contains(',') {
            err(
                &field,
                format!("'{tag}' must not contain ',' (the list takes tags=a,b)"),
            );
        }
        if tag.chars().any(char::is_control) {
            err(&field, "must not contain control characters".into());
        }
        let chars = tag.chars().count();
        if chars > MAX_TAG_CHARS {
            err(
                &field,
                format!("is {chars} characters long; at most {MAX_TAG_CHARS} are allowed"),
            );
        }
        if let Some(first) = tags[..i].iter().position(|t| t == tag) {
            err(
                &field,
                format!("duplicate tag '{tag}' (first at tags[{first}])"),
            );
        }
    }
}

fn check_id(id: &str, field: &str, err: &mut impl FnMut(&str, String)) {
    if id.trim().is_empty() {
        err(field, "must not be empty".into());
        return;
    }
    let chars = id.chars().count();
    if chars > MAX_ID_CHARS {
        err(
            field,
            format!("is {chars} characters long; at most {MAX_ID_CHARS} are allowed"),
        );
    }
    if id.contains('/') {
        err(
            field,
            "must not contain '/' (ids are URL path segments)".into(),
        );
    }
    if id.chars().any(char::is_control) {
        err(field, "must not contain control characters".into());
    }
}

fn check_goal(g: &RawGoal, err: &mut impl FnMut(&str, String)) {
    check_id(&g.goal_id, "goalId", err);
    if g.name.trim().is_empty() {
        err("name", "must not be empty".into());
    }
    // Requirement groups are checked where they are resolved (loader).
    if g.requirement_groups.is_some() {
        return check_rewards(g, err);
    }
    let requirement = g.requirement.clone().unwrap_or_default();
    if requirement.operator != ">=" {
        err(
            "requirement.operator",
            format!(
                "unsupported operator '{}' (only '>=' is supported; requirementGroups take the others)",
                requirement.operator
            ),
        );
    }
    // A login goal is fed by login events whatever its stat code says.
    if g.event_source == "statistic" && requirement.stat_code.trim().is_empty() {
        err(
            "requirement.statCode",
            "must not be empty on a statistic goal".into(),
        );
    }
    check_rewards(g, err);
}

fn check_rewards(g: &RawGoal, err: &mut impl FnMut(&str, String)) {
    match (&g.reward, &g.rewards) {
        (_, Some(list)) => {
            for (i, r) in list.iter().enumerate() {
                if r.reward_id.trim().is_empty() {
                    err(
                        &format!("rewards[{i}].rewardId"),
                        "must not be empty".into(),
                    );
                }
            }
        }
        (Some(r), None) if !r.reward_id.trim().is_empty() => {}
        _ => err("reward.rewardId", "must not be empty".into()),
    }
}

/// Reports every prerequisite cycle once, as the path `a -> b -> a`, on the line of the
/// goal where the walk found it. Only the first definition of a duplicated id takes part.
fn check_cycles(
    file: &str,
    raw: &RawConfig,
    goal_seen: &HashMap<&str, (usize, usize)>,
    problems: &mut Vec<String>,
) {
    let goal_at = |(ci, gi): (usize, usize)| -> (&RawChallenge, &RawGoal) {
        let c = &raw.challenges[ci];
        (c, &c.goals[gi])
    };
    // Walk in config order so the report is stable.
    let mut order: Vec<(&str, (usize, usize))> = goal_seen.iter().map(|(k, v)| (*k, *v)).collect();
    order.sort_by_key(|(_, pos)| *pos);

    let mut done: HashSet<&str> = HashSet::new();
    for (root, _) in &order {
        if done.contains(root) {
            continue;
        }
        // Iterative depth-first walk: (goal id, index of the next prerequisite to visit).
        let mut stack: Vec<(&str, usize)> = vec![(root, 0)];
        let mut on_path: HashSet<&str> = HashSet::from([*root]);
        while let Some(&mut (id, ref mut next)) = stack.last_mut() {
            let (_, g) = goal_at(goal_seen[id]);
            let Some(p) = g.prerequisites.get(*next) else {
                on_path.remove(id);
                done.insert(id);
                stack.pop();
                continue;
            };
            *next += 1;
            let p = p.as_str();
            if !goal_seen.contains_key(p) || done.contains(p) {
                continue;
            }
            if on_path.contains(p) {
                let start = stack
                    .iter()
                    .position(|(s, _)| *s == p)
                    .expect("on the path");
                let mut path: Vec<&str> = stack[start..].iter().map(|(s, _)| *s).collect();
                path.push(p);
                let (ci, gi) = goal_seen[p];
                let (c, _) = goal_at((ci, gi));
                problems.push(goal_problem(
                    file,
                    ci,
                    &c.challenge_id,
                    gi,
                    p,
                    "prerequisites",
                    &format!("prerequisite cycle: {}", path.join(" -> ")),
                ));
                continue;
            }
            on_path.insert(p);
            stack.push((p, 0));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, parse_and_validate};
    use serde_json::{Value, json};

    const FILE: &str = "test/challenges.json";

    fn goal(id: &str) -> Value {
        json!({
            "goalId": id,
            "name": format!("Goal {id}"),
            "description": "",
            "eventSource": "statistic",
            "requirement": {"statCode": "kills", "operator": ">=", "targetValue": 5},
            "reward": {"type": "ITEM", "rewardId": "sword", "quantity": 1},
            "prerequisites": []
        })
    }

    fn challenge(id: &str, goals: Vec<Value>) -> Value {
        json!({"challengeId": id, "name": format!("Challenge {id}"), "goals": goals})
    }

    fn problems(config: Value) -> Vec<String> {
        match parse_and_validate(FILE, &config.to_string()) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid { problems }) => problems,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    /// The config with one goal changed by `edit`, then its problems.
    fn goal_problems(edit: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut g = goal("g1");
        edit(&mut g);
        problems(json!({"challenges": [challenge("c1", vec![goal("g0"), g])]}))
    }

    /// Exactly one problem, naming the file, challenge, goal and field.
    fn assert_one(problems: &[String], challenge: &str, goal: &str, field: &str, text: &str) {
        assert_eq!(problems.len(), 1, "{problems:#?}");
        let p = &problems[0];
        assert!(p.starts_with(FILE), "{p}");
        assert!(p.contains(&format!("challenge '{challenge}'")), "{p}");
        assert!(p.contains(&format!("goal '{goal}'")), "{p}");
        assert!(p.contains(&format!("field {field}:")), "{p}");
        assert!(p.contains(text), "{p}");
    }

    #[test]
    fn a_valid_config_passes() {
        let cfg = parse_and_validate(
            FILE,
            &json!({"challenges": [challenge("c1", vec![goal("g0"), goal("g1")])]}).to_string(),
        )
        .unwrap();
        assert_eq!(cfg.goal_count(), 2);
    }

    #[test]
    fn no_challenges() {
        for cfg in [
            json!({"challenges": []}),
            json!({}),
            json!({"challenge": []}),
        ] {
            let p = problems(cfg);
            assert_eq!(p.len(), 1);
            assert!(
                p[0].starts_with(FILE) && p[0].contains("field challenges:"),
                "{p:?}"
            );
        }
    }

    #[test]
    fn empty_challenge_id_name_and_goals() {
        let p = problems(json!({"challenges": [
            {"challengeId": "", "name": "X", "goals": [goal("g1")]},
            {"challengeId": "c2", "name": " ", "goals": [goal("g2")]},
            {"challengeId": "c3", "name": "Three", "goals": []},
        ]}));
        assert_eq!(p.len(), 3, "{p:#?}");
        assert!(
            p[0].contains("challenge '' (challenges[0]): field challengeId: must not be empty")
        );
        assert!(p[1].contains("challenge 'c2' (challenges[1]): field name:"));
        assert!(p[2].contains("challenge 'c3' (challenges[2]): field goals:"));
    }

    #[test]
    fn duplicate_challenge_ids() {
        let p = problems(json!({"challenges": [
            challenge("c1", vec![goal("g1")]),
            challenge("c1", vec![goal("g2")]),
        ]}));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].contains("challenge 'c1' (challenges[1]): field challengeId: duplicate"));
        assert!(p[0].contains("challenges[0]"));
    }

    #[test]
    fn duplicate_goal_ids_within_and_across_challenges() {
        let p = problems(json!({"challenges": [
            challenge("c1", vec![goal("g1"), goal("g1")]),
            challenge("c2", vec![goal("g1")]),
        ]}));
        assert_eq!(p.len(), 2, "{p:#?}");
        for (line, challenge) in p.iter().zip(["c1", "c2"]) {
            assert!(
                line.contains(&format!("challenge '{challenge}' goal 'g1'")),
                "{line}"
            );
            assert!(line.contains("field goalId: duplicate goal id"), "{line}");
            assert!(line.contains("first defined in challenge 'c1'"), "{line}");
        }
    }

    #[test]
    fn empty_goal_id_and_name() {
        let p = goal_problems(|g| g["goalId"] = json!(""));
        assert_one(&p, "c1", "", "goalId", "must not be empty");
        assert!(p[0].contains("challenges[0].goals[1]"));
        let p = goal_problems(|g| g["name"] = json!(""));
        assert_one(&p, "c1", "g1", "name", "must not be empty");
    }

    #[test]
    fn ids_longer_than_the_column() {
        let long = "x".repeat(101);
        let p = goal_problems(|g| g["goalId"] = json!(long));
        assert_one(&p, "c1", &long, "goalId", "101 characters");
        // 100 characters, multi-byte ones included, fit.
        let fits = "é".repeat(100);
        assert!(goal_problems(|g| g["goalId"] = json!(fits)).is_empty());

        let p = problems(json!({"challenges": [challenge(&long, vec![goal("g1")])]}));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].contains(&format!("challenge '{long}'")) && p[0].contains("field challengeId:")
        );
    }

    #[test]
    fn ids_with_a_slash() {
        let p = goal_problems(|g| g["goalId"] = json!("a/b"));
        assert_one(&p, "c1", "a/b", "goalId", "'/'");
    }

    #[test]
    fn tags_are_kept_and_their_mistakes_named() {
        let mut c = challenge("c1", vec![goal("g0")]);
        c["tags"] = json!(["event", "pvp"]);
        c["goals"][0]["tags"] = json!(["daily"]);
        let cfg = parse_and_validate(FILE, &json!({"challenges": [c]}).to_string()).unwrap();
        assert_eq!(cfg.challenges[0].tags, ["event", "pvp"]);
        assert_eq!(cfg.goal("g0").unwrap().tags, ["daily"]);

        let cases = [
            (json!(["a", ""]), "tags[1]", "must not be empty"),
            (json!([" "]), "tags[0]", "must not be empty"),
            (json!(["a,b"]), "tags[0]", "','"),
            (json!(["a\nb"]), "tags[0]", "control"),
            (json!(["x".repeat(101)]), "tags[0]", "at most 100"),
            (
                json!(["pvp", "pve", "pvp"]),
                "tags[2]",
                "duplicate tag 'pvp' (first at tags[0])",
            ),
        ];
        for (tags, field, text) in cases {
            let p = goal_problems(|g| g["tags"] = tags.clone());
            assert_one(&p, "c1", "g1", field, text);
            let mut c = challenge("c1", vec![goal("g0")]);
            c["tags"] = tags;
            let p = problems(json!({"challenges": [c]}));
            assert_eq!(p.len(), 1, "{p:#?}");
            assert!(
                p[0].starts_with(&format!(
                    "{FILE}: challenge 'c1' (challenges[0]): field {field}: "
                )) && p[0].contains(text),
                "{p:#?}"
            );
        }
        // Not an array of strings: the JSON is refused, naming the file.
        let err = parse_and_validate(
            FILE,
            &json!({"challenges": [{"challengeId": "c", "name": "C", "tags": "pvp",
                                    "goals": [goal("g")]}]})
            .to_string(),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with(FILE), "{err}");
    }

    #[test]
    fn operator_must_be_greater_or_equal() {
        for op in [">", "==", "", "<="] {
            let p = goal_problems(|g| g["requirement"]["operator"] = json!(op));
            assert_one(&p, "c1", "g1", "requirement.operator", "only '>='");
        }
    }

    #[test]
    fn stat_code_required_on_statistic_goals_only() {
        let p = goal_problems(|g| g["requirement"]["statCode"] = json!(""));
        assert_one(&p, "c1", "g1", "requirement.statCode", "must not be empty");
        let p = goal_problems(|g| {
            g["eventSource"] = json!("login");
            g["requirement"]["statCode"] = json!("");
        });
        assert!(p.is_empty(), "{p:#?}");
    }

    #[test]
    fn reward_id_required() {
        let p = goal_problems(|g| g["reward"]["rewardId"] = json!(""));
        assert_one(&p, "c1", "g1", "reward.rewardId", "must not be empty");
    }

    #[test]
    fn unknown_prerequisite() {
        let p = goal_problems(|g| g["prerequisites"] = json!(["g0", "nope"]));
        assert_one(&p, "c1", "g1", "prerequisites", "'nope' does not exist");
        let p = goal_problems(|g| g["prerequisites"] = json!([""]));
        assert_one(&p, "c1", "g1", "prerequisites", "'' does not exist");
    }

    #[test]
    fn prerequisites_may_cross_challenges() {
        let mut g = goal("g2");
        g["prerequisites"] = json!(["g1"]);
        let p = problems(json!({"challenges": [
            challenge("c1", vec![goal("g1")]),
            challenge("c2", vec![g]),
        ]}));
        assert!(p.is_empty(), "{p:#?}");
    }

    #[test]
    fn prerequisite_cycles_are_reported_with_their_path() {
        let with = |id: &str, pre: &[&str]| {
            let mut g = goal(id);
            g["prerequisites"] = json!(pre);
            g
        };
        let p = problems(json!({"challenges": [
            challenge("c1", vec![with("a", &["b"]), with("b", &["c"])]),
            challenge("c2", vec![with("c", &["a"]), with("d", &["a"]), with("self", &["self"])]),
        ]}));
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p[0].contains("challenge 'c1' goal 'a'"), "{}", p[0]);
        assert!(p[0].contains("field prerequisites: prerequisite cycle: a -> b -> c -> a"));
        assert!(p[1].contains("challenge 'c2' goal 'self'"), "{}", p[1]);
        assert!(p[1].contains("prerequisite cycle: self -> self"));
    }

    #[test]
    fn a_diamond_is_not_a_cycle() {
        let with = |id: &str, pre: &[&str]| {
            let mut g = goal(id);
            g["prerequisites"] = json!(pre);
            g
        };
        let p = problems(json!({"challenges": [challenge("c1", vec![
            with("top", &["l", "r"]),
            with("l", &["base"]),
            with("r", &["base"]),
            goal("base"),
        ])]}));
        assert!(p.is_empty(), "{p:#?}");
    }

    type Edit = fn(&mut Value);

    /// CONTRACT §7: `rewards` (1–10, each checked as `reward` is), never with `reward`.
    #[test]
    fn several_rewards_and_their_mistakes() {
        let two = json!([
            {"type": "ITEM", "rewardId": "sword", "quantity": 1},
            {"type": "WALLET", "rewardId": "GOLD", "quantity": 50}
        ]);
        let ok = {
            let mut g = goal("g1");
            g.as_object_mut().unwrap().remove("reward");
            g["rewards"] = two.clone();
            g["autoClaim"] = json!(true);
            g["prerequisites"] = json!(["g0"]);
            parse_and_validate(
                FILE,
                &json!({"challenges": [challenge("c1", vec![goal("g0"), g])]}).to_string(),
            )
            .unwrap()
        };
        let g1 = ok.goal("g1").unwrap();
        assert_eq!(g1.rewards.len(), 2);
        assert_eq!(g1.reward, g1.rewards[0]);
        assert!(g1.auto_claim);
        assert_eq!(g1.auto_claim_wakes, ["g1"]);
        // Completing g0 may unlock g1, an auto-claimed goal.
        assert_eq!(ok.goal("g0").unwrap().auto_claim_wakes, ["g1"]);
        assert!(!ok.goal("g0").unwrap().auto_claim);

        let p = goal_problems(|g| g["rewards"] = two.clone());
        assert_one(
            &p,
            "c1",
            "g1",
            "rewards",
            "either reward or rewards, not both",
        );
        let p = goal_problems(|g| {
            g.as_object_mut().unwrap().remove("reward");
            g["rewards"] = json!([]);
        });
        assert_one(&p, "c1", "g1", "rewards", "1 to 10 rewards, got 0");
        let p = goal_problems(|g| {
            g.as_object_mut().unwrap().remove("reward");
            g["rewards"] = json!(vec![
                json!({"type": "ITEM", "rewardId": "i", "quantity": 1});
                11
            ]);
        });
        assert_one(&p, "c1", "g1", "rewards", "1 to 10 rewards, got 11");
        for (field, bad) in [
            (
                "rewards[1].type",
                json!({"type": "GEM", "rewardId": "x", "quantity": 1}),
            ),
            (
                "rewards[1].quantity",
                json!({"type": "ITEM", "rewardId": "x", "quantity": 0}),
            ),
            (
                "rewards[1].rewardId",
                json!({"type": "ITEM", "rewardId": " ", "quantity": 1}),
            ),
        ] {
            let p = goal_problems(|g| {
                g.as_object_mut().unwrap().remove("reward");
                g["rewards"] = json!([{"type": "ITEM", "rewardId": "i", "quantity": 1}, bad]);
            });
            assert_eq!(p.len(), 1, "{field}: {p:#?}");
            assert!(p[0].contains(&format!("field {field}:")), "{p:#?}");
        }
    }

    /// CONTRACT §8: `repeat`, never with `rotation` (or on a daily goal); `maxTimes` ≥ 0.
    #[test]
    fn repeat_and_its_mistakes() {
        let ok = {
            let mut g = goal("g1");
            g["repeat"] = json!({"maxTimes": 3});
            parse_and_validate(
                FILE,
                &json!({"challenges": [challenge("c1", vec![g])]}).to_string(),
            )
            .unwrap()
        };
        assert_eq!(
            ok.goal("g1").unwrap().repeat,
            Some(crate::config::Repeat { max_times: 3 })
        );
        let p = goal_problems(|g| {
            g["repeat"] = json!({"maxTimes": 2});
            g["rotation"] = json!({"enabled": true, "type": "global", "schedule": "daily"});
        });
        assert_one(&p, "c1", "g1", "repeat", "cannot also rotate");
        let p = goal_problems(|g| {
            g["repeat"] = json!({});
            g["type"] = json!("daily");
        });
        assert_one(&p, "c1", "g1", "repeat", "not allowed");
        let p = goal_problems(|g| g["repeat"] = json!({"maxTimes": -1}));
        assert_one(&p, "c1", "g1", "repeat.maxTimes", "got -1");
        // A disabled rotation is no rotation.
        assert!(
            goal_problems(|g| {
                g["repeat"] = json!({"maxTimes": 2});
                g["rotation"] = json!({"enabled": false, "type": "global", "schedule": "daily"});
            })
            .is_empty()
        );
    }

    /// CONTRACT §8: `requirementGroups` and each of its mistakes, named by field.
    #[test]
    fn requirement_groups_and_their_mistakes() {
        let req = |code: &str, op: &str, target: i64| json!({"statCode": code, "operator": op, "targetValue": target});
        let groups = |g: &mut Value, groups: Value| {
            g.as_object_mut().unwrap().remove("requirement");
            g["requirementGroups"] = groups;
        };
        let ok = goal_problems(|g| {
            groups(
                g,
                json!([{"requirements": [req("kills", ">=", 5), req("deaths", "<", 3)]},
                       {"requirements": [req("wins", ">", 0)]}]),
            )
        });
        assert!(ok.is_empty(), "{ok:#?}");
        let p = goal_problems(|g| {
            g["requirementGroups"] = json!([{"requirements": [req("k", ">=", 1)]}])
        });
        assert_one(
            &p,
            "c1",
            "g1",
            "requirementGroups",
            "either requirement or requirementGroups",
        );
        let p = goal_problems(|g| groups(g, json!([])));
        assert_one(&p, "c1", "g1", "requirementGroups", "at least one group");
        let p = goal_problems(|g| {
            groups(
                g,
                json!([{"requirements": [req("k", ">=", 1)]}, {"requirements": []}]),
            )
        });
        assert_one(
            &p,
            "c1",
            "g1",
            "requirementGroups[1].requirements",
            "at least one requirement",
        );
        let p =
            goal_problems(|g| groups(g, json!([{"requirements": vec![req("k", ">=", 1); 11]}])));
        assert_one(
            &p,
            "c1",
            "g1",
            "requirementGroups",
            "at most 10 requirements in all, got 11",
        );
        let p = goal_problems(|g| groups(g, json!([{"requirements": [req("k", "!=", 1)]}])));
        assert_one(
            &p,
            "c1",
            "g1",
            "requirementGroups[0].requirements[0].operator",
            "unknown operator '!='",
        );
        let p = goal_problems(|g| groups(g, json!([{"requirements": [req("k", ">=", 0)]}])));
        assert_one(
            &p,
            "c1",
            "g1",
            "requirementGroups[0].requirements[0].targetValue",
            "at least 1",
        );
        let p = goal_problems(|g| {
            let mut r = req("k", "<=", 3);
            r["progressMode"] = json!("relative");
            groups(g, json!([{"requirements": [req("a", ">=", 1), r]}]));
        });
        assert_one(
            &p,
            "c1",
            "g1",
            "requirementGroups[0].requirements[1].operator",
            "must be absolute",
        );
        let p = goal_problems(|g| groups(g, json!([{"requirements": [req("", ">=", 1)]}])));
        assert_one(
            &p,
            "c1",
            "g1",
            "requirementGroups[0].requirements[0].statCode",
            "must not be empty",
        );
        // `requirement` keeps `>=` only.
        let p = goal_problems(|g| g["requirement"]["operator"] = json!(">"));
        assert_one(
            &p,
            "c1",
            "g1",
            "requirement.operator",
            "requirementGroups take the others",
        );
    }

    /// CONTRACT §8: `rotation.type: "per_user"` with a `duration`.
    #[test]
    fn per_user_rotation_and_its_mistakes() {
        let rot = |duration: &str| {
            json!({"enabled": true, "type": "per_user", "duration": duration,
                   "onExpiry": {"resetProgress": true, "allowReselection": true}})
        };
        for (text, seconds) in [
            ("90s", 90),
            ("30m", 1_800),
            ("24h", 86_400),
            ("7d", 604_800),
        ] {
            let mut g = goal("g1");
            g["rotation"] = rot(text);
            let cfg = parse_and_validate(
                FILE,
                &json!({"challenges": [challenge("c1", vec![g])]}).to_string(),
            )
            .unwrap();
            let r = cfg.goal("g1").unwrap().rotation.unwrap();
            assert_eq!(
                r.schedule,
                crate::config::Schedule::PerUser { seconds },
                "{text}"
            );
            // Shown in the largest whole unit (24h as 1d), parsing back to the same window.
            assert_eq!(
                crate::config::parse_duration(&r.schedule.describe()),
                Some(seconds)
            );
        }
        for bad in ["", "24", "h", "-1h", "1.5h", "0s", "400d", "3w"] {
            let p = goal_problems(|g| g["rotation"] = rot(bad));
            assert_one(&p, "c1", "g1", "rotation.duration", "bad duration");
        }
        let p = goal_problems(|g| {
            g["rotation"] = rot("24h");
            g["type"] = json!("daily");
        });
        assert_one(
            &p,
            "c1",
            "g1",
            "rotation.type",
            "per_user windows are not allowed",
        );
    }

    #[test]
    fn enum_and_number_errors_name_the_goal_and_field() {
        let cases: [(&str, Edit); 9] = [
            ("eventSource", |g| g["eventSource"] = json!("purchase")),
            ("type", |g| g["type"] = json!("weekly")),
            ("requirement.progressMode", |g| {
                g["requirement"]["progressMode"] = json!("sum")
            }),
            ("requirement.targetValue", |g| {
                g["requirement"]["targetValue"] = json!(0)
            }),
            ("reward.type", |g| g["reward"]["type"] = json!("COUPON")),
            ("reward.quantity", |g| g["reward"]["quantity"] = json!(-1)),
            ("daily", |g| g["daily"] = json!(true)),
            (
                "rotation.type",
                |g| {
                    g["rotation"] =
                        json!({"enabled": true, "type": "per_player", "schedule": "daily"})
                },
            ),
            (
                "rotation.schedule",
                |g| {
                    g["rotation"] = json!({"enabled": true, "type": "global", "schedule": "hourly"})
                },
            ),
        ];
        for (field, edit) in cases {
            let p = goal_problems(edit);
            assert_one(&p, "c1", "g1", field, "");
        }
    }

    #[test]
    fn conflicting_modes_are_an_error() {
        let p = goal_problems(|g| {
            g["type"] = json!("increment");
            g["requirement"]["progressMode"] = json!("relative");
        });
        assert_one(&p, "c1", "g1", "requirement.progressMode", "conflicts");
    }

    #[test]
    fn target_beyond_i32_is_an_error() {
        let p = goal_problems(|g| g["requirement"]["targetValue"] = json!(3_000_000_000_i64));
        assert_one(&p, "c1", "g1", "requirement.targetValue", "positive 32-bit");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut bad = goal("");
        bad["name"] = json!("");
        bad["requirement"]["operator"] = json!(">");
        bad["requirement"]["targetValue"] = json!(0);
        bad["reward"]["rewardId"] = json!("");
        bad["reward"]["type"] = json!("GEM");
        bad["prerequisites"] = json!(["ghost"]);
        let p = problems(json!({"challenges": [
            challenge("c1", vec![bad]),
            {"challengeId": "c1", "name": "", "goals": [goal("ok")]},
        ]}));
        for field in [
            "goalId",
            "name",
            "requirement.operator",
            "requirement.targetValue",
            "reward.rewardId",
            "reward.type",
            "prerequisites",
            "challengeId",
        ] {
            assert!(
                p.iter().any(|l| l.contains(&format!("field {field}:"))),
                "{field} missing from {p:#?}"
            );
        }
        assert_eq!(p.len(), 9, "{p:#?}");
        let err = parse_and_validate(FILE, &json!({"challenges": []}).to_string()).unwrap_err();
        assert!(err.to_string().starts_with(FILE));
    }

    #[test]
    fn invalid_json_names_the_file() {
        let err = parse_and_validate(FILE, "{\"challenges\": [").unwrap_err();
        assert!(matches!(err, ConfigError::Json { .. }));
        assert!(err.to_string().starts_with(FILE));
    }
}
