-- "Loads but broken": after its generation a trial measures the model's perplexity on a fixed English paragraph
-- and the share of its generated tokens that decode to printable text (bot/core/output_check.py). load() still
-- succeeded: `loaded` stays what settles predictions.
ALTER TABLE trials ADD COLUMN perplexity REAL;         -- NULL: not measured, or not a finite number
ALTER TABLE trials ADD COLUMN printable_share REAL;    -- 0..1; NULL: no generated token to judge
ALTER TABLE trials ADD COLUMN looks_broken INTEGER CHECK (looks_broken IN (0, 1));  -- NULL: nothing to judge by
