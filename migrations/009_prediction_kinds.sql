-- Calibration by kind (/mystats): the gate a model tests (core/failure_kinds.py), from canrun's verdict and memory
-- fit when it forecast the model, and copied onto the group's scoring predictions when the group settles, so
-- /mystats reads it from its covering index. NULL where canrun made no forecast (or before this migration).
ALTER TABLE canrun_forecasts ADD COLUMN kind TEXT;
ALTER TABLE predictions ADD COLUMN kind TEXT;
DROP INDEX predictions_member;
CREATE INDEX predictions_member ON predictions
    (guild_id, user_id, status, settled_at, id, will_load, confidence, outcome, points, relative_points, season_id,
     vs_canrun, kind);
