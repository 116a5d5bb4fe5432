-- Trial loads: the queue and the results. A trial is the ground truth for predictions.
CREATE TABLE trials (
    id            INTEGER PRIMARY KEY,
    repo_id       TEXT NOT NULL,
    revision      TEXT,
    guild_id      INTEGER,
    channel_id    INTEGER,
    requested_by  INTEGER NOT NULL,
    prompt        TEXT NOT NULL,
    max_tokens    INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN
                    ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'expired')),
    phase         TEXT,                 -- last phase reached: download | load | generate
    loaded        INTEGER,              -- did mlx_lm.load() succeed? 1 / 0, NULL when the trial never got to tell
    error         TEXT,
    result        TEXT,                 -- the worker's result as JSON
    verdict       TEXT,                 -- the static verdict when it was queued
    message_id    INTEGER,              -- the channel message that shows its progress, once there is one
    cancelled_by  INTEGER,
    created_at    REAL NOT NULL,
    started_at    REAL,
    finished_at   REAL
);
CREATE INDEX trials_status ON trials (status, id);
CREATE INDEX trials_repo ON trials (repo_id, id);
