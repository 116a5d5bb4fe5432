"""The SQLite store: WAL, foreign keys, ordered migrations; one connection writes, another reads.

The writer owns every change (aiosqlite runs it on its own thread); transactions are short and serialised by a
lock, so coroutines never interleave inside one. Reads go through `conn`, a second, read-only connection: in WAL
it sees only committed data, so a read that runs while another coroutine's transaction is open (between two of
its awaits) never sees rows that may still be rolled back; each read is fetched whole (SnapshotReader), so it also
sees the latest commit. Inside a transaction, read through the connection `transaction()` yields, which sees that
transaction's own writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import AsyncIterator

import aiosqlite

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


class StoreNotReady(Exception):
    """A command that only reads the store found none, or one older than this canrun's schema."""


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _MIGRATION_NAME.match(path.name)
        if not m:
            raise MigrationError(f"migration file {path.name} is not named NNN_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a number")
    return found


async def _connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so transactions are exactly what we write.
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = aiosqlite.Row
    await conn.execute("PRAGMA foreign_keys=ON")
    await conn.execute("PRAGMA busy_timeout=5000")
    return conn


class _Rows:
    """A read's rows, fetched already: the cursor-like side of SnapshotReader.execute."""

    def __init__(self, rows: list[aiosqlite.Row]):
        self._rows = rows
        self._next = 0

    async def fetchone(self) -> aiosqlite.Row | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    async def fetchall(self) -> list[aiosqlite.Row]:
        rest, self._next = self._rows[self._next:], len(self._rows)
        return rest

    def __aiter__(self) -> _Rows:
        return self

    async def __anext__(self) -> aiosqlite.Row:
        row = await self.fetchone()
        if row is None:
            raise StopAsyncIteration
        return row

    async def close(self) -> None:
        pass


class _Read:
    """One read, run and fetched in a single hop to the connection's thread; awaitable and an async context
    manager, like aiosqlite's execute."""

    def __init__(self, conn: aiosqlite.Connection, sql: str, params: Any):
        self._conn, self._sql, self._params = conn, sql, params

    async def _run(self) -> _Rows:
        return _Rows(list(await self._conn.execute_fetchall(self._sql, self._params)))

    def __await__(self):
        return self._run().__await__()

    async def __aenter__(self) -> _Rows:
        return await self._run()

    async def __aexit__(self, *exc: object) -> None:
        return None


class SnapshotReader:
    """The read-only connection, handing out each read's rows whole. SQLite keeps a connection on one snapshot
    while any statement of it is open; with aiosqlite a cursor stays open between awaits, so one coroutine's
    read part-way through would hold every other coroutine's reads on the data of its start. Fetched in one
    hop, no statement outlives its read, and each read sees the latest commit."""

    def __init__(self, conn: aiosqlite.Connection):
        self._conn = conn

    def execute(self, sql: str, params: Any = ()) -> _Read:
        return _Read(self._conn, sql, params)

    async def execute_fetchall(self, sql: str, params: Any = ()) -> list[aiosqlite.Row]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def close(self) -> None:
        await self._conn.close()


class Store:
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, path: Path):
        self._writer = writer
        # Reads only (query_only): committed data, never another coroutine's open transaction, and the latest.
        self.conn = SnapshotReader(reader)
        self.path = path
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path)
        try:
            await writer.execute("PRAGMA journal_mode=WAL")  # before the reader opens: WAL lets both work at once
            await writer.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a crash loses no committed transaction's integrity
            reader = await _connect(path)
            await reader.execute("PRAGMA query_only=ON")
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader, path)

    @classmethod
    async def open_migrated(cls, path: str | Path) -> Store:
        """Open and bring the schema up to date: what every user of the store but `canrun migrate` wants."""
        store = await cls.open(path)
        try:
            await store.migrate()
        except BaseException:
            await store.close()
            raise
        return store

    @classmethod
    async def open_to_read(cls, path: str | Path) -> Store:
        """An existing store, for a command that only reads it (beside a running bot): never created, never
        migrated. Raises StoreNotReady when there is none at `path` or it predates this canrun's migrations."""
        path = Path(path)
        if not path.is_file():
            raise StoreNotReady(f"there is no database at {path} ([store] path): the bot has not run with this "
                                "configuration yet")
        store = await cls.open(path)
        try:
            pending = await store.pending_migrations()
        except BaseException:
            await store.close()
            raise
        if pending:
            await store.close()
            raise StoreNotReady(f"the database at {path} needs {len(pending)} migration(s) of this canrun: start the "
                                "bot, or run `canrun migrate`, first")
        return store

    async def pending_migrations(self) -> list[Migration]:
        rows = await self.conn.execute_fetchall(
            "SELECT version FROM schema_migrations") if await self._has_migrations_table() else []
        applied = {row[0] for row in rows}
        return [m for m in discover_migrations() if m.version not in applied]

    async def _has_migrations_table(self) -> bool:
        return bool(await self.conn.execute_fetchall(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"))

    async def close(self) -> None:
        try:
            await self.conn.close()
        finally:
            await self._writer.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
                yield self._writer
                await self._writer.execute("COMMIT")
            except BaseException:
                await self._roll_back()
                raise

    async def _roll_back(self) -> None:
        """After a failure anywhere, the BEGIN and the COMMIT included (a deferred constraint, a full disk, a
        cancel while either waited): the connection must not stay inside a transaction, or every later write would
        fail until a restart. Queued after whatever the connection's thread still has to run, so it also undoes a
        BEGIN whose caller was cancelled; shielded, so a second cancel does not stop it."""
        try:
            await asyncio.shield(self._writer.execute("ROLLBACK"))
        except sqlite3.OperationalError:  # no transaction was open: nothing to undo
            pass

    # ---- migrations --------------------------------------------------------------------------

    async def migrate(self, migrations: list[Migration] | None = None) -> list[Migration]:
        """Apply pending migrations in order, each in its own transaction. Returns those applied."""
        migrations = discover_migrations() if migrations is None else migrations
        await self._writer.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        async with self._writer.execute("SELECT version FROM schema_migrations") as cur:
            applied = {row[0] for row in await cur.fetchall()}
        done = []
        for m in sorted(migrations, key=lambda m: m.version):
            if m.version in applied:
                continue
            async with self._write_lock:
                # executescript commits any open transaction first, so the BEGIN/COMMIT live inside the script.
                script = (
                    f"BEGIN IMMEDIATE;\n{m.sql}\n;"
                    f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({m.version}, '{m.name}', {time.time()});\n"
                    "COMMIT;"
                )
                try:
                    await self._writer.executescript(script)
                except Exception as e:
                    if self._writer.in_transaction:
                        await self._writer.execute("ROLLBACK")
                    raise MigrationError(f"migration {m.version:03d}_{m.name} failed: {e}") from e
            log.info("applied migration %03d_%s", m.version, m.name)
            done.append(m)
        return done

    async def applied_migrations(self) -> list[int]:
        async with self.conn.execute("SELECT version FROM schema_migrations ORDER BY version") as cur:
            return [row[0] for row in await cur.fetchall()]

    # ---- hub cache ---------------------------------------------------------------------------

    async def cache_get(self, repo_id: str, revision: str | None) -> tuple[dict[str, Any], float] | None:
        async with self.conn.execute(
            "SELECT payload, fetched_at FROM hub_cache WHERE repo_id = ? AND revision = ?",
            (repo_id, revision or ""),
        ) as cur:
            row = await cur.fetchone()
        return (json.loads(row[0]), row[1]) if row else None

    async def cache_put(self, repo_id: str, revision: str | None, payload: dict[str, Any], fetched_at: float) -> None:
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO hub_cache (repo_id, revision, payload, fetched_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (repo_id, revision) DO UPDATE SET payload = excluded.payload, fetched_at = excluded.fetched_at",
                (repo_id, revision or "", json.dumps(payload), fetched_at),
            )

    # ---- http cache (GitHub and other rate-limited APIs) ---------------------------------------

    async def http_cache_get(self, key: str) -> tuple[Any, float] | None:
        async with self.conn.execute("SELECT payload, fetched_at FROM http_cache WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return (json.loads(row[0]), row[1]) if row else None

    async def http_cache_put(self, key: str, payload: Any, fetched_at: float) -> None:
        async with self.transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO http_cache (key, payload, fetched_at) VALUES (?, ?, ?)",
                (key, json.dumps(payload), fetched_at),
            )

    # ---- bot state ----------------------------------------------------------------------------

    async def state_get(self, key: str) -> str | None:
        async with self.conn.execute("SELECT value FROM bot_state WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def state_put(self, key: str, value: str) -> None:
        async with self.transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO bot_state (key, value, updated_at) VALUES (?, ?, ?)", (key, value, time.time())
            )

    async def state_delete(self, key: str) -> None:
        async with self.transaction() as db:
            await db.execute("DELETE FROM bot_state WHERE key = ?", (key,))

    async def state_items(self, prefix: str) -> list[tuple[str, str]]:
        """(key, value) of every state key starting with `prefix`, in key order."""
        async with self.conn.execute("SELECT key, value FROM bot_state WHERE substr(key, 1, ?) = ? ORDER BY key",
                                     (len(prefix), prefix)) as cur:
            return [(row[0], row[1]) for row in await cur.fetchall()]

    # ---- capability tables -------------------------------------------------------------------

    async def capability_table_get(self, mlx_lm_version: str) -> dict[str, Any] | None:
        async with self.conn.execute(
            "SELECT payload FROM capability_tables WHERE mlx_lm_version = ?", (mlx_lm_version,)
        ) as cur:
            row = await cur.fetchone()
        return json.loads(row[0]) if row else None

    async def capability_table_put(self, mlx_lm_version: str, payload: dict[str, Any]) -> None:
        async with self.transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO capability_tables (mlx_lm_version, payload, probed_at) VALUES (?, ?, ?)",
                (mlx_lm_version, json.dumps(payload), time.time()),
            )

    # ---- trials run from the terminal ----------------------------------------------------------

    async def record_terminal_trial(self, repo_id: str, revision: str | None, result: dict[str, Any]) -> int:
        """A successful `canrun trial`: a measurement of this host, outside the game (see migration 010)."""
        async with self.transaction() as db:
            cur = await db.execute(
                "INSERT INTO terminal_trials (repo_id, revision, result, finished_at) VALUES (?, ?, ?, ?)",
                (repo_id, revision, json.dumps(result), time.time()),
            )
            return cur.lastrowid

    # ---- verdict history ---------------------------------------------------------------------

    async def record_verdict(
        self, verdict: dict[str, Any], *, source: str, guild_id: int | None = None,
        channel_id: int | None = None, user_id: int | None = None,
    ) -> int:
        async with self.transaction() as db:
            cur = await db.execute(
                "INSERT INTO verdict_history (repo_id, revision, sha, verdict, model_type, mlx_lm_version, source,"
                " guild_id, channel_id, user_id, payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    verdict["repo"], verdict.get("revision"), verdict.get("sha"), verdict["verdict"],
                    verdict.get("model_type"), verdict.get("mlx_lm_version") or "", source,
                    guild_id, channel_id, user_id, json.dumps(verdict), time.time(),
                ),
            )
            return cur.lastrowid

    async def update_verdict_payload(self, row_id: int, verdict: dict[str, Any]) -> None:
        """The same verdict, completed (suggestions arrive after it was first shown and recorded)."""
        async with self.transaction() as db:
            await db.execute("UPDATE verdict_history SET payload = ? WHERE id = ?", (json.dumps(verdict), row_id))

    async def recent_verdict(self, repo_id: str, revision: str | None, mlx_lm_version: str,
                             since: float) -> tuple[dict[str, Any], float] | None:
        """The newest verdict for this repo and revision under this mlx-lm, if given after `since`."""
        async with self.conn.execute(
            "SELECT payload, created_at FROM verdict_history WHERE repo_id = ? AND revision IS ? AND mlx_lm_version = ?"
            " AND created_at >= ? ORDER BY id DESC LIMIT 1",
            (repo_id, revision, mlx_lm_version, since),
        ) as cur:
            row = await cur.fetchone()
        return (json.loads(row[0]), row[1]) if row else None

    async def verdict_history(self, repo_id: str, limit: int = 20) -> list[dict[str, Any]]:
        async with self.conn.execute(
            "SELECT payload, created_at, source FROM verdict_history WHERE repo_id = ? ORDER BY id DESC LIMIT ?",
            (repo_id, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [{**json.loads(r[0]), "created_at": r[1], "source": r[2]} for r in rows]
