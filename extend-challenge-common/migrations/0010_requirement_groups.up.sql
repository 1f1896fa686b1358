-- Requirement groups (CONTRACT §8): each requirement's progress and relative baseline, for
-- goals with requirementGroups, as text `value/baseline,value/baseline,…` (an empty field
-- is "none"; `progress` keeps showing the first requirement). NULL for every other goal.
-- Text, not int[][]: the flush's set-based UPDATE unnests one value per row.
ALTER TABLE user_goal_progress ADD COLUMN req_state TEXT NULL;
