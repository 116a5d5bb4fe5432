-- canrun plays too: its own forecast per group (guild + repo + round, NULL outside rounds), recorded when a round
-- opens or a /predict is placed, hidden until the group settles, scored by the same Brier rule. It never enters
-- the group median and never takes a rank; members get "vs canrun" points beside "vs group median".
CREATE TABLE canrun_forecasts (
    id           INTEGER PRIMARY KEY,
    guild_id     INTEGER NOT NULL,
    repo_id      TEXT NOT NULL,
    round_id     INTEGER REFERENCES rounds (id),
    verdict      TEXT NOT NULL,       -- canrun's verdict when it forecast
    fit          TEXT,                -- its memory fit as the repo is ('fits', 'tight', 'too_large'), if known
    prior        REAL NOT NULL,       -- the verdict's fixed probability (core/canrun_record.py)
    trials       INTEGER NOT NULL,    -- trials of that verdict class it learnt from
    agreed       INTEGER NOT NULL,    -- of them, those that matched the verdict
    p_loads      REAL NOT NULL CHECK (p_loads > 0 AND p_loads < 1),
    status       TEXT NOT NULL CHECK (status IN ('open', 'settled', 'void')),
    created_at   REAL NOT NULL,
    outcome      INTEGER CHECK (outcome IN (0, 1)),
    settled_by   TEXT CHECK (settled_by IN ('trial', 'verdict')),
    settled_at   REAL,
    points       REAL,
    season_id    INTEGER REFERENCES seasons (id),
    resettled    INTEGER NOT NULL DEFAULT 0 CHECK (resettled IN (0, 1)),
    FOREIGN KEY (round_id, repo_id) REFERENCES round_repos (round_id, repo_id),
    CHECK (status != 'settled' OR (settled_at IS NOT NULL AND outcome IS NOT NULL AND points IS NOT NULL))
);
CREATE UNIQUE INDEX canrun_forecasts_group ON canrun_forecasts (guild_id, repo_id, COALESCE(round_id, 0));
CREATE INDEX canrun_forecasts_round ON canrun_forecasts (round_id, repo_id) WHERE round_id IS NOT NULL;

-- canrun's leaderboard row per guild, all time (season_id 0) and per season, kept up to date by every change of
-- its forecasts (derived from canrun_forecasts; it can be rebuilt), as standings are for members.
CREATE TABLE canrun_standings (
    guild_id   INTEGER NOT NULL,
    season_id  INTEGER NOT NULL,  -- 0: all time (not a foreign key)
    points     REAL NOT NULL,     -- rounded to hundredths
    settled    INTEGER NOT NULL,
    correct    INTEGER NOT NULL,  -- its verdict's answer (loads or not) matched the outcome
    PRIMARY KEY (guild_id, season_id)
) WITHOUT ROWID;

-- A member's points minus canrun's in the same group (NULL where canrun made no forecast); /mystats reads it from
-- its covering index.
ALTER TABLE predictions ADD COLUMN vs_canrun REAL;
DROP INDEX predictions_member;
CREATE INDEX predictions_member ON predictions
    (guild_id, user_id, status, settled_at, id, will_load, confidence, outcome, points, relative_points, season_id,
     vs_canrun);

ALTER TABLE standings ADD COLUMN vs_canrun REAL NOT NULL DEFAULT 0;
DROP INDEX standings_rank;
CREATE INDEX standings_rank ON standings
    (guild_id, season_id, points DESC, reached_at, user_id, settled, relative_points, correct, vs_canrun);
