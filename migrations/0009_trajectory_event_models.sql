-- Models of a trajectory fit whose curves are too short for curvature events (fewer checkpoints
-- than central differences need): their scores are stored, their events are not looked for.

ALTER TABLE trajectory_fits ADD COLUMN models_without_events VARCHAR[];
