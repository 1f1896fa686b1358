#!/usr/bin/env python3
"""The M5 load-test catalog that AccelByte's suite generates for its scenario 5
(tests/loadtest/scripts/generate_challenges_loadtest.sh, default 50), rebuilt from its rules
so the bench does not need the suite's script: 10 absolute challenges of 50 goals
(`challenge-001` … `challenge-010`, goal `challenge-NNN-goal-GG`, one stat code per
challenge, the first GOALS_PER_USER goals default-assigned), `daily-challenges` and
`weekly-challenges` of 50 relative goals each, all default-assigned, with global daily /
weekly rotation (reset progress, allow reselection). With 50: 150 default goals per player.

    bench/k6/m5_catalog.py [goals_per_user] > challenges.json
"""
import json
import sys

STATS = ["login_count", "enemy_kills", "games_played", "headshots", "wins"]
TARGET = {"login_count": 1, "enemy_kills": 10, "games_played": 2, "headshots": 5, "wins": 1}
THEMES = ["Daily Login Streak", "Combat Mastery", "Game Participation", "Precision Shooter",
          "Victory Ladder", "Weekend Warrior", "Monthly Marathon", "Achievement Hunter",
          "Skill Builder", "Champion's Path"]


def reward(kind, rid, qty):
    return {"type": kind, "rewardId": rid, "quantity": qty}


def main():
    per_user = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    full, rest = divmod(per_user, 50)
    challenges = []
    for c in range(10):
        cid = f"challenge-{c + 1:03d}"
        stat = STATS[c % 5]
        goals = []
        for g in range(1, 51):
            if g % 10 == 0:
                rw = reward("WALLET", "GEMS", g * 50)
            elif g % 5 == 0:
                rw = reward("ITEM", "LOOTBOX_SILVER", 1)
            else:
                rw = reward("WALLET", "GEMS", g * 10)
            target = g * TARGET[stat]
            goals.append({
                "goalId": f"{cid}-goal-{g:02d}", "name": f"Goal {g}",
                "description": f"Reach {target} {stat} to complete this goal",
                "eventSource": "login" if stat == "login_count" else "statistic",
                "requirement": {"statCode": stat, "operator": ">=", "targetValue": target,
                                "progressMode": "absolute"},
                "reward": rw, "prerequisites": [],
                "defaultAssigned": c < full or (c == full and g <= rest),
            })
        challenges.append({"challengeId": cid, "name": THEMES[c],
                           "description": "Complete goals to earn rewards", "goals": goals})
    for kind, schedule, login_base, mult, item, wallet, wmult, desc in [
        ("daily", "daily", 1, 3, "LOOTBOX_DAILY", "GOLD", 20, "today"),
        ("weekly", "weekly", 3, 15, "LOOTBOX_WEEKLY", "GEMS", 50, "this week"),
    ]:
        goals = []
        for g in range(1, 51):
            stat = ["enemy_kills", "games_played", "headshots", "wins", "login_count"][(g - 1) % 5]
            target = g // 5 + login_base if stat == "login_count" else g * mult
            rw = reward("ITEM", item, 1) if g % 5 == 0 else reward("WALLET", wallet, g * wmult)
            goals.append({
                "goalId": f"{kind}-goal-{g:02d}", "name": f"{kind.title()} Goal {g}",
                "description": f"Reach {target} {stat} {desc}",
                "eventSource": "login" if stat == "login_count" else "statistic",
                "requirement": {"statCode": stat, "operator": ">=", "targetValue": target,
                                "progressMode": "relative"},
                "reward": rw, "prerequisites": [], "defaultAssigned": True,
                "rotation": {"enabled": True, "type": "global", "schedule": schedule,
                             "onExpiry": {"resetProgress": True, "allowReselection": True}},
            })
        challenges.append({"challengeId": f"{kind}-challenges",
                           "name": f"{kind.title()} Challenges",
                           "description": f"{kind.title()} rotating challenges", "goals": goals})
    json.dump({"challenges": challenges}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
