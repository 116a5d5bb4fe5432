-- Hub metadata cache: one row per (repo, requested revision). payload is RepoMetadata as JSON, or an
-- access outcome ({"access": "gated"|"not_found", ...}).
CREATE TABLE hub_cache (
    repo_id     TEXT NOT NULL,
    revision    TEXT NOT NULL,          -- '' for the default branch
    payload     TEXT NOT NULL,
    fetched_at  REAL NOT NULL,          -- unix seconds
    PRIMARY KEY (repo_id, revision)
);

-- The capability table of an installed mlx-lm, so a start does not import every model module.
CREATE TABLE capability_tables (
    mlx_lm_version TEXT PRIMARY KEY,
    payload        TEXT NOT NULL,
    probed_at      REAL NOT NULL
);

-- Every verdict canrun gave, from the CLI or Discord.
CREATE TABLE verdict_history (
    id              INTEGER PRIMARY KEY,
    repo_id         TEXT NOT NULL,
    revision        TEXT,
    sha             TEXT,
    verdict         TEXT NOT NULL,
    model_type      TEXT,
    mlx_lm_version  TEXT NOT NULL,
    source          TEXT NOT NULL,      -- 'cli' | 'discord'
    guild_id        INTEGER,
    channel_id      INTEGER,
    user_id         INTEGER,
    payload         TEXT NOT NULL,      -- the full Verdict as JSON
    created_at      REAL NOT NULL
);
CREATE INDEX verdict_history_repo ON verdict_history (repo_id, created_at);
CREATE INDEX verdict_history_user ON verdict_history (user_id, repo_id);
