-- Trials run from the owner's terminal (`canrun trial`). They are not part of the game: they settle no
-- prediction, hold no queue place and are not listed by /trials. They are real measurements of this host all the
-- same, so the speed estimator calibrates on them beside the bot's own trials (bot/services/speed.py).
CREATE TABLE IF NOT EXISTS terminal_trials (
    id INTEGER PRIMARY KEY,
    repo_id TEXT NOT NULL,
    revision TEXT,                 -- as asked; NULL: the default branch
    result TEXT NOT NULL,          -- the worker's result object (device, tokens/s, ...), JSON
    finished_at REAL NOT NULL
);
