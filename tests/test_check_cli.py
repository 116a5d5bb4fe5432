"""`canrun check` end to end: the real CLI, the real huggingface_hub client, the fake hub over HTTP."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.cli import main
from bot.services.store import Store
from tests.conftest import seed_store
from tests.fakes.hub_zoo import verdict_cases


@pytest.fixture
def cli(tmp_path, zoo_hub, github, capability_table, monkeypatch, capsys):
    """Run `canrun ...` in-process against the fakes, with a fresh store that already knows the mlx-lm table."""
    db = tmp_path / "canrun.sqlite3"
    (tmp_path / "config.toml").write_text(
        f'[hub]\nendpoint = "{zoo_hub.endpoint}"\nmax_retries = 2\n'
        f'[store]\npath = "{db}"\n[memory]\nbudget_gb = 16.0\n'
        f'[suggestions]\ngithub_api = "{github.url}"\ntimeout_seconds = 3.0\n'
    )
    monkeypatch.setenv("CANRUN_CONFIG", str(tmp_path / "config.toml"))

    asyncio.run(seed_store(db, capability_table))

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    run.db = db
    return run


CASES = verdict_cases()


@pytest.mark.parametrize("entry", CASES, ids=[e.repo.repo_id for e in CASES])
def test_every_zoo_repo_gets_its_verdict(cli, entry):
    code, out, err = cli("check", entry.repo.repo_id, "--json")
    assert code == 0, err
    (line,) = out.strip().splitlines()
    v = json.loads(line)
    assert v["repo"] == entry.repo.repo_id
    assert v["verdict"] == entry.verdict, v["reasons"]
    assert entry.words in " ".join(v["reasons"])  # mlx-lm's own message first, canrun's plain words after
    for key in ("model_type", "module", "weights_bytes", "params", "memory", "suggestions"):
        assert key in v
    assert isinstance(v["reasons"], list) and all(isinstance(r, str) for r in v["reasons"])


def test_not_found_and_several_repos_one_line_each(cli):
    code, out, err = cli("check", "nobody/nothing", "https://huggingface.co/mistralai/Mistral-7B-v0.1/tree/main", "--json")
    assert code == 0, err
    first, second = (json.loads(line) for line in out.strip().splitlines())
    assert first["verdict"] == "not_found"
    assert (second["verdict"], second["revision"], second["module"]) == ("loads", "main", "llama")
    mistral = next(e.repo for e in CASES if e.repo.repo_id == "mistralai/Mistral-7B-v0.1")
    shards = [f for name, f in mistral.files.items() if name.startswith("model-")]
    assert second["weights_bytes"] == sum(f.size for f in shards)  # the .bin files are not counted
    assert second["params"] == 7_241_732_096


def test_human_output_reads_in_one_pass(cli):
    code, out, _ = cli("check", "mistralai/Mistral-7B-v0.1")
    assert code == 0
    assert "✅ mistralai/Mistral-7B-v0.1: Loads in mlx-lm [loads]" in out
    assert "model_type mistral → mlx_lm.models.llama (via MODEL_REMAPPING)" in out
    assert "7.2B parameters" in out and "weights 14.5 GB" in out
    assert "memory (16.0 GB configured budget)" in out  # budget_gb is decimal GB, as every size shown


def test_malformed_input_exits_2_without_network(cli, zoo_hub):
    before = len(zoo_hub.requests)
    code, out, err = cli("check", "mistralai/Mistral-7B-v0.1", "../../etc/passwd")
    assert code == 2 and out == ""
    assert "'../../etc/passwd'" in err and "org/name" in err and "Traceback" not in err
    assert len(zoo_hub.requests) == before
    code, _, err = cli("check")
    assert code == 2 and "at least one repo" in err
    code, _, err = cli("check", "--bogus-flag")
    assert code == 2


def test_unreachable_hub_exits_1_and_others_still_answer(cli, tmp_path, monkeypatch, zoo_hub):
    # Point at a port nobody listens on: connection refused, retried, then reported.
    cfg = (tmp_path / "config.toml").read_text().replace(zoo_hub.endpoint, "http://127.0.0.1:9")
    (tmp_path / "config.toml").write_text(cfg)
    code, out, err = cli("check", "mistralai/Mistral-7B-v0.1", "--json")
    assert code == 1 and json.loads(out)["verdict"] is None  # still one object for the repo
    assert "could not reach Hugging Face" in err and "Traceback" not in err


def test_verdicts_are_recorded_and_cached(cli, zoo_hub):
    zoo_hub.reset_log()
    assert cli("check", "TheBloke/Llama-2-7B-AWQ", "--json")[0] == 0
    fetched = zoo_hub.count("GET", "/api/models/TheBloke/Llama-2-7B-AWQ")
    assert fetched == 1
    assert cli("check", "TheBloke/Llama-2-7B-AWQ", "--json")[0] == 0
    assert zoo_hub.count("GET", "/api/models/TheBloke/Llama-2-7B-AWQ") == 1  # second answer came from SQLite
    assert cli("check", "TheBloke/Llama-2-7B-AWQ", "--json", "--refresh")[0] == 0
    assert zoo_hub.count("GET", "/api/models/TheBloke/Llama-2-7B-AWQ") == 2

    async def history():
        store = await Store.open(cli.db)
        rows = await store.verdict_history("TheBloke/Llama-2-7B-AWQ")
        await store.close()
        return rows

    rows = asyncio.run(history())
    assert len(rows) == 3 and {r["verdict"] for r in rows} == {"loads"} and rows[0]["source"] == "cli"


def test_list_architectures_probes_an_empty_store(cli, tmp_path, monkeypatch):
    cfg = (tmp_path / "config.toml").read_text().replace("canrun.sqlite3", "fresh.sqlite3")
    (tmp_path / "config.toml").write_text(cfg)
    code, out, _ = cli("check", "--list-architectures", "--json")
    assert code == 0
    rows = {r["model_type"]: r for r in map(json.loads, out.strip().splitlines())}
    assert rows["mistral"]["module"] == "llama" and rows["mistral"]["loads"]
    assert not rows["olmo"]["loads"] and "ai2-olmo" in rows["olmo"]["needs"]
    assert "ssm" not in rows and "activations" not in rows
    assert rows["bailing_hybrid + BailingMoeV3ForCausalLM"]["module"] == "bailing_moe_v3"


def test_bad_config_names_the_key(cli, tmp_path):
    (tmp_path / "config.toml").write_text('[hub]\nmax_retries = "lots"\n')
    code, _, err = cli("check", "a/b")
    assert code == 2 and "[hub] max_retries: expected an integer" in err


def test_migrate_command(cli, tmp_path):
    cfg = (tmp_path / "config.toml").read_text().replace("canrun.sqlite3", "other.sqlite3")
    (tmp_path / "config.toml").write_text(cfg)
    code, out, _ = cli("migrate")
    assert code == 0 and "001_initial" in out
    code, out, _ = cli("migrate")
    assert code == 0 and "up to date" in out


def test_bot_without_token_explains_setup(cli):
    code, _, err = cli("bot")
    assert code == 2
    assert "DISCORD_TOKEN" in err and "applications.commands" in err and "canrun check" in err


def test_unwritable_database_is_a_sentence_not_a_traceback(cli, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a folder should be")
    cfg = (tmp_path / "config.toml").read_text().replace(str(cli.db), str(blocker / "db.sqlite3"))
    (tmp_path / "config.toml").write_text(cfg)
    code, out, err = cli("check", "mistralai/Mistral-7B-v0.1")
    assert code == 1 and out == ""
    assert err.startswith("canrun: ") and "Traceback" not in err
