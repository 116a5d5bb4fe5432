"""`canrun trial REPO`: a real trial load in this terminal, for the machine's owner. Progress on stderr, result on stdout.

Exit codes: 0 the model loaded and generated text; 1 no trial (refused, or Hugging Face unreachable) or the trial
failed or timed out; 2 malformed input or configuration; 128 + the signal when interrupted (130 for Ctrl-C).
Its parser and help are in bot/cli.py, which imports this module only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from contextlib import contextmanager
from collections.abc import Callable, Iterator

from bot.config import Config
from bot.core.repo_id import RepoIdError, echo, parse_repo
from bot.core.speed import trial_prediction
from bot.render.progress import ProgressPrinter
from bot.render.trial_result import REFUSED, UNCHECKED, not_run_json, render_trial, trial_json
from bot.cli_exit import EXIT_OK, EXIT_UNCHECKED, EXIT_USAGE
from bot.core.trial_outcome import CANCELLED, SUCCEEDED
from bot.core.units import human_bytes
from bot.services.answers import Audience, CanrunAnswers
from bot.services.host import machine_name
from bot.services.hub import HubUnavailable
from bot.services.local_trial import LocalTrial, start_spare
from bot.services.trials import TrialAdmission


async def run_trial(args: argparse.Namespace, config: Config) -> int:
    cfg = config.trials
    try:
        ref = parse_repo(args.repo, args.revision)
    except RepoIdError as e:
        print(f"canrun: {echo(args.repo)}: {e}", file=sys.stderr)
        return EXIT_USAGE
    max_tokens = args.max_tokens or cfg.default_max_tokens
    if max_tokens > cfg.max_tokens_limit:
        print(f"canrun: --max-tokens can be at most {cfg.max_tokens_limit} here ([trials] max_tokens_limit)",
              file=sys.stderr)
        return EXIT_USAGE
    prompt = cfg.default_prompt if args.prompt is None else args.prompt
    if not prompt.strip():  # the model would get nothing to continue and "fail while generating"
        print("canrun: --prompt is empty: give some text to generate from, or leave --prompt out for "
              "[trials] default_prompt", file=sys.stderr)
        return EXIT_USAGE

    spare = await start_spare(config)  # imports mlx-lm while the verdict is checked
    answers = None
    try:
        answers = await CanrunAnswers.open(config)
        admission = TrialAdmission(config, answers.checker)
        try:
            verdict, reason = await admission.admit(ref)
        except HubUnavailable as e:
            print(f"canrun: {ref}: could not check: {e}", file=sys.stderr)
            if args.json:
                print(json.dumps(not_run_json(ref.repo_id, ref.revision, None, UNCHECKED, str(e))), flush=True)
            return EXIT_UNCHECKED
        await answers.record(verdict, Audience("cli"))  # as `canrun check` does
        if reason:
            print(f"canrun: no trial for {ref}: {reason.rstrip('.')}.", file=sys.stderr)
            if args.json:
                print(json.dumps(not_run_json(ref.repo_id, ref.revision, verdict.verdict, REFUSED, reason)),
                      flush=True)
            return EXIT_UNCHECKED
        local = LocalTrial(config, admission, spare)
        print(f"canrun: {ref}: verdict loads, weights {human_bytes(verdict.weights_bytes)}; trial starting "
              "(Ctrl-C stops it)", file=sys.stderr)

        def waiting(holder: str) -> None:
            print(f"canrun: another trial is running on {machine_name()} ({holder}); waiting for it to end, "
                  "as one trial at a time runs here (Ctrl-C gives up)", file=sys.stderr, flush=True)

        progress = ProgressPrinter(sys.stderr, max_tokens=max_tokens)
        with _cancel_on_signals(local.cancel) as caught:
            try:
                outcome = await local.run(ref.repo_id, ref.revision, prompt, max_tokens, verdict.weights_bytes or 0,
                                          progress, on_wait=waiting)
            finally:
                progress.finish()
        if outcome.status == SUCCEEDED:  # a measurement of this host: the speed estimates calibrate on it
            await answers.store.record_terminal_trial(ref.repo_id, ref.revision, outcome.result)
    finally:
        if spare is not None:
            await spare.close()  # not taken (refused, unchecked, interrupted): it never runs a job
        if answers is not None:
            await answers.close()

    prediction = (trial_prediction(verdict.speed, outcome.result)
                  if verdict.speed is not None and outcome.status == SUCCEEDED else None)
    if args.json:
        print(json.dumps(trial_json(ref.repo_id, ref.revision, verdict.verdict, outcome, prompt=prompt,
                                    max_tokens=max_tokens, prediction=prediction)), flush=True)
    else:
        print(render_trial(str(ref), outcome, prompt=prompt, prediction=prediction), flush=True)
    if outcome.status == CANCELLED:
        return 128 + (caught[0] if caught else signal.SIGINT)
    return EXIT_OK if outcome.status == SUCCEEDED else EXIT_UNCHECKED


@contextmanager
def _cancel_on_signals(cancel: Callable[[], None]) -> Iterator[list[int]]:
    """While the trial runs, Ctrl-C (or SIGTERM) cancels it: the worker's process group is killed and the run ends
    as cancelled, instead of a KeyboardInterrupt landing anywhere. Yields the signals caught."""
    loop = asyncio.get_running_loop()
    caught: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum: int) -> None:
        caught.append(signum)
        cancel()

    for signum in previous:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield caught
    finally:
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)
            if handler is not None:  # e.g. asyncio.run's own Ctrl-C handler, for what follows
                signal.signal(signum, handler)
