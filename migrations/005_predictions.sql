-- The prediction game: members predict whether a repo loads before they check. Rows are never deleted.

-- At most one active season per guild (ended_at IS NULL); a prediction belongs to the season active when it
-- first settled.
CREATE TABLE seasons (
    id          INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    started_at  REAL NOT NULL,
    ended_at    REAL,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE UNIQUE INDEX seasons_one_active ON seasons (guild_id) WHERE ended_at IS NULL;
CREATE UNIQUE INDEX seasons_name ON seasons (guild_id, name);

-- A round: up to 5 repos that a moderator puts to the guild. open -> closed (predictions locked) -> revealed.
CREATE TABLE rounds (
    id           INTEGER PRIMARY KEY,
    guild_id     INTEGER NOT NULL,
    channel_id   INTEGER,
    opened_by    INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('open', 'closed', 'revealed')),
    opened_at    REAL NOT NULL,
    closes_at    REAL,                  -- predictions are refused from then on, even before /round close
    closed_at    REAL,
    revealed_at  REAL
);
-- One round in play per guild, so /round close and /round reveal need no id.
CREATE UNIQUE INDEX rounds_one_in_play ON rounds (guild_id) WHERE status != 'revealed';

CREATE TABLE round_repos (
    round_id     INTEGER NOT NULL REFERENCES rounds (id),
    repo_id      TEXT NOT NULL,
    position     INTEGER NOT NULL CHECK (position BETWEEN 1 AND 5),
    outcome      INTEGER CHECK (outcome IN (0, 1)),          -- did it load? set at reveal
    settled_by   TEXT CHECK (settled_by IN ('trial', 'verdict')),
    void_reason  TEXT,                                       -- set when a moderator voided it
    voided_by    INTEGER,
    voided_at    REAL,
    PRIMARY KEY (round_id, repo_id),
    UNIQUE (round_id, position)                              -- with the CHECK: at most 5 repos per round
);

-- One row per guild + user + repo + round (NULL outside rounds): the live prediction. Its changes are in
-- prediction_history. points is NULL while unsettled, for peeked and for void predictions (they never score).
CREATE TABLE predictions (
    id               INTEGER PRIMARY KEY,
    guild_id         INTEGER NOT NULL,
    user_id          INTEGER NOT NULL,
    repo_id          TEXT NOT NULL,
    round_id         INTEGER REFERENCES rounds (id),
    will_load        INTEGER NOT NULL CHECK (will_load IN (0, 1)),
    confidence       INTEGER NOT NULL CHECK (confidence BETWEEN 50 AND 99),
    status           TEXT NOT NULL CHECK (status IN ('open', 'locked', 'settled', 'void')),
    peeked           INTEGER NOT NULL DEFAULT 0 CHECK (peeked IN (0, 1)),
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,     -- the last change by the member: settlement needs an event after it
    locked_at        REAL,
    outcome          INTEGER CHECK (outcome IN (0, 1)),
    settled_by       TEXT CHECK (settled_by IN ('trial', 'verdict')),
    settled_at       REAL,              -- when the current points were set (a re-settle moves it)
    points           REAL,              -- Brier points, exact hundredths
    relative_points  REAL,              -- points minus the median of its group (same guild, repo and round)
    season_id        INTEGER REFERENCES seasons (id),
    resettled        INTEGER NOT NULL DEFAULT 0 CHECK (resettled IN (0, 1)),
    -- a round prediction must be on one of the round's repos (not checked when round_id is NULL)
    FOREIGN KEY (round_id, repo_id) REFERENCES round_repos (round_id, repo_id),
    CHECK (status != 'settled' OR (settled_at IS NOT NULL AND outcome IS NOT NULL AND settled_by IS NOT NULL)),
    CHECK (points IS NULL OR (status = 'settled' AND NOT peeked))
);
CREATE UNIQUE INDEX predictions_live ON predictions (guild_id, user_id, repo_id, COALESCE(round_id, 0));
CREATE INDEX predictions_repo ON predictions (repo_id, guild_id, status);
CREATE INDEX predictions_round ON predictions (round_id, repo_id) WHERE round_id IS NOT NULL;
-- /mystats and the standings refresh read a member's settled predictions from this index alone (covering).
CREATE INDEX predictions_member ON predictions
    (guild_id, user_id, status, settled_at, id, will_load, confidence, outcome, points, relative_points, season_id);

-- Every change of a prediction: placed, changed, locked, unlocked, settled, confirmed, resettled, voided.
CREATE TABLE prediction_history (
    id             INTEGER PRIMARY KEY,
    prediction_id  INTEGER NOT NULL REFERENCES predictions (id),
    change         TEXT NOT NULL,
    will_load      INTEGER NOT NULL,
    confidence     INTEGER NOT NULL,
    status         TEXT NOT NULL,
    peeked         INTEGER NOT NULL,
    outcome        INTEGER,
    points         REAL,
    at             REAL NOT NULL
);
CREATE INDEX prediction_history_prediction ON prediction_history (prediction_id, id);

-- Repos whose trial is running: new predictions and changes are refused until it ends.
CREATE TABLE repo_locks (
    repo_id    TEXT PRIMARY KEY,
    locked_at  REAL NOT NULL
);

-- Leaderboard totals per member, kept up to date by every settlement (derived from predictions; they can be
-- rebuilt). Aggregating 200,000 predictions per /leaderboard takes 40-100 ms; a page of this index about 1 ms.
CREATE TABLE standings (
    guild_id         INTEGER NOT NULL,
    season_id        INTEGER NOT NULL,  -- 0: all time (not a foreign key)
    user_id          INTEGER NOT NULL,
    points           REAL NOT NULL,     -- rounded to hundredths, so equal totals compare equal
    relative_points  REAL NOT NULL,
    settled          INTEGER NOT NULL,  -- scoring predictions: settled, not peeked
    correct          INTEGER NOT NULL,
    reached_at       REAL NOT NULL,     -- latest settled_at among them: when the member reached this total
    PRIMARY KEY (guild_id, user_id, season_id)    -- a settlement refreshes its members' rows
) WITHOUT ROWID;
-- The leaderboard order; the trailing columns make a page (deep ones too) an index-only scan.
CREATE INDEX standings_rank ON standings
    (guild_id, season_id, points DESC, reached_at, user_id, settled, relative_points, correct);
