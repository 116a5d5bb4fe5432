"""Speed, fixes and predicted-vs-measured as people read them: terminal, Discord embeds, the store's side."""

from __future__ import annotations

import json

from bot.core import speed
from bot.core.engine import HostMemory
from bot.core.verdicts import MemoryFit, Verdict
from bot.discord import safe
from bot.discord.render import verdict_embed
from bot.discord.trial_render import trial_embed
from bot.render.text import render_verdict
from bot.render.trial_result import render_trial, trial_json
from bot.services.host_speed import host_bandwidth, mac_facts
from bot.services.speed import SpeedService
from bot.services.trial_queue import Trial
from bot.core.trial_outcome import SUCCEEDED, TrialOutcome

HOST = HostMemory(16_000_000_000, "configured budget")
PRIOR = speed.prior(400e9, "M3 Max, 400 GB/s (Apple's specs)")


def loading_verdict(device: str = "Apple M3 Max (Metal)") -> Verdict:
    inputs = speed.SpeedInputs({"as_is": 14_500_000_000, "4bit": 4_100_000_000}, speed.FLOAT, 7_200_000_000,
                               1.0, 500_000_000)
    report = speed.report(inputs, {speed.FLOAT: PRIOR, speed.QUANTIZED: PRIOR}, device=device,
                          context_tokens=4096, prompt_tokens=512)
    return Verdict("org/m", "loads", memory={"as_is": MemoryFit(16_300_000_000, 16_000_000_000, "too_large")},
                   speed=report, fixes=[{"kind": "conversion", "bits": 4,
                                         "text": "As 4-bit it fits: `mlx_lm.convert --hf-path org/m -q --q-bits 4`."}])


def test_the_terminal_shows_ranges_their_label_and_the_fixes():
    text = render_verdict(loading_verdict(), HOST)
    assert ("  speed (estimated from M3 Max, 400 GB/s (Apple's specs); generating at 4096 tokens of context, "
            "prompt of 512 tokens):") in text
    assert "    as is: " in text and "    as 4-bit: " in text and " tok/s (~" in text
    assert "  ↳ As 4-bit it fits: `mlx_lm.convert --hf-path org/m -q --q-bits 4`." in text


def test_the_embed_shows_speed_and_fixes_with_commands_as_code_and_names_escaped():
    embed = verdict_embed(loading_verdict("Evil_**GPU** @everyone (CUDA)"), HOST, hub_url="https://huggingface.co")
    fields = {f.name: f.value for f in embed.fields}
    assert "`mlx_lm.convert --hf-path org/m -q --q-bits 4`" in fields["What makes it fit"]
    speed_field = next(v for k, v in fields.items() if k.startswith("Speed on "))
    assert "as is: " in speed_field and "tok/s" in speed_field and "estimated from M3 Max" in speed_field
    measured = loading_verdict("Evil_**GPU** @everyone (CUDA)")
    measured.speed.basis = "GPU **bold** @everyone"
    fields = verdict_embed(measured, HOST, hub_url="https://h").fields
    text = next(f.value for f in fields if f.name.startswith("Speed"))
    assert "**bold**" not in text and "@everyone" not in text.replace("@\u200beveryone", "")


def test_a_trial_shows_predicted_against_measured():
    compared = {"predicted_tps": 24.0, "measured_tps": 20.0, "error_pct": 20.0, "label": "calibrated"}
    outcome = TrialOutcome(SUCCEEDED, "generate", None, 3.0, {"generation_tps": 20.0, "generation_tokens": 8})
    line = "  predicted 24 tok/s (calibrated), measured 20 tok/s decoding: +20 %"
    shown = render_trial("org/m", outcome, prompt="hi", prediction=compared)
    assert line in shown and "generation 17.5 tok/s (8 tokens)" in shown  # the decode rate: 7 steps in mlx-lm's time
    assert trial_json("org/m", None, "loads", outcome, prompt="hi", max_tokens=8,
                      prediction=compared)["speed_prediction"] == compared
    trial = Trial(7, "org/m", None, 1, 1, 2, "hi", 8, "succeeded", 0.0, phase="generate",
                  result={"generation_tps": 20.0, "speed_prediction": compared})
    numbers = next(f.value for f in trial_embed(trial).fields if f.name == "Numbers")
    assert numbers.endswith("\npredicted 24 tok/s (calibrated), measured 20 tok/s decoding: +20 %")


async def test_a_finished_trial_is_compared_with_its_repos_latest_verdict(store):
    service = SpeedService(store)
    result = {"generation_tps": 20.0, "prompt_tokens": 20, "generation_tokens": 44}
    assert await service.trial_prediction("org/m", None, result) is None  # no verdict with a speed yet
    await store.record_verdict(loading_verdict().to_json(), source="cli")
    compared = await service.trial_prediction("org/m", None, result)
    a, b = PRIOR.point_line()
    kv_per_token = 500_000_000 / 4096
    assert compared["predicted_tps"] == round(1 / (a + b * (14_500_000_000 + kv_per_token * 64)), 2)
    assert compared["label"] == "estimated" and compared["measured_tps"] == round(20.0 * 43 / 44, 2)


async def test_the_probed_bandwidth_is_kept_per_device_in_the_store(store):
    first = await host_bandwidth(store)
    assert first.bandwidth_bps > 0 and "(measured with mlx)" in first.basis
    (key, value), = await store.state_items("bandwidth_probe:")
    assert first.device in key and json.loads(value)["bps"] == first.bandwidth_bps
    await store.state_put(key, json.dumps({"bps": 123e9}))  # what a later start finds: no probe again
    assert (await host_bandwidth(store)).bandwidth_bps == 123e9
    assert mac_facts() == {}  # not macOS: no sysctl is run


def test_the_terminal_and_the_embed_show_the_same_extracted_facts():
    from bot.core.verdicts import Suggestion
    from bot.render.verdict_facts import verdict_facts

    v = loading_verdict()
    v.model_type, v.module, v.remapped_by = "mistral", "llama", "MODEL_REMAPPING"
    v.quantization, v.weights_bytes, v.params = "MLX 4-bit", 4_100_000_000, 7_200_000_000
    v.reasons = ["Weights `model.safetensors` read from the header."]
    v.suggestions = [Suggestion("conversion", "org/m-4bit", "https://huggingface.co/org/m-4bit", "4-bit")]
    facts = verdict_facts(v, HOST)
    text = render_verdict(v, HOST)
    embed = verdict_embed(v, HOST, hub_url="https://huggingface.co")
    shown = "\n".join([embed.description or ""] + [f.name + "\n" + f.value for f in embed.fields])
    for fact in [facts.target, facts.remapped_by, facts.weights, facts.params, facts.budget, facts.speed_lines[0],
                 facts.memory[0].need, facts.memory[0].words, facts.suggestions[0].title]:
        assert fact in text and (fact in shown or safe.escape(fact) in shown), fact  # code spans, or escaped text
    assert facts.target == "mlx_lm.models.llama" and facts.weights == "4.1 GB" and facts.params == "7.2B"
