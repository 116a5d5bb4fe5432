-- /mystats reads a member's summary instead of walking their settled predictions (thousands, for a busy member):
-- the histogram of their forecasts, their streaks and two counts, all time (season_id 0) and per season. Kept by
-- every settlement beside the standings (bot/services/predictions/summaries.py, whose statement fills it here).
CREATE TABLE member_summaries (
    guild_id         INTEGER NOT NULL,
    season_id        INTEGER NOT NULL,  -- 0: all time (not a foreign key)
    user_id          INTEGER NOT NULL,
    peeked           INTEGER NOT NULL,  -- settled but not scoring (placed after a peek)
    vs_canrun_count  INTEGER NOT NULL,  -- scoring predictions that canrun forecast too
    current_streak   INTEGER NOT NULL,  -- right answers in a row, in settlement order, up to the latest
    best_streak      INTEGER NOT NULL,
    forecasts        TEXT NOT NULL,     -- JSON {"<kind>:<code>": count} of the scoring predictions; kind as in
                                        -- core/failure_kinds.py ('' where not known), code:
                                        -- (will_load * 2 + outcome) * 100 + confidence
    PRIMARY KEY (guild_id, user_id, season_id)
) WITHOUT ROWID;



INSERT INTO member_summaries (guild_id, season_id, user_id, peeked, vs_canrun_count, current_streak, best_streak,
                              forecasts)
WITH settled AS (
    SELECT guild_id, season_id, user_id, points, vs_canrun, settled_at, id, will_load = outcome AS ok,
           COALESCE(kind, '') || ':' || ((will_load * 2 + outcome) * 100 + confidence) AS code
    FROM predictions WHERE status = 'settled'),
scoped AS (  -- each settled prediction counts all time (season 0) and in its season
    SELECT guild_id, 0 AS season, user_id, points, vs_canrun, settled_at, id, ok, code FROM settled
    UNION ALL
    SELECT guild_id, season_id, user_id, points, vs_canrun, settled_at, id, ok, code FROM settled
    WHERE season_id IS NOT NULL),
-- Streaks: each scoring prediction is numbered by the misses up to it, in settlement order; a run of right
-- answers is a group of one number, the current run the last group.
scoring AS (
    SELECT guild_id, season, user_id, ok, code,
           SUM(NOT ok) OVER (PARTITION BY guild_id, season, user_id ORDER BY settled_at, id) AS misses
    FROM scoped WHERE points IS NOT NULL),
runs AS (SELECT guild_id, season, user_id, misses, SUM(ok) AS run FROM scoring GROUP BY guild_id, season, user_id, misses),
best AS (SELECT guild_id, season, user_id, MAX(run) AS best FROM runs GROUP BY guild_id, season, user_id),
current AS (  -- SQLite: the bare column `run` comes from the row holding MAX(misses), the latest run
    SELECT guild_id, season, user_id, MAX(misses), run AS current FROM runs GROUP BY guild_id, season, user_id),
counted AS (SELECT guild_id, season, user_id, code, COUNT(*) AS n FROM scoring GROUP BY guild_id, season, user_id, code),
histograms AS (
    SELECT guild_id, season, user_id, json_group_object(code, n) AS forecasts FROM counted
    GROUP BY guild_id, season, user_id),
members AS (
    SELECT guild_id, season, user_id, COUNT(*) - COUNT(points) AS peeked, COUNT(vs_canrun) AS vs_canrun_count
    FROM scoped GROUP BY guild_id, season, user_id)
SELECT m.guild_id, m.season, m.user_id, m.peeked, m.vs_canrun_count, COALESCE(c.current, 0), COALESCE(b.best, 0),
       COALESCE(h.forecasts, '{}')
FROM members m
LEFT JOIN best b USING (guild_id, season, user_id)
LEFT JOIN current c USING (guild_id, season, user_id)
LEFT JOIN histograms h USING (guild_id, season, user_id)
;
