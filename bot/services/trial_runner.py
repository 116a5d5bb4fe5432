"""Runs one trial load in a child process (`canrun trial-worker`) and follows it: progress, time limits, cancel.

The worker really downloads, loads and runs a model, so it may take all the memory, crash or hang. It runs in
its own process group, which is killed as a whole on cancel or timeout; whatever happens to it, `run()` returns a
TrialOutcome and the bot keeps going. The worker's JSON-lines protocol is described in trial_worker.py.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any

import bot
from bot.core.trial_outcome import CANCELLED, FAILED, SUCCEEDED, TIMED_OUT, TrialOutcome, TrialProgress

log = logging.getLogger(__name__)

HUNG = "hung"  # not a status: the worker closed its output but did not exit, so it was killed
STDERR_TAIL_CHARS = 800
EXIT_GRACE_SECONDS = 10.0  # a worker that closed its stdout gets this long to exit by itself before it is killed
LINE_LIMIT_BYTES = 16 << 20  # the result line carries the generated text
# The worker runs a stranger's model: it gets the environment it needs and no other (an allowlist, so that a
# secret canrun has never heard of, e.g. MY_API_KEY or AWS_SECRET_ACCESS_KEY, stays out). HF_TOKEN comes from the
# spec, never from here.
WORKER_ENV_NAMES = {
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TEMP", "TMP", "TZ", "LANG", "LANGUAGE", "TERM",
    "VIRTUAL_ENV", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "DYLD_FALLBACK_LIBRARY_PATH", "OMP_NUM_THREADS",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",  # a company's own certificates
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "HF_HOME", "HF_HUB_CACHE", "HF_HUB_DISABLE_XET", "HF_HUB_ENABLE_HF_TRANSFER", "HF_HUB_ETAG_TIMEOUT",
    "HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_DISABLE_IMPLICIT_TOKEN", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_XET_CACHE",
    "HF_XET_HIGH_PERFORMANCE",
    "USE_TORCH",  # whether transformers imports torch (the bench sets it alike for plain mlx-lm and the trial)
}
WORKER_ENV_PREFIXES = (
    "LC_",  # locale
    "PYTHON",  # PYTHONHOME, PYTHONUTF8...; PYTHONPATH is set below
    "MLX_", "METAL_", "MTL_",  # MLX and Apple's Metal (device selection, debugging, cache limits)
    "CUDA_", "NVIDIA_",  # MLX's CUDA backend on Linux
)
PROJECT_ROOT = Path(bot.__file__).resolve().parent.parent


@dataclass(frozen=True)
class TrialSpec:
    repo_id: str
    revision: str | None
    prompt: str
    max_tokens: int
    endpoint: str
    cache_dir: Path
    hf_token: str | None = None

    @classmethod
    def template(cls, endpoint: str, cache_dir: Path, hf_token: str | None) -> TrialSpec:
        """What trials from one place have in common: enough to start a spare worker for them."""
        return cls(repo_id="", revision=None, prompt="", max_tokens=0, endpoint=endpoint, cache_dir=cache_dir,
                   hf_token=hf_token)


@dataclass(frozen=True)
class TrialLimits:
    download_seconds: float = 1800
    load_seconds: float = 600
    generate_seconds: float = 300
    # The output check after the generation (one forward pass of at most 128 tokens): its own clock, so a
    # generation that ended near its limit keeps its result.
    check_seconds: float = 120
    # What the worker may download, counted on the files it would really fetch (mlx-lm's patterns match every
    # *.json and *.txt, in subfolders too: more than the weights the trial was admitted on), and the free disk it
    # must leave; checked before the first byte, against the disk as it is then. None (and a minimum of 0): none.
    max_download_bytes: int | None = None
    min_free_disk_bytes: int = 0

    def seconds_for(self, phase: str | None) -> float:
        """The limit of a phase; the worker's start, before it names a phase, counts as the download."""
        return {"load": self.load_seconds, "generate": self.generate_seconds}.get(phase or "", self.download_seconds)


ProgressCallback = Callable[[TrialProgress], Awaitable[None] | None]


@dataclass
class _Reports:
    """What the worker said so far."""

    phase: str | None = None
    progress: TrialProgress | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    generated: bool = False  # the generation is over: the output check runs

    def apply(self, event: dict[str, Any]) -> TrialProgress | None:
        """Take one event in; returns the new progress when it changed."""
        kind = event.get("event")
        if kind == "generated":
            self.generated = True
            return None
        if kind == "result":
            self.result = {k: v for k, v in event.items() if k != "event"}
            return None
        if kind == "error":
            self.error = event
            return None
        if kind == "phase":
            self.phase = str(event["phase"])
            self.progress = replace(self.progress, phase=self.phase) if self.progress else TrialProgress(self.phase)
        elif self.progress is None:
            return None  # the worker always names its phase first
        elif kind == "download":
            self.progress = replace(self.progress, bytes_done=int(event["bytes"]), bytes_total=int(event["total"]),
                                    bytes_present=int(event.get("present", 0)))
        elif kind == "loaded":
            self.progress = replace(self.progress, load_seconds=float(event["seconds"]))
        elif kind == "generate":
            self.progress = replace(self.progress, tokens=int(event["tokens"]))
        else:
            return None
        return self.progress

    def partial_result(self) -> dict[str, Any]:
        loaded = self.progress is not None and self.progress.load_seconds is not None
        return {"load_seconds": self.progress.load_seconds} if loaded else {}


class SpareWorker:
    """One worker process started ahead, with mlx and mlx-lm imported, waiting on stdin for its job.

    A trial then pays neither the process start nor the import (seconds; tens of seconds where transformers
    imports torch). Each process still runs one trial: isolation, kills and memory release are as before. The
    spare is started while no trial runs, for a given environment (endpoint, token): a trial whose environment
    differs starts a worker of its own.
    """

    def __init__(self, python: str = sys.executable):
        self._python = python
        self._process: asyncio.subprocess.Process | None = None
        self._env: dict[str, str] | None = None

    async def prepare(self, spec: TrialSpec) -> None:
        """Have a spare ready for trials like `spec` (its repo, prompt and size do not matter)."""
        env = worker_env(spec)
        if self._process is not None and self._process.returncode is None and self._env == env:
            return
        await self.close()
        try:
            self._process = await asyncio.create_subprocess_exec(
                # The cache folder on the command line too: `ps` shows whose worker it is (the job repeats it).
                self._python, "-m", "bot", "trial-worker", "--wait", f"--cache-dir={spec.cache_dir.resolve()}",
                f"--endpoint={spec.endpoint}", env=env, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
                limit=LINE_LIMIT_BYTES,
            )
        except OSError as e:
            log.warning("could not start a spare trial worker: %s", e)
            return
        self._env = env

    async def ready(self, timeout: float) -> bool:
        """Wait until the spare has imported what a trial needs (it says "ready"); False if it did not in time."""
        if self._process is None or self._process.stdout is None:
            return False
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), timeout)
        except TimeoutError:
            return False
        return _parse(line).get("event") == "ready"

    def take(self, env: dict[str, str]) -> asyncio.subprocess.Process | None:
        """The spare, if it is alive and was started for this environment; it is then the caller's."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None and self._env == env:
            return process
        if process is not None and process.returncode is None:
            _kill_group(process.pid)
            asyncio.ensure_future(process.wait())  # reaped in the background: no zombie, no open transport
        return None

    async def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.returncode is None:
                _kill_group(process.pid)
            await process.wait()


class TrialProcess:
    """One trial's worker process. `run()` starts it (or takes a spare) and returns when it is over; `cancel()`
    stops it."""

    def __init__(self, argv: list[str], env: dict[str, str], limits: TrialLimits, *,
                 job: dict[str, Any] | None = None, spare: SpareWorker | None = None):
        self._argv = argv
        self._env = env
        self._limits = limits
        self._job = job  # what a spare worker is told on stdin (the same as argv says)
        self._spare = spare
        self._cancelled = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self.first_token_seconds: float | None = None  # from run() to the first generated token

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def cancel(self) -> None:
        """Stop the trial: before it starts, while it runs, or (a no-op) after it ended."""
        self._cancelled.set()

    async def run(self, on_progress: ProgressCallback) -> TrialOutcome:
        started = self._started = time.monotonic()
        if self._cancelled.is_set():
            return TrialOutcome(CANCELLED, None, None, 0.0, {})
        try:
            self._process = process = await self._spare_with_job() or await asyncio.create_subprocess_exec(
                *self._argv, env=self._env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True, limit=LINE_LIMIT_BYTES,
            )
        except OSError as e:
            return TrialOutcome(FAILED, None, f"could not start the trial worker: {e}", time.monotonic() - started, {})
        stderr_reader = asyncio.create_task(_tail(process.stderr))
        reports = _Reports()
        try:
            stopped = await self._follow(process, reports, on_progress)
            if stopped is None and not await _exits_within(process, EXIT_GRACE_SECONDS):
                stopped = HUNG
        finally:  # also when run() itself is cancelled: no stray process, no zombie
            if process.returncode is None:
                _kill_group(process.pid)
            await process.wait()
            stderr_tail = await stderr_reader
        return self._outcome(stopped, reports, process.returncode, stderr_tail, time.monotonic() - started)

    async def _spare_with_job(self) -> asyncio.subprocess.Process | None:
        """The spare worker, given this trial's job; None when there is none for this environment (or it died)."""
        process = self._spare.take(self._env) if self._spare is not None and self._job is not None else None
        if process is None or process.stdin is None:
            return None
        try:
            process.stdin.write((json.dumps(self._job) + "\n").encode())
            await process.stdin.drain()
            process.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            await process.wait()
            return None
        except BaseException:  # cancelled while handing over the job: the spare is ours, so it goes too
            _kill_group(process.pid)
            await asyncio.shield(process.wait())
            raise
        return process

    def _outcome(self, stopped: str | None, reports: _Reports, returncode: int, stderr_tail: str,
                 duration: float) -> TrialOutcome:
        phase = reports.phase
        if reports.result is not None:  # answered before a late cancel: the trial is over, and it worked
            return TrialOutcome(SUCCEEDED, phase, None, duration, reports.result)
        if stopped == CANCELLED:
            return TrialOutcome(CANCELLED, phase, None, duration, reports.partial_result())
        if stopped == TIMED_OUT:
            if reports.generated:
                error = (f"the output check after the generation took longer than its limit of "
                         f"{self._limits.check_seconds:g} s")
            else:
                limit = self._limits.seconds_for(phase)
                error = f"the {phase or 'download'} phase took longer than its limit of {limit:g} s"
            return TrialOutcome(TIMED_OUT, phase, error, duration, reports.partial_result())
        if reports.error is not None:
            error = str(reports.error.get("message") or reports.error.get("type") or "unknown error")
            return TrialOutcome(FAILED, reports.error.get("phase", phase), error, duration, reports.partial_result(),
                                reported=True)
        if stopped == HUNG:
            error = "the trial worker stopped reporting without a result and did not exit"
        else:
            error = _death_notice(returncode, stderr_tail)
        return TrialOutcome(FAILED, phase, error, duration, reports.partial_result())

    async def _follow(self, process: asyncio.subprocess.Process, reports: _Reports,
                      on_progress: ProgressCallback) -> str | None:
        """Read events until the worker closes its stdout (None), or until it must be stopped: CANCELLED or
        TIMED_OUT. Each phase gets its own time limit, counted from the event that starts it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._limits.seconds_for(None)
        cancelled = asyncio.ensure_future(self._cancelled.wait())
        try:
            while True:
                remaining = deadline - loop.time()
                answered = reports.result is not None or reports.error is not None
                if answered:  # only the end of its output is awaited: no phase limit may discard the answer now
                    remaining = max(remaining, EXIT_GRACE_SECONDS)
                elif remaining <= 0:  # spent (or a limit of 0): a line already waiting in the pipe is late too
                    return CANCELLED if self._cancelled.is_set() else TIMED_OUT
                line = asyncio.ensure_future(process.stdout.readline())
                done, _ = await asyncio.wait({line, cancelled}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if line not in done:
                    line.cancel()
                    if cancelled in done:
                        return CANCELLED
                    return None if answered else TIMED_OUT  # answered and silent: run() sees whether it exits
                try:
                    raw = line.result()
                except ValueError:  # a line over LINE_LIMIT_BYTES: not one the worker writes
                    log.warning("trial worker wrote an over-long line")
                    continue
                if not raw:
                    return None
                event = _parse(raw)
                try:
                    progress = reports.apply(event)
                except (KeyError, TypeError, ValueError):
                    log.warning("trial worker sent a malformed event: %r", event)
                    continue
                if event.get("event") == "phase":
                    deadline = loop.time() + self._limits.seconds_for(reports.phase)
                elif event.get("event") == "generated":  # the output check starts: a clock of its own
                    deadline = loop.time() + self._limits.check_seconds
                if progress is not None:
                    if progress.tokens and self.first_token_seconds is None:
                        self.first_token_seconds = time.monotonic() - self._started
                    await _notify(on_progress, progress)
        finally:
            cancelled.cancel()


def start_trial(spec: TrialSpec, limits: TrialLimits, *, python: str = sys.executable,
                spare: SpareWorker | None = None) -> TrialProcess:
    """A trial ready to run; the worker process starts with `run()`, or the spare takes the job if it fits."""
    job = {"repo": spec.repo_id, "revision": spec.revision, "prompt": spec.prompt, "max_tokens": spec.max_tokens,
           "cache_dir": str(spec.cache_dir.resolve()), "endpoint": spec.endpoint,
           "max_download_bytes": limits.max_download_bytes, "min_free_disk_bytes": limits.min_free_disk_bytes}
    return TrialProcess(_worker_argv(spec, limits, python), worker_env(spec), limits, job=job, spare=spare)


def _worker_argv(spec: TrialSpec, limits: TrialLimits, python: str) -> list[str]:
    # `--option=value`: a prompt that starts with "-" stays a value.
    argv = [
        python, "-m", "bot", "trial-worker", f"--repo={spec.repo_id}", f"--prompt={spec.prompt}",
        f"--max-tokens={spec.max_tokens}", f"--cache-dir={spec.cache_dir.resolve()}", f"--endpoint={spec.endpoint}",
        f"--min-free-disk-bytes={limits.min_free_disk_bytes}",
    ]
    if limits.max_download_bytes is not None:
        argv.append(f"--max-download-bytes={limits.max_download_bytes}")
    if spec.revision:
        argv.append(f"--revision={spec.revision}")
    return argv


def worker_env(spec: TrialSpec) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key in WORKER_ENV_NAMES or key.startswith(WORKER_ENV_PREFIXES)}
    if spec.hf_token:
        env["HF_TOKEN"] = spec.hf_token
    env.update(
        HF_ENDPOINT=spec.endpoint,
        HF_HUB_DISABLE_TELEMETRY="1",
        # Each model then lives in its own folder of the cache, which ModelCache can measure and delete.
        HF_HUB_DISABLE_SHARED_BLOBS="1",
        TOKENIZERS_PARALLELISM="false",
        CANRUN_TRIAL_PARENT_PID=str(os.getpid()),  # the worker ends itself once this process is gone
        PYTHONPATH=os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p),
    )
    return env


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        event = json.loads(raw)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        log.warning("trial worker wrote a line outside the protocol: %r", raw[:200])
        return {}
    return event


async def _notify(on_progress: ProgressCallback, progress: TrialProgress) -> None:
    try:
        outcome = on_progress(progress)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:  # noqa: BLE001 - a broken listener (e.g. Discord down) must not stop the trial
        log.exception("trial progress callback failed")


async def _exits_within(process: asyncio.subprocess.Process, seconds: float) -> bool:
    try:
        await asyncio.wait_for(process.wait(), seconds)
    except TimeoutError:
        log.warning("trial worker %s closed its output but did not exit: killing it", process.pid)
        return False
    return True


def _kill_group(pid: int) -> None:
    """SIGKILL the worker's process group (its pid: it leads its own session). The worker has nothing to save."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _tail(stream: asyncio.StreamReader) -> str:
    """The end of the worker's stderr, read as it comes so that the worker never blocks on a full pipe."""
    tail = b""
    while chunk := await stream.read(1 << 16):
        tail = (tail + chunk)[-4 * STDERR_TAIL_CHARS:]  # UTF-8: up to 4 bytes a character
    return tail.decode("utf-8", errors="replace")[-STDERR_TAIL_CHARS:].strip()


def _death_notice(returncode: int, stderr_tail: str) -> str:
    """Why a worker ended without a result, in words."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:  # a signal without a name, e.g. a real-time one
            name = f"signal {-returncode}"
        what = f"was killed by {name}"
        if -returncode == signal.SIGKILL:  # not by us: our own kills end as cancelled or timed_out
            what += " — often the system running out of memory"
    else:
        what = f"exited with code {returncode} without a result"
    return f"the trial worker {what}" + (f"\n{stderr_tail}" if stderr_tail else "")
