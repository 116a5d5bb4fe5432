"""Speed estimates for verdicts: this host's bandwidth, calibrated by the trials it has run.

A calibration sample is a successful trial on this very device, paired with the speed facts of its repo's
latest verdict (bytes read per token, format, active parameters): both are already in the store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.core import dry_load, memory, speed
from bot.core.dry_load import DryLoadOutcome
from bot.core.verdicts import Verdict
from bot.services.host_speed import HostBandwidth, host_bandwidth

SAMPLES_LIMIT = 200  # the newest trials are enough to fit two numbers


@dataclass(frozen=True)
class SpeedSettings:
    prompt_tokens: int = 512  # prompt speed is reported for a prompt this long


def speed_inputs(config: dict, verdict: Verdict, outcome: DryLoadOutcome | None,
                 context_tokens: int) -> speed.SpeedInputs | None:
    """What the estimator needs, from the built model when the dry load answered, else from the weight files."""
    if outcome is not None and outcome.ok and outcome.model_bytes:
        weights = {"as_is": outcome.model_bytes}
        weights.update({k: outcome.conversions[k] for k in verdict.memory if k in outcome.conversions})
        kv = (dry_load.kv_cache_bytes(outcome.kv_layout, context_tokens) if outcome.kv_layout
              else memory.kv_cache_bytes(config, context_tokens))
        active = speed.active_fraction(outcome.model_bytes, outcome.expert_bytes, outcome.experts,
                                       speed.experts_per_token(config))
        quantized = outcome.quantized
    elif verdict.weights_bytes:
        weights = {"as_is": verdict.weights_bytes}
        for key, bits in memory.CONVERSION_BITS.items():
            if key in verdict.memory and verdict.params:
                weights[key] = int(verdict.params * bits / 8)
        kv, active = memory.kv_cache_bytes(config, context_tokens), 1.0
        quantized = bool(verdict.params) and verdict.weights_bytes < verdict.params * 1.5  # under 12 bits a weight
    else:
        return None
    fmt = speed.QUANTIZED if quantized else speed.FLOAT
    return speed.SpeedInputs(weights, fmt, verdict.params, active, kv, memory.layer_count(config))


class SpeedService:
    def __init__(self, store=None, settings: SpeedSettings = SpeedSettings()):
        self.store = store
        self.settings = settings
        self._host: HostBandwidth | None = None

    async def host(self) -> HostBandwidth:
        if self._host is None:
            self._host = await host_bandwidth(self.store)
        return self._host

    async def trials(self, device: str) -> list[tuple[dict[str, Any], dict[str, Any], str, str | None]]:
        """(result, speed facts of its verdict, repo, revision) of successful trials on `device`, newest first."""
        if self.store is None:
            return []
        # The bot's trials and the owner's `canrun trial`s alike: both measured this host.
        async with self.store.conn.execute(
            "SELECT t.result, t.repo_id, t.revision, (SELECT v.payload FROM verdict_history v"
            " WHERE v.repo_id = t.repo_id"
            " AND v.revision IS t.revision AND v.payload LIKE '%\"weights_per_token\"%' ORDER BY v.id DESC LIMIT 1)"
            " FROM (SELECT result, repo_id, revision, finished_at FROM trials WHERE status = 'succeeded'"
            "       UNION ALL SELECT result, repo_id, revision, finished_at FROM terminal_trials) t"
            " ORDER BY t.finished_at DESC LIMIT ?", (SAMPLES_LIMIT,),
        ) as cur:
            rows = await cur.fetchall()
        out = []
        for result_text, repo, revision, payload in rows:
            result = json.loads(result_text or "{}")
            facts = (json.loads(payload).get("speed") or {}) if payload else {}
            if result.get("device") == device and facts:
                out.append((result, facts, repo, revision))
        return out

    async def samples(self, device: str) -> list[speed.Sample]:
        found = [speed.sample_of(facts, result, repo) for result, facts, repo, _ in await self.trials(device)]
        return [s for s in found if s is not None]

    async def models(self, exclude_repo: str | None = None) -> tuple[HostBandwidth, dict[str, speed.HostModel]]:
        """This host's model per weight format (the prior, or fitted to its trials, leaving out `exclude_repo`)."""
        host = await self.host()
        prior = speed.prior(host.bandwidth_bps, host.basis)
        samples = [s for s in await self.samples(host.device) if s.repo != exclude_repo]
        return host, {fmt: speed.calibrate(samples, fmt, prior) for fmt in (speed.FLOAT, speed.QUANTIZED)}

    async def report(self, inputs: speed.SpeedInputs, *, repo: str, revision: str | None,
                     context_tokens: int) -> speed.SpeedReport:
        host, models = await self.models()
        measured = None
        for result, facts, trial_repo, trial_revision in await self.trials(host.device):
            if trial_repo == repo and trial_revision == revision:
                measured = speed.sample_of(facts, result, repo)
                break
        return speed.report(inputs, models, device=host.device, context_tokens=context_tokens,
                            prompt_tokens=self.settings.prompt_tokens, measured=measured)

    async def trial_prediction(self, repo: str, revision: str | None, result: dict[str, Any]) -> dict[str, Any] | None:
        """What the repo's latest verdict predicted for this trial, beside what it measured."""
        if self.store is None:
            return None
        async with self.store.conn.execute(
            "SELECT payload FROM verdict_history WHERE repo_id = ? AND revision IS ? AND payload LIKE '%\"line\"%'"
            " ORDER BY id DESC LIMIT 1", (repo, revision),
        ) as cur:
            row = await cur.fetchone()
        facts = json.loads(row[0]).get("speed") if row else None
        return speed.trial_prediction(speed.SpeedReport.from_json(facts), result) if facts else None
