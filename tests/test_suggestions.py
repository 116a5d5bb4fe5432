"""Suggestions through the CLI: fake hub for conversions, fake GitHub for pull requests and releases."""

from __future__ import annotations

import json

import pytest

from bot.core.suggest import conversion_label, name_query, rank_conversions
from tests.test_check_cli import cli  # noqa: F401 - the fixture


def check_json(cli, repo):  # noqa: F811
    code, out, err = cli("check", repo, "--json")
    assert code == 0, err
    return json.loads(out)


def kinds(v):
    return [s["kind"] for s in v["suggestions"]]


def test_unsupported_architecture_points_at_release_and_pull_request(cli, github):  # noqa: F811
    github.add_issue(812, "Add qwen9_next architecture", pull_request=True)
    github.add_issue(790, "Support for qwen9_next?", "Would love qwen9_next")
    github.add_issue(700, "Something else entirely")
    github.add_file("mlx_lm/models/qwen9_next.py", ref="main")
    github.add_file("mlx_lm/models/qwen9_next.py", ref="v0.99.0")
    github.latest_release = "v0.99.0"
    v = check_json(cli, "future-lab/Qwen9-Next")
    assert v["verdict"] == "unsupported_architecture"
    assert kinds(v)[:3] == ["upgrade", "pull_request", "issue"]
    assert "0.99.0" in v["suggestions"][0]["title"] and v["suggestions"][0]["detail"] == "pip install -U mlx-lm"
    assert v["suggestions"][1]["url"].endswith("/pull/812")
    assert not any("Something else" in s["title"] for s in v["suggestions"])
    assert v["suggestions_unavailable"] == []


def test_architecture_only_on_main_says_not_released(cli, github):  # noqa: F811
    github.add_file("mlx_lm/models/nova2.py", ref="main")
    github.latest_release = "v0.99.0"
    v = check_json(cli, "future-lab/Nova-2")
    up = next(s for s in v["suggestions"] if s["kind"] == "upgrade")
    assert "not yet released" in up["title"] and "git+https://github.com/ml-explore/mlx-lm" in up["detail"]


UTILS_WITH_REMAP = """
import importlib
MODEL_REMAPPING = {
    "mistral": "llama",
    "nova2": "llama",  # added upstream after the installed release
}
def load():
    raise SystemExit("never executed")
"""


def test_a_remap_added_upstream_is_an_upgrade_too(cli, github):  # noqa: F811
    # No nova2.py anywhere: upstream's main branch supports nova2 through a new MODEL_REMAPPING entry.
    github.add_file("mlx_lm/utils.py", ref="main", text=UTILS_WITH_REMAP)
    github.add_file("mlx_lm/models/llama.py", ref="main")
    github.latest_release = "v0.99.0"
    up = [s for s in check_json(cli, "future-lab/Nova-2")["suggestions"] if s["kind"] == "upgrade"]
    assert len(up) == 1 and "not yet released" in up[0]["title"]


def test_a_released_remap_says_which_release(cli, github):  # noqa: F811
    for ref in ("main", "v0.99.0"):
        github.add_file("mlx_lm/utils.py", ref=ref, text=UTILS_WITH_REMAP)
        github.add_file("mlx_lm/models/llama.py", ref=ref)
    github.latest_release = "v0.99.0"
    up = [s for s in check_json(cli, "future-lab/Nova-2")["suggestions"] if s["kind"] == "upgrade"]
    assert "0.99.0" in up[0]["title"] and up[0]["detail"] == "pip install -U mlx-lm"


def test_no_upgrade_when_upstream_has_neither_module_nor_remap(cli, github):  # noqa: F811
    github.add_file("mlx_lm/utils.py", ref="main", text=UTILS_WITH_REMAP)
    assert not [s for s in check_json(cli, "future-lab/Qwen9-Next")["suggestions"] if s["kind"] == "upgrade"]


def test_remapping_is_read_from_source_without_running_it():
    from bot.core.suggest import remapping_in_source

    assert remapping_in_source(UTILS_WITH_REMAP) == {"mistral": "llama", "nova2": "llama"}
    assert remapping_in_source("MODEL_REMAPPING = make()") == {}
    assert remapping_in_source("def broken(:") == {}
    assert remapping_in_source("MODEL_REMAPPING: dict = {'a': 'b', 1: 'c'}") == {"a": "b"}


def test_big_unquantized_model_gets_the_4bit_conversion_first(cli):  # noqa: F811
    v = check_json(cli, "mistralai/Mistral-7B-v0.1")
    assert v["verdict"] == "loads"
    conversions = [s for s in v["suggestions"] if s["kind"] == "conversion"]
    # the 8-bit one has more downloads, but the point here is a smaller download
    assert [c["url"].rsplit("/", 1)[-1] for c in conversions] == ["Mistral-7B-v0.1-4bit", "Mistral-7B-v0.1-8bit"]
    assert conversions[0]["detail"].startswith("4-bit")


def test_gguf_repo_points_at_base_and_its_conversions(cli):  # noqa: F811
    v = check_json(cli, "TheBloke/Llama-2-7B-GGUF")
    titles = " | ".join(s["title"] for s in v["suggestions"])
    assert "mlx-community/Llama-2-7b-hf-4bit" in titles
    assert "Original model: NousResearch/Llama-2-7b-hf" in titles
    assert "mlx_lm.convert --hf-path NousResearch/Llama-2-7b-hf -q" in titles


def test_hub_links_follow_the_configured_endpoint(cli, zoo_hub):  # noqa: F811
    """The cli fixture's config sets `[hub] endpoint` to the fake hub: every link to a repo goes there."""
    v = check_json(cli, "TheBloke/Llama-2-7B-GGUF")
    hub_links = {s["kind"]: s["url"] for s in v["suggestions"] if s["kind"] != "pull_request"}
    assert set(hub_links) == {"conversion", "base_model", "convert_command"}
    assert hub_links["base_model"] == hub_links["convert_command"] == f"{zoo_hub.endpoint}/NousResearch/Llama-2-7b-hf"
    assert hub_links["conversion"].startswith(f"{zoo_hub.endpoint}/mlx-community/")


def test_mlx_community_repo_that_loads_needs_nothing(cli, github):  # noqa: F811
    v = check_json(cli, "mlx-community/Qwen3-0.6B-4bit")
    assert v["suggestions"] == [] and github.count() == 0


def test_broken_github_never_blocks_the_verdict(cli, github):  # noqa: F811
    github.fail_status = 500
    v = check_json(cli, "future-lab/Qwen9-Next")
    assert v["verdict"] == "unsupported_architecture"
    assert v["suggestions_unavailable"] == ["GitHub"]


def test_slow_github_times_out(cli, github, tmp_path):  # noqa: F811
    cfg = (tmp_path / "config.toml").read_text().replace("timeout_seconds = 3.0", "timeout_seconds = 0.3")
    (tmp_path / "config.toml").write_text(cfg)
    github.latency = 2.0
    v = check_json(cli, "future-lab/Nova-2")
    # GitHub answers after 2 s, the limit is 0.3 s: the verdict comes without it, and says so
    assert v["verdict"] == "unsupported_architecture" and "GitHub" in v["suggestions_unavailable"]
    assert not [s for s in v["suggestions"] if s["kind"] in ("upgrade", "pull_request", "issue")]


def test_search_rate_limit_is_respected_and_cached(cli, github):  # noqa: F811
    github.search_limit = 1
    github.add_issue(812, "Add qwen9_next", pull_request=True)
    first = check_json(cli, "future-lab/Qwen9-Next")
    assert "pull_request" in kinds(first)
    searches = github.count("/search/issues")
    # cached in SQLite: asking again does not search again
    again = check_json(cli, "future-lab/Qwen9-Next")
    assert "pull_request" in kinds(again) and github.count("/search/issues") == searches
    # a different term with the allowance used up: GitHub says 403, the verdict still comes
    other = check_json(cli, "future-lab/Nova-2")
    assert other["verdict"] == "unsupported_architecture" and other["suggestions_unavailable"] == ["GitHub"]
    before = github.count("/search/issues")
    check_json(cli, "odd-lab/helper-named")  # blocked until the reset: not even asked
    assert github.count("/search/issues") == before


@pytest.mark.parametrize("name, label", [
    ("mlx-community/Qwen3-0.6B-4bit", "4-bit"), ("mlx-community/Llama-3-8B-Instruct-8bit", "8-bit"),
    ("mlx-community/gpt-oss-20b-MXFP4-Q8", "MXFP4"), ("mlx-community/Mistral-7B-bf16", "bf16"),
    ("mlx-community/Whatever", ""),
])
def test_conversion_labels(name, label):
    assert conversion_label(name) == label


def test_name_query_strips_format_suffixes():
    assert name_query("TheBloke/Llama-2-7B-GGUF") == "Llama-2-7B"
    assert name_query("org/Model-AWQ") == "Model"


def test_ranking_dedupes_and_keeps_only_mlx_community():
    models = [{"id": "mlx-community/A-8bit", "downloads": 9}, {"id": "mlx-community/A-4bit", "downloads": 5},
              {"id": "someone/A-4bit", "downloads": 100}, {"id": "mlx-community/A-8bit", "downloads": 9}]
    for prefer_small, order in ((False, ["A-8bit", "A-4bit"]), (True, ["A-4bit", "A-8bit"])):
        ranked = rank_conversions(models, prefer_small=prefer_small, hub_url="https://hub.example")
        assert [s.url for s in ranked] == [f"https://hub.example/mlx-community/{name}" for name in order]


# ---- what makes it fit: the smallest conversion that fits -------------------------------------------


def _conversions(v):
    return [(s["url"].rsplit("/", 1)[-1], s["detail"]) for s in v["suggestions"] if s["kind"] == "conversion"]


def _with_budget(cli, tmp_path, gb):  # noqa: F811
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace("budget_gb = 16.0", f"budget_gb = {gb}"))


def test_a_too_large_model_gets_the_conversions_that_fit_first_with_their_sizes(cli, tmp_path):  # noqa: F811
    # Mistral 7B in bf16 (about 14.5 GB) on 8 GB: its 4-bit conversion (4 GB of weights) fits, the 8-bit (8 GB)
    # does not, whatever their downloads.
    _with_budget(cli, tmp_path, 8.0)
    v = check_json(cli, "mistralai/Mistral-7B-v0.1")
    assert v["memory"]["as_is"]["status"] == "too_large"
    (first, first_detail), (second, second_detail) = _conversions(v)
    assert first == "Mistral-7B-v0.1-4bit" and "fits here" in first_detail and " GB: " in first_detail
    assert second == "Mistral-7B-v0.1-8bit" and "too large here" in second_detail


def test_when_no_conversion_fits_each_says_so(cli, tmp_path):  # noqa: F811
    _with_budget(cli, tmp_path, 4.0)
    v = check_json(cli, "mistralai/Mistral-7B-v0.1")
    details = [detail for _, detail in _conversions(v)]
    assert details and all("too large here" in d for d in details)


def test_conversion_fit_keeps_the_models_cache_and_the_budget():
    from bot.core.memory import fit, need_bytes
    from bot.core.suggest import conversion_fits

    kv = 3 * 10**9
    as_is = fit(need_bytes(16 * 10**9, kv), 20 * 10**9, 0.75)
    fits = conversion_fits({"a": 4 * 10**9, "b": 12 * 10**9}, as_is=as_is, as_is_weights=16 * 10**9, fit_fraction=0.75)
    assert fits["a"].need_bytes == need_bytes(4 * 10**9, kv) and fits["a"].status == "fits"
    assert fits["b"].status == "tight" and fits["b"].budget_bytes == as_is.budget_bytes
