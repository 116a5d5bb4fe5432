"""`canrun bot` as the Mac's owner runs it: a real process, configured to talk to the fake Discord,
answering /canrun, logging to its rotating file, and shutting down cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import seed_store
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.threaded import LoopThread

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake_discord():
    loop = LoopThread()
    fake = asyncio.run_coroutine_threadsafe(FakeDiscord().start(), loop.loop).result()
    yield fake, loop
    asyncio.run_coroutine_threadsafe(fake.stop(), loop.loop).result()
    loop.close()


async def test_bot_process_answers_and_stops_on_sigterm(tmp_path, fake_discord, zoo_hub, github, capability_table):
    fake, loop = fake_discord
    await seed_store(tmp_path / "canrun.sqlite3", capability_table)
    (tmp_path / "config.toml").write_text(
        f'[hub]\nendpoint = "{zoo_hub.endpoint}"\n[store]\npath = "canrun.sqlite3"\n'
        f'[suggestions]\ngithub_api = "{github.url}"\n'
        f'[discord]\nguild_ids = [{fake.guild_ids[0]}]\napi_base = "{fake.url}/api/v10"\n'
        f'gateway_url = "{fake.gateway_url}"\n[logging]\nfile = "logs/canrun.log"\n'
    )
    env = {**os.environ, "DISCORD_TOKEN": "fake-token", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "bot", "bot", "--config", str(tmp_path / "config.toml")],
                            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        await loop.run(fake.wait_ready(timeout=30))
        await loop.run(fake.wait_for_request("PUT", "/commands", timeout=30))
        interaction = await loop.run(fake.send_slash_command("canrun", {"repo": "mlx-community/Qwen3-0.6B-4bit"}))
        edit = await loop.run(fake.wait_for_request(
            "PATCH", f"{interaction.token}/messages/@original",
            predicate=lambda r: "Looking for" not in json.dumps(r.json), timeout=30))
        assert edit.json["embeds"][0]["title"] == "✅ Loads in mlx-lm"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    log = (tmp_path / "logs/canrun.log").read_text()
    assert "SIGTERM received" in log and "closed cleanly" in log
    assert "Traceback" not in err.decode()
