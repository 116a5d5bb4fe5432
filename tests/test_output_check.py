""""Loads but broken": a trial measures the model's perplexity on a fixed English paragraph and the printable share
of its generation. Two real checkpoints of one shape, served by the fake hub and run through the real worker: a
tiny Llama trained on the paragraph (low perplexity) and the same Llama with its random starting weights (high)."""

from __future__ import annotations

import asyncio
import math

import discord
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core import output_check
from bot.core.output_check import (
    MAX_REFERENCE_TOKENS, REFERENCE_TEXT, judge, perplexity_limit, perplexity_words, printable_share,
)
from bot.discord.trial_render import trial_embed, trial_list_line
from bot.render.output_check import broken_line, check_numbers
from bot.render.trial_result import render_trial
from bot.services import predictions as game
from bot.services.game_events import GameEvents
from bot.services.trial_queue import QueueSettings, Trial, TrialQueue
from bot.services.trial_runner import TrialLimits, TrialOutcome, TrialSpec, start_trial
from tests.fakes.hub import FakeHub, FakeRepo
from tests.fakes.tiny_model import TRAINED_SIZES, trained_llama_files

TRAINED, RANDOM = "tiny/trained", "tiny/random"


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as hub:
        hub.add_repo(FakeRepo(TRAINED, trained_llama_files(REFERENCE_TEXT, MAX_REFERENCE_TOKENS)))
        hub.add_repo(FakeRepo(RANDOM, trained_llama_files(REFERENCE_TEXT, MAX_REFERENCE_TOKENS, steps=0)))
        yield hub


def spec(hub, repo_id, cache_dir, max_tokens=16):
    return TrialSpec(repo_id=repo_id, revision=None, prompt="The library opens", max_tokens=max_tokens,
                     endpoint=hub.endpoint, cache_dir=cache_dir)


# ---- through the real worker ------------------------------------------------------------------------


@pytest.mark.parametrize("repo, broken", [(TRAINED, False), (RANDOM, True)])
async def test_the_trained_model_looks_fine_and_the_random_one_broken(hub, tmp_path, repo, broken):
    outcome = await start_trial(spec(hub, repo, tmp_path), TrialLimits()).run(lambda progress: None)

    assert outcome.status == "succeeded", outcome.error  # load() worked either way
    r = outcome.result
    vocab = TRAINED_SIZES["vocab_size"]
    assert (r["vocab_size"], r["reference_tokens"]) == (vocab, MAX_REFERENCE_TOKENS)
    assert r["perplexity_limit"] == pytest.approx(perplexity_limit(vocab))
    assert r["looks_broken"] is broken
    if broken:  # a random guess over 256 tokens: about 256, far over the limit of 48.5
        assert r["perplexity"] > 4 * r["perplexity_limit"]
        assert r["broken_reasons"] and "perplexity" in r["broken_reasons"][0]
        assert broken_line(r).startswith("Loaded, but the output looks broken: perplexity")
    else:  # trained until its loss was under 1 nat per token
        assert r["perplexity"] < math.e
        assert r["broken_reasons"] == [] and broken_line(r) is None
    assert 0 <= r["printable_share"] <= 1
    assert r["output_check_seconds"] > 0
    assert check_numbers(r).startswith(f"perplexity {perplexity_words(r['perplexity'])} on a plain English")


async def test_a_broken_model_still_settles_as_loading(store, hub, tmp_path):
    """The game's question is load(): a model whose output looks broken loaded, and predictions settle so."""
    events = GameEvents(store)
    for user, will_load in ((7, True), (8, False)):
        await game.place_prediction(store, guild_id=1, user_id=user, repo_id=RANDOM, will_load=will_load,
                                    confidence=90)
    queue = TrialQueue(store, QueueSettings(endpoint=hub.endpoint, cache_dir=tmp_path / "models"),
                       before_run=events.trial_starting, after_run=events.trial_ended)
    queue.start()
    try:
        queued = await queue.enqueue(repo_id=RANDOM, revision=None, requested_by=1, guild_id=1, channel_id=None,
                                     prompt="hello", max_tokens=8, verdict="loads")
        trial = await asyncio.wait_for(queue.wait_finished(queued.id), 120)
    finally:
        await queue.stop()

    assert (trial.status, trial.loaded, trial.looks_broken) == ("succeeded", True, True)
    assert trial.perplexity == pytest.approx(trial.result["perplexity"]) and trial.perplexity > 48
    assert trial.printable_share == trial.result["printable_share"]
    settled = {user: await game.get_prediction(store, 1, user, RANDOM) for user in (7, 8)}
    assert {p.status for p in settled.values()} == {"settled"}
    assert settled[7].outcome is True and settled[7].points > 0  # "it loads" was right
    assert settled[8].outcome is True and settled[8].points < 0
    assert (await queue.recent(1))[0].looks_broken is True  # read back from the store


# ---- the judgement (pure) ------------------------------------------------------------------------------------


def test_the_perplexity_limit_is_a_power_of_the_vocabulary():
    assert perplexity_limit(256) == pytest.approx(48.5, abs=0.1)
    assert perplexity_limit(32_000) == pytest.approx(1_424, abs=1)
    assert perplexity_limit(151_936) == pytest.approx(4_238, abs=1)


@given(st.integers(2, 300_000), st.floats(0.0, 20.0))
def test_broken_exactly_when_the_perplexity_passes_the_limit(vocab, nll):
    check = judge(nll, vocab, 100, printable=1.0, generated_tokens=64)
    assert check.looks_broken is (math.exp(nll) > perplexity_limit(vocab))
    assert check.to_result()["looks_broken"] is check.looks_broken


def test_a_loss_that_is_not_a_number_looks_broken():
    for nll in (float("nan"), float("inf"), 1e6):
        check = judge(nll, 32_000, 100, printable=1.0, generated_tokens=64)
        assert check.perplexity is None and check.looks_broken is True
        assert "not a finite number" in check.reasons[0]


def test_mostly_unprintable_output_looks_broken_once_there_are_enough_tokens():
    assert judge(math.log(20), 32_000, 100, printable=0.3, generated_tokens=64).looks_broken is True
    assert judge(math.log(20), 32_000, 100, printable=0.3, generated_tokens=4).looks_broken is False  # too few
    assert judge(math.log(20), 32_000, 100, printable=0.9, generated_tokens=64).looks_broken is False
    # Without a perplexity pass, the printable share alone judges, when it can.
    assert judge(None, None, 0, printable=0.2, generated_tokens=64).looks_broken is True
    assert judge(None, None, 0, printable=1.0, generated_tokens=4).looks_broken is None


def test_printable_share_judges_a_token_that_completes_a_character_with_the_ones_before():
    assert printable_share([]) is None
    assert printable_share(["Hello", ",", " world"]) == 1.0
    # A multi-byte character that takes three tokens: two add nothing, the third adds it.
    assert printable_share(["", "", "日", "本"]) == 1.0
    assert printable_share(["ok", "\x00", "\x1b[2J", "fine"]) == 0.5  # control characters
    assert printable_share(["ok", "\ufffd", "\ue000"]) == pytest.approx(1 / 3)  # invalid bytes, private use
    assert printable_share(["tabs\tand\nlines", "🙂"]) == 1.0
    assert printable_share(["ok", ""]) == 1.0  # a character never completed is not judged


def test_the_reference_text_is_plain_english_of_bounded_length():
    assert REFERENCE_TEXT.isascii() and output_check.is_printable(REFERENCE_TEXT)
    assert 60 <= len(REFERENCE_TEXT.split()) <= 100  # about MAX_REFERENCE_TOKENS tokens of a real tokenizer


# ---- shown in Discord and the terminal ------------------------------------------------------------------------

BROKEN_RESULT = {
    "ok": True, "load_seconds": 0.5, "generation_tps": 40.0, "generation_tokens": 16, "text": "zq`~",
    **judge(math.log(300), 256, 128, printable=0.75, generated_tokens=16).to_result(),
}
FINE_RESULT = {**BROKEN_RESULT, **judge(math.log(2.5), 256, 128, printable=1.0, generated_tokens=16).to_result()}


def finished_trial(result, **kw):
    return Trial(3, "org/m", None, 1, 1, 2, "hi", 16, "succeeded", 0.0, phase="generate", loaded=True,
                 result=result, finished_at=100.0, perplexity=result["perplexity"],
                 printable_share=result["printable_share"], looks_broken=result["looks_broken"], **kw)


def test_the_trial_embed_says_loaded_but_broken_with_the_numbers():
    embed = trial_embed(finished_trial(BROKEN_RESULT))
    assert "worked and the model generated text" in embed.description  # load() did work
    assert "⚠️ Loaded, but the output looks broken: perplexity 300 on plain English, over the 48.5" in embed.description
    assert embed.color == discord.Color.orange()
    check = next(f.value for f in embed.fields if f.name == "Output check")
    assert check == ("perplexity 300 on a plain English paragraph (over 48.5 looks broken; guessing at random: 256)"
                     " · 75% of generated tokens printable")

    fine = trial_embed(finished_trial(FINE_RESULT))
    assert "broken" not in fine.description and fine.color == discord.Color.green()
    assert next(f.value for f in fine.fields if f.name == "Output check").startswith("perplexity 2.5 on")


def test_trials_lists_mark_the_broken_ones():
    assert trial_list_line(finished_trial(BROKEN_RESULT)).startswith(
        "⚠️ #3 **org/m**: 37.5 tok/s · ⚠️ loaded, but the output looks broken (perplexity 300, 75% printable) "
        "<t:100:R>")
    assert trial_list_line(finished_trial(FINE_RESULT)) == \
        "✅ #3 **org/m**: 37.5 tok/s · perplexity 2.5, 100% printable <t:100:R>"
    unchecked = Trial(4, "org/m", None, 1, 1, 2, "hi", 16, "failed", 0.0, phase="load", loaded=False,
                      error="Missing 1 parameters", finished_at=100.0)
    assert trial_list_line(unchecked) == "❌ #4 **org/m**: Missing 1 parameters <t:100:R>"


def test_the_terminal_says_loaded_but_broken_with_the_numbers():
    text = render_trial("org/m", TrialOutcome("succeeded", "generate", None, 2.0, BROKEN_RESULT), prompt="hi")
    lines = text.splitlines()
    assert lines[0] == "✅ org/m: mlx_lm.load() worked and the model generated text (2.0 s)."
    assert lines[1].startswith("⚠️ Loaded, but the output looks broken: perplexity 300 on plain English")
    assert "  output check: perplexity 300 on a plain English paragraph (over 48.5 looks broken; guessing at random:" \
        " 256) · 75% of generated tokens printable" in lines
    fine = render_trial("org/m", TrialOutcome("succeeded", "generate", None, 2.0, FINE_RESULT), prompt="hi")
    assert "broken" not in fine.splitlines()[1] and "  output check: perplexity 2.5 on" in fine
    failed = {"output_check_error": "needs pixel values", **judge(None, None, 0, 1.0, 16).to_result()}
    assert check_numbers(failed) == "perplexity not measured (needs pixel values) · 100% of generated tokens printable"
