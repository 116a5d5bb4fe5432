-- canrun's record against trials (/canrun-record, `canrun record`): beside `verdict`, the word canrun answered
-- when the trial was queued, what that answer rested on.
ALTER TABLE trials ADD COLUMN verdict_mlx_lm_version TEXT;  -- the mlx-lm the verdict was given with
ALTER TABLE trials ADD COLUMN verdict_checked_by TEXT;      -- 'dry_load' (mlx-lm's own load) or 'static' (the gates)
ALTER TABLE trials ADD COLUMN verdict_sha TEXT;             -- the commit the verdict looked at
-- The record reads every trial that judged load().
CREATE INDEX trials_judged ON trials (finished_at) WHERE loaded IS NOT NULL;
