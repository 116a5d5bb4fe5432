-- The standings and each member's tallies follow every change of a prediction, kept by the database itself.
--
-- Before, every settlement recomputed its members' standings from their whole history: a round played by the
-- most active members cost a quarter of a second, and /mystats read a busy member's thousands of predictions
-- again for each call. These triggers add or take out the one prediction that changed, so a settlement costs
-- the same whoever plays, and /mystats reads a few rows. They follow updates: the service inserts every
-- prediction open and settles it by an UPDATE, and never deletes one nor moves it to another member or guild
-- (migration 005). After a write that does otherwise (a bulk import of settled predictions, a fix by hand, an
-- INSERT OR REPLACE), call rebuild_standings, which recomputes everything from the predictions.

-- Beside the totals: how many predictions have a vs-canrun score; the streaks (NULL: stale, after a change out of
-- settlement order; the service reads them again from the history of the members it touched, before it commits)
-- and the last scoring prediction, in settlement order (settled_at, id), that they have counted.
ALTER TABLE standings ADD COLUMN vs_canrun_settled INTEGER NOT NULL DEFAULT 0;  -- predictions with vs_canrun
ALTER TABLE standings ADD COLUMN current_streak INTEGER;
ALTER TABLE standings ADD COLUMN best_streak INTEGER;
ALTER TABLE standings ADD COLUMN last_settled_at REAL;
ALTER TABLE standings ADD COLUMN last_id INTEGER;
UPDATE standings SET vs_canrun_settled = (
    SELECT COUNT(p.vs_canrun) FROM predictions p WHERE p.guild_id = standings.guild_id
    AND p.user_id = standings.user_id AND p.status = 'settled' AND p.points IS NOT NULL
    AND (standings.season_id = 0 OR p.season_id = standings.season_id));
CREATE INDEX standings_stale_streaks ON standings (guild_id, user_id) WHERE current_streak IS NULL;
-- The streaks of the members already there: each run of right predictions starts after a wrong one (run
-- numbers count the wrong ones so far, in settlement order); the current streak is the length of the run that
-- holds the member's last prediction (joined, not looked up per member: that would be quadratic).
WITH scoring AS (
    SELECT guild_id, user_id, 0 AS season_id, will_load = outcome AS ok, settled_at, id FROM predictions
    WHERE status = 'settled' AND points IS NOT NULL
    UNION ALL
    SELECT guild_id, user_id, season_id, will_load = outcome, settled_at, id FROM predictions
    WHERE status = 'settled' AND points IS NOT NULL AND season_id IS NOT NULL
), numbered AS (
    SELECT *, SUM(1 - ok) OVER w AS run, ROW_NUMBER() OVER (
           PARTITION BY guild_id, user_id, season_id ORDER BY settled_at DESC, id DESC) AS from_last
    FROM scoring WINDOW w AS (PARTITION BY guild_id, user_id, season_id ORDER BY settled_at, id)
), runs AS (
    SELECT guild_id, user_id, season_id, run, SUM(ok) AS length FROM numbered
    GROUP BY guild_id, user_id, season_id, run
), members AS (
    SELECT guild_id, user_id, season_id, MAX(length) AS best FROM runs GROUP BY guild_id, user_id, season_id
)
UPDATE standings SET current_streak = l.length, best_streak = m.best, last_settled_at = n.settled_at,
                     last_id = n.id
FROM members m JOIN numbered n ON n.guild_id = m.guild_id AND n.user_id = m.user_id
                                  AND n.season_id = m.season_id AND n.from_last = 1
               JOIN runs l ON l.guild_id = n.guild_id AND l.user_id = n.user_id AND l.season_id = n.season_id
                              AND l.run = n.run
WHERE standings.guild_id = m.guild_id AND standings.user_id = m.user_id AND standings.season_id = m.season_id;

-- How many settled predictions a member has of each (kind of model, answer, confidence, outcome), all time
-- (season_id 0) and per season: at most a few hundred rows, whatever the member's history. Peeked ones
-- (they never score) count with confidence 0; kind '' is a model of no known kind.
CREATE TABLE member_tallies (
    guild_id    INTEGER NOT NULL,
    season_id   INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    will_load   INTEGER NOT NULL,
    outcome     INTEGER NOT NULL,
    confidence  INTEGER NOT NULL,
    n           INTEGER NOT NULL CHECK (n > 0),
    PRIMARY KEY (guild_id, user_id, season_id, kind, will_load, outcome, confidence)
) WITHOUT ROWID;
INSERT INTO member_tallies
SELECT guild_id, 0, user_id, COALESCE(kind, ''), will_load, outcome,
       CASE WHEN points IS NULL THEN 0 ELSE confidence END AS conf, COUNT(*)
FROM predictions WHERE status = 'settled' GROUP BY guild_id, user_id, COALESCE(kind, ''), will_load, outcome, conf;
INSERT INTO member_tallies
SELECT guild_id, season_id, user_id, COALESCE(kind, ''), will_load, outcome,
       CASE WHEN points IS NULL THEN 0 ELSE confidence END AS conf, COUNT(*)
FROM predictions WHERE status = 'settled' AND season_id IS NOT NULL
GROUP BY guild_id, user_id, season_id, COALESCE(kind, ''), will_load, outcome, conf;

-- The common change: the group's relative points and canrun's comparison set after the settlement. Same place in
-- settlement order, same correctness: only the sums move.
CREATE TRIGGER standings_on_rescore AFTER UPDATE OF status, points, relative_points, vs_canrun, will_load, outcome,
    settled_at, season_id ON predictions
WHEN OLD.status = 'settled' AND OLD.points IS NOT NULL AND NEW.status = 'settled' AND NEW.points IS NOT NULL
     AND NEW.settled_at = OLD.settled_at AND NEW.season_id IS OLD.season_id
     AND (NEW.will_load = NEW.outcome) = (OLD.will_load = OLD.outcome)
BEGIN
    UPDATE standings SET
        points = ROUND(points - OLD.points + NEW.points, 2),
        relative_points = ROUND(relative_points - COALESCE(OLD.relative_points, 0)
                                + COALESCE(NEW.relative_points, 0), 3),
        vs_canrun = ROUND(vs_canrun - COALESCE(OLD.vs_canrun, 0) + COALESCE(NEW.vs_canrun, 0), 2),
        vs_canrun_settled = vs_canrun_settled - (OLD.vs_canrun IS NOT NULL) + (NEW.vs_canrun IS NOT NULL)
    WHERE guild_id = OLD.guild_id AND user_id = OLD.user_id AND season_id IN (0, OLD.season_id);
END;

-- Anything else (settled, re-settled, voided): the old contribution out, the new one in. A scoring prediction
-- (settled, not peeked) counts in its member's standings, all time and in its season; the streaks go on with one
-- settled after the last one they counted, and anything else makes them stale.
CREATE TRIGGER standings_on_update AFTER UPDATE OF status, points, relative_points, vs_canrun, will_load, outcome,
    settled_at, season_id ON predictions
WHEN (OLD.status = 'settled' AND OLD.points IS NOT NULL OR NEW.status = 'settled' AND NEW.points IS NOT NULL)
     AND NOT (OLD.status = 'settled' AND OLD.points IS NOT NULL AND NEW.status = 'settled' AND NEW.points IS NOT NULL
              AND NEW.settled_at = OLD.settled_at AND NEW.season_id IS OLD.season_id
     AND (NEW.will_load = NEW.outcome) = (OLD.will_load = OLD.outcome))
BEGIN
    DELETE FROM standings WHERE OLD.status = 'settled' AND OLD.points IS NOT NULL
      AND guild_id = OLD.guild_id AND user_id = OLD.user_id AND season_id IN (0, OLD.season_id) AND settled = 1;
    UPDATE standings SET
        points = ROUND(points - OLD.points, 2),
        relative_points = ROUND(relative_points - COALESCE(OLD.relative_points, 0), 3),
        settled = settled - 1,
        correct = correct - (OLD.will_load = OLD.outcome),
        vs_canrun = ROUND(vs_canrun - COALESCE(OLD.vs_canrun, 0), 2),
        vs_canrun_settled = vs_canrun_settled - (OLD.vs_canrun IS NOT NULL),
        current_streak = NULL,
        best_streak = NULL,
        -- the latest one left: when the total was reached is the latest of those still in (NEW included)
        reached_at = CASE WHEN OLD.settled_at < reached_at THEN reached_at ELSE COALESCE(
            (SELECT MAX(p.settled_at) FROM predictions p WHERE p.guild_id = OLD.guild_id AND p.user_id = OLD.user_id
             AND p.status = 'settled' AND p.points IS NOT NULL
             AND (standings.season_id = 0 OR p.season_id = standings.season_id)),
            reached_at) END
    WHERE OLD.status = 'settled' AND OLD.points IS NOT NULL
      AND guild_id = OLD.guild_id AND user_id = OLD.user_id AND season_id IN (0, OLD.season_id);
    INSERT INTO standings (guild_id, season_id, user_id, points, relative_points, settled, correct, reached_at,
                           vs_canrun, vs_canrun_settled, current_streak, best_streak, last_settled_at, last_id)
    SELECT NEW.guild_id, scope.season_id, NEW.user_id, NEW.points, COALESCE(NEW.relative_points, 0), 1,
           NEW.will_load = NEW.outcome, NEW.settled_at, COALESCE(NEW.vs_canrun, 0), NEW.vs_canrun IS NOT NULL,
           NEW.will_load = NEW.outcome, NEW.will_load = NEW.outcome, NEW.settled_at, NEW.id
    FROM (SELECT 0 AS season_id UNION ALL SELECT NEW.season_id WHERE NEW.season_id IS NOT NULL) AS scope
    WHERE NEW.status = 'settled' AND NEW.points IS NOT NULL
    ON CONFLICT (guild_id, user_id, season_id) DO UPDATE SET
        points = ROUND(points + excluded.points, 2),
        relative_points = ROUND(relative_points + excluded.relative_points, 3),
        settled = settled + 1,
        correct = correct + excluded.correct,
        reached_at = MAX(reached_at, excluded.reached_at),
        vs_canrun = ROUND(vs_canrun + excluded.vs_canrun, 2),
        vs_canrun_settled = vs_canrun_settled + excluded.vs_canrun_settled,
        -- after the last one counted: the streaks go on (NULL, stale, stays NULL); before it: stale
        current_streak = CASE WHEN best_streak IS NOT NULL
                                   AND (excluded.last_settled_at, excluded.last_id) > (last_settled_at, last_id)
                              THEN CASE WHEN excluded.correct THEN current_streak + 1 ELSE 0 END END,
        best_streak = CASE WHEN (excluded.last_settled_at, excluded.last_id) > (last_settled_at, last_id)
                           THEN MAX(best_streak, CASE WHEN excluded.correct THEN current_streak + 1 ELSE 0 END) END,
        last_settled_at = MAX(last_settled_at, excluded.last_settled_at),
        last_id = CASE WHEN (excluded.last_settled_at, excluded.last_id) > (last_settled_at, last_id)
                       THEN excluded.last_id ELSE last_id END;
END;

-- Tallies: every settled prediction, peeked ones too, under its kind, answer, confidence and outcome.
CREATE TRIGGER tallies_on_update AFTER UPDATE OF status, points, kind, will_load, outcome, confidence, season_id
    ON predictions
WHEN (OLD.status = 'settled' OR NEW.status = 'settled') AND (OLD.status IS NOT NEW.status
     OR OLD.season_id IS NOT NEW.season_id OR OLD.kind IS NOT NEW.kind OR OLD.will_load IS NOT NEW.will_load
     OR OLD.outcome IS NOT NEW.outcome OR OLD.confidence IS NOT NEW.confidence
     OR (OLD.points IS NULL) IS NOT (NEW.points IS NULL))
BEGIN
    DELETE FROM member_tallies WHERE OLD.status = 'settled'
      AND guild_id = OLD.guild_id AND user_id = OLD.user_id AND season_id IN (0, OLD.season_id)
      AND kind = COALESCE(OLD.kind, '') AND will_load = OLD.will_load AND outcome = OLD.outcome
      AND confidence = CASE WHEN OLD.points IS NULL THEN 0 ELSE OLD.confidence END AND n = 1;
    UPDATE member_tallies SET n = n - 1 WHERE OLD.status = 'settled'
      AND guild_id = OLD.guild_id AND user_id = OLD.user_id AND season_id IN (0, OLD.season_id)
      AND kind = COALESCE(OLD.kind, '') AND will_load = OLD.will_load AND outcome = OLD.outcome
      AND confidence = CASE WHEN OLD.points IS NULL THEN 0 ELSE OLD.confidence END;
    INSERT INTO member_tallies
    SELECT NEW.guild_id, scope.season_id, NEW.user_id, COALESCE(NEW.kind, ''), NEW.will_load, NEW.outcome,
           CASE WHEN NEW.points IS NULL THEN 0 ELSE NEW.confidence END, 1
    FROM (SELECT 0 AS season_id UNION ALL SELECT NEW.season_id WHERE NEW.season_id IS NOT NULL) AS scope
    WHERE NEW.status = 'settled'
    ON CONFLICT DO UPDATE SET n = n + 1;
END;
