import asyncio
import sqlite3

import pytest

from bot.services.store import Migration, MigrationError, Store, discover_migrations


async def test_migrations_apply_once_and_in_order(tmp_path):
    db = tmp_path / "canrun.sqlite3"
    store = await Store.open(db)
    applied = await store.migrate()
    assert [m.version for m in applied] == [m.version for m in discover_migrations()]
    assert await store.migrate() == []  # idempotent
    async with store.conn.execute("PRAGMA journal_mode") as cur:
        assert (await cur.fetchone())[0] == "wal"
    async with store.conn.execute("PRAGMA foreign_keys") as cur:
        assert (await cur.fetchone())[0] == 1
    await store.close()
    # a restart sees the same schema version
    store = await Store.open(db)
    assert await store.migrate() == []
    assert await store.applied_migrations() == [m.version for m in discover_migrations()]
    await store.close()


async def test_failing_migration_is_rolled_back_and_not_recorded(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    good = Migration(1, "good", "CREATE TABLE a (x INTEGER);")
    bad = Migration(2, "bad", "CREATE TABLE b (x INTEGER); INSERT INTO nope VALUES (1);")
    with pytest.raises(MigrationError, match="002_bad"):
        await store.migrate([good, bad])
    assert await store.applied_migrations() == [1]
    async with store.conn.execute("SELECT name FROM sqlite_master WHERE name = 'b'") as cur:
        assert await cur.fetchone() is None  # the half-applied table is gone
    fixed = Migration(2, "bad", "CREATE TABLE b (x INTEGER);")
    assert [m.version for m in await store.migrate([good, fixed])] == [2]
    await store.close()


def test_migration_files_are_well_named():
    ms = discover_migrations()
    assert ms and [m.version for m in ms] == sorted(m.version for m in ms)
    assert ms[0].version == 1


async def test_cache_and_history_survive_a_restart(tmp_path):
    db = tmp_path / "db.sqlite3"
    store = await Store.open(db)
    await store.migrate()
    await store.cache_put("o/n", None, {"repo_id": "o/n"}, 100.0)
    await store.cache_put("o/n", None, {"repo_id": "o/n", "sha": "x"}, 200.0)  # upsert
    await store.capability_table_put("0.1", {"modules": {}})
    await store.record_verdict({"repo": "o/n", "verdict": "loads", "mlx_lm_version": "0.1"}, source="cli")
    await store.close()

    # Another process (plain sqlite3) sees committed data: nothing lives only in memory.
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT count(*) FROM verdict_history").fetchone()[0] == 1

    store = await Store.open(db)
    assert await store.cache_get("o/n", None) == ({"repo_id": "o/n", "sha": "x"}, 200.0)
    assert await store.cache_get("o/n", "dev") is None
    assert await store.capability_table_get("0.1") == {"modules": {}}
    history = await store.verdict_history("o/n")
    assert history[0]["verdict"] == "loads" and history[0]["source"] == "cli"
    await store.close()


async def test_transaction_rolls_back_on_error(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    await store.migrate()
    with pytest.raises(RuntimeError):
        async with store.transaction() as db:
            await db.execute("INSERT INTO hub_cache VALUES ('a/b', '', '{}', 1)")
            raise RuntimeError("boom")
    assert await store.cache_get("a/b", None) is None
    await store.close()


async def test_a_commit_that_fails_leaves_the_store_writable(store):
    # A constraint checked only at COMMIT fails it, and SQLite keeps the transaction open.
    with pytest.raises(sqlite3.IntegrityError):
        async with store.transaction() as db:
            await db.execute("PRAGMA defer_foreign_keys = ON")
            await db.execute("INSERT INTO round_repos (round_id, repo_id, position) VALUES (999, 'o/a', 1)")
    async with store.transaction() as db:  # the next write works, and the failed one left nothing
        await db.execute("INSERT INTO bot_state (key, value, updated_at) VALUES ('after', 'ok', 0)")
    assert (await store.conn.execute_fetchall("SELECT COUNT(*) FROM round_repos"))[0][0] == 0
    assert await store.state_get("after") == "ok"


async def test_a_write_cancelled_while_it_begins_leaves_the_store_writable(store):
    write = asyncio.create_task(store.state_put("first", "x"))
    await asyncio.sleep(0)  # it has asked for BEGIN; cancelled before that returns
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    await store.state_put("second", "y")
    assert await store.state_get("second") == "y"


async def test_a_read_during_another_coroutines_transaction_sees_only_committed_data(store):
    await store.state_put("round", "committed")
    inside, finish = asyncio.Event(), asyncio.Event()

    async def write_then_fail():
        async with store.transaction() as db:
            await db.execute("UPDATE bot_state SET value = 'uncommitted' WHERE key = 'round'")
            await db.execute("INSERT INTO bot_state (key, value, updated_at) VALUES ('ghost', 'uncommitted', 0)")
            inside.set()
            await finish.wait()  # the transaction stays open across this await: other coroutines run meanwhile
            raise RuntimeError("rolled back")

    writer = asyncio.create_task(write_then_fail())
    await inside.wait()
    seen = (await store.state_get("round"), await store.state_get("ghost"), await store.state_items("gh"))
    finish.set()
    with pytest.raises(RuntimeError, match="rolled back"):
        await writer

    assert seen == ("committed", None, [])
    assert (await store.state_get("round"), await store.state_get("ghost")) == ("committed", None)


async def test_a_committed_write_is_read_at_once_and_reads_cannot_write(store):
    await store.state_put("k", "v1")
    assert await store.state_get("k") == "v1"
    await store.state_put("k", "v2")
    assert await store.state_get("k") == "v2"
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await store.conn.execute("DELETE FROM bot_state")
    assert await store.state_get("k") == "v2"


async def test_a_read_sees_the_latest_commit_while_another_read_is_part_way(tmp_path):
    store = await Store.open_migrated(tmp_path / "canrun.sqlite3")
    try:
        for key in ("a", "b"):
            await store.state_put(key, "1")
        # One coroutine is part-way through a read (an open cursor would keep SQLite's reader on that read's
        # snapshot, and every other read with it)...
        held = await store.conn.execute("SELECT key FROM bot_state ORDER BY key")
        assert (await held.fetchone())[0] == "a"
        await store.state_put("c", "1")
        # ... while another reads back what was just written: it sees it, and the first read goes on as it began.
        async with store.conn.execute("SELECT COUNT(*) FROM bot_state") as cur:
            assert (await cur.fetchone())[0] == 3
        assert [row[0] for row in await held.fetchall()] == ["b"]
        assert [row[0] async for row in await store.conn.execute("SELECT key FROM bot_state ORDER BY key")] == \
            ["a", "b", "c"]
    finally:
        await store.close()
