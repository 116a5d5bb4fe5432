"""The trial worker: download a model, load it with mlx-lm and generate a few tokens, reporting as it goes.

It runs as `canrun trial-worker` in a child process of the bot (bot/services/trial_runner.py), which
time-limits it, cancels it and survives it: a model can use all the memory, crash or hang. It downloads what
`mlx_lm.load()` would (mlx-lm's own patterns, minus repo code) with the token in HF_TOKEN if any, loads offline
with an empty stdin and never `trust_remote_code`, and generates as `mlx_lm.generate` does.

Before the first byte it checks the trial's disk limits (--max-download-bytes, --min-free-disk-bytes) against the
files it is about to fetch and the disk as it is then.

Protocol: one JSON object per line on stdout, flushed at once, in this order:

    {"event": "ready"}                               # only with --wait: imports done, waiting for the job
    {"event": "phase", "phase": "download"}
    {"event": "download", "bytes": N, "total": T, "present": P}  # about twice a second while the bytes grow, then
                                                     # once at the end; P: bytes already on disk at the start
    {"event": "phase", "phase": "load"}
    {"event": "loaded", "seconds": S}
    {"event": "phase", "phase": "generate"}
    {"event": "generate", "tokens": N}               # at the first token, then at most about twice a second
    {"event": "generated", "tokens": N}              # the generation is over; the output check runs (own limit)
    {"event": "result", "ok": true, "load_seconds": ..., "prompt_tokens": ..., "prompt_tps": ...,
     "generation_tokens": ..., "generation_tps": ..., "peak_memory_bytes": ..., "device": ...,
     "mlx_version": ..., "mlx_lm_version": ..., "text": ..., "download_bytes": ..., "present_bytes": ...,
     "warm_worker": ...,                             # true: started ahead with --wait, the job came on stdin
     "perplexity": ..., "perplexity_limit": ..., "vocab_size": ..., "reference_tokens": ...,
     "printable_share": ..., "looks_broken": ..., "broken_reasons": [...], "output_check_seconds": ...}
    (download_bytes: fetched by this trial; present_bytes: already on disk, e.g. kept by keep_after_trial;
    perplexity ... broken_reasons: bot/core/output_check.py, measured after the generation, so never part of its
    tokens/s or peak memory; "output_check_error" instead of the perplexity when its forward pass failed)

or, instead of the rest once something fails, {"event": "error", "phase": ..., "message": ..., "type": ...}
(exit code 1). Whatever else mlx, transformers or the hub print goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import huggingface_hub.constants
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import disable_progress_bars, filter_repo_objects

from bot.core import output_check
from bot.core.units import human_bytes
from bot.services import hub_client
from bot.services.model_cache import free_disk_bytes

# mlx and mlx-lm (a second to import) are imported where they are first needed: a repo that cannot be
# downloaded fails before paying for them.

PROGRESS_INTERVAL_SECONDS = 0.5
ORPHAN_CHECK_SECONDS = 1.0
PARENT_PID_VARIABLE = "CANRUN_TRIAL_PARENT_PID"  # set by the runner (trial_runner.worker_env)
MESSAGE_CHARS = 1500
TEXT_CHARS = 100_000  # keeps the result line short whatever a tokenizer decodes to; people see far less


class Reporter:
    """Writes protocol events; remembers the current phase, so an error can name it."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._lock = threading.Lock()  # the download watcher reports from its own thread
        self.phase = "download"

    def send(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields})
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.send("phase", phase=phase)


JOB_FIELDS = ("repo", "revision", "prompt", "max_tokens", "cache_dir", "endpoint", "max_download_bytes",
              "min_free_disk_bytes")
OPTIONAL_JOB_FIELDS = ("revision", "max_download_bytes", "min_free_disk_bytes")


def main(args: argparse.Namespace) -> int:
    exit_with_parent()
    reporter, printed = _take_stdout()
    if args.wait:
        args = _wait_for_job(args, reporter)
        if args is None:
            return 0  # stdin closed without a job: the spare was not needed
    elif any(getattr(args, name) is None for name in JOB_FIELDS if name not in OPTIONAL_JOB_FIELDS):
        reporter.send("error", phase="download", message="trial-worker needs the job's options or --wait",
                      type="UsageError")
        return 2
    try:
        reporter.enter("download")
        room = DownloadRoom(args.max_download_bytes, args.min_free_disk_bytes or 0)
        local_path, download_bytes, present_bytes = download(args.repo, args.revision, Path(args.cache_dir),
                                                             args.endpoint, reporter, room)
        reporter.enter("load")
        model, tokenizer, load_seconds = load(local_path)
        reporter.send("loaded", seconds=load_seconds)
        reporter.enter("generate")
        generation = generate(model, tokenizer, args.prompt, args.max_tokens, reporter)
        reporter.send("generated", tokens=generation["generation_tokens"])  # the output check's clock starts
        checked = check_output(model, tokenizer, generation.pop("segments"), generation["generation_tokens"])
        result = {"ok": True, "load_seconds": load_seconds, **generation, **checked, **_machine(),
                  "download_bytes": download_bytes, "present_bytes": present_bytes,
                  "warm_worker": bool(getattr(args, "warm", False))}
    except (Exception, SystemExit) as e:  # SystemExit: some mlx_lm.models modules exit when a dependency is missing
        reporter.send("error", phase=reporter.phase, message=_message(e, printed), type=type(e).__name__)
        return 1
    reporter.send("result", **result)
    return 0


def exit_with_parent(interval: float = ORPHAN_CHECK_SECONDS) -> None:
    """End this worker, and whatever it started, once the process that started it is gone. The runner puts the
    worker in a session of its own (it kills the whole group), so nothing else ends it when the bot itself is
    killed or crashes: it would go on downloading gigabytes or holding a model in memory while the restarted bot
    starts the next trial beside it. The runner names itself (PARENT_PID_VARIABLE): a parent that died while
    this process was still starting counts as gone too."""
    parent = int(os.environ.get(PARENT_PID_VARIABLE) or os.getppid())

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        # Our own group only when we lead it (as the runner starts us); else just this process.
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _wait_for_job(args: argparse.Namespace, reporter: Reporter) -> argparse.Namespace | None:
    """Import what a trial needs, then block on stdin for the job; stdin is /dev/null afterwards (transformers
    asks there before running a repo's code, and must read no answer)."""
    import mlx.core  # noqa: F401 - imported ahead: this is the time a warm worker saves
    import mlx_lm  # noqa: F401
    import mlx_lm.utils  # noqa: F401

    reporter.send("ready")  # mlx-lm is imported: the runner may wait for this (benchmarks do)
    line = sys.stdin.readline()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if not line.strip():
        return None
    job = json.loads(line)
    return argparse.Namespace(**{**vars(args), **{name: job.get(name) for name in JOB_FIELDS}, "warm": True})


class PrintedToStderr(io.TextIOBase):
    """sys.stdout during the run: what Python code prints goes to stderr, and its last line is kept for errors."""

    def __init__(self) -> None:
        self.last_line = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        sys.stderr.write(text)
        if text.strip():
            self.last_line = text.strip().splitlines()[-1]
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _take_stdout() -> tuple[Reporter, PrintedToStderr]:
    """Keep the real stdout for the protocol; everything else written to it, by Python or C code, goes to stderr."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = printed = PrintedToStderr()
    return Reporter(protocol), printed


def _message(e: BaseException, printed: PrintedToStderr) -> str:
    if isinstance(e, SystemExit):  # e.g. mlx_lm.models.olmo prints what to install, then exits
        text = f"mlx-lm exited with code {e.code}" + (f": {printed.last_line}" if printed.last_line else "")
    else:
        text = str(e).strip() or type(e).__name__
    return text[:MESSAGE_CHARS]


# ---- download -----------------------------------------------------------------------------------


def allow_patterns() -> list[str]:
    """What mlx-lm itself downloads, minus repo code: canrun never runs it, so it never fetches it."""
    from mlx_lm.utils import DEFAULT_ALLOW_PATTERNS

    return [pattern for pattern in DEFAULT_ALLOW_PATTERNS if pattern != "*.py"]


@dataclass(frozen=True)
class _BlobFile:
    blob: str  # its name in the cache's blobs folder: the hub's etag (sha256 for LFS files, git blob id otherwise)
    size: int


class DownloadMeter:
    """Bytes of a snapshot on disk so far, from the sizes of its blobs, finished or still `.incomplete`."""

    def __init__(self, blobs_dir: Path, files: list[_BlobFile]):
        self.blobs_dir = blobs_dir
        self.files = files
        self.total = sum(f.size for f in files)
        self.present = self.bytes_done()  # on disk before the download: a kept or half-downloaded model

    def bytes_done(self) -> int:
        return sum(min(f.size, self._on_disk(f.blob)) for f in self.files)

    def _on_disk(self, blob: str) -> int:
        # The hub writes to `<etag>.<random>.incomplete` and renames it to `<etag>` when done.
        candidates = [self.blobs_dir / blob, *self.blobs_dir.glob(f"{blob}*.incomplete")]
        return max(_size(path) for path in candidates)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # not there yet, or just renamed
        return 0


@dataclass(frozen=True)
class DownloadRoom:
    """The trial's limits on what it downloads (TrialLimits), checked on the files it is about to fetch."""

    max_bytes: int | None = None
    min_free_disk_bytes: int = 0

    def check(self, needed: int, cache_dir: Path) -> None:
        if self.max_bytes is not None and needed > self.max_bytes:
            raise DownloadRefused(
                f"the download would be {human_bytes(needed)}, over this machine's limit of "
                f"{human_bytes(self.max_bytes)} ([trials] max_download_gb): the repo holds more than its weights "
                f"(mlx-lm fetches every JSON and text file, in subfolders too)")
        free = free_disk_bytes(cache_dir)
        if free - needed < self.min_free_disk_bytes:
            raise DownloadRefused(
                f"the download ({human_bytes(needed)}) would leave less than {human_bytes(self.min_free_disk_bytes)} "
                f"free on disk ([trials] min_free_disk_gb): {human_bytes(free)} is free now")


class DownloadRefused(Exception):
    """The download would break the trial's limits; nothing was fetched."""


def download(repo_id: str, revision: str | None, cache_dir: Path, endpoint: str,
             reporter: Reporter, room: DownloadRoom = DownloadRoom()) -> tuple[Path, int, int]:
    """The snapshot's folder, the bytes fetched now and the bytes that were already on disk."""
    disable_progress_bars()  # the download events replace them
    hub_client.install()  # snapshot_download's threads: one's failed connect must not close the client under the rest
    token = os.environ.get("HF_TOKEN") or False  # False: never a token stored on this machine
    info = HfApi(endpoint=endpoint, token=token).model_info(repo_id, revision=revision, files_metadata=True)
    patterns = allow_patterns()
    siblings = {s.rfilename: s for s in info.siblings or []}
    files = [
        _BlobFile(s.lfs.sha256 if s.lfs else s.blob_id, s.size or 0)
        for s in (siblings[name] for name in filter_repo_objects(list(siblings), allow_patterns=patterns))
    ]
    meter = DownloadMeter(cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model") / "blobs", files)
    room.check(meter.total - meter.present, cache_dir)
    with _reporting(meter, reporter):
        path = snapshot_download(
            repo_id, revision=info.sha, allow_patterns=patterns, cache_dir=cache_dir, endpoint=endpoint, token=token,
        )
    done = meter.bytes_done()
    reporter.send("download", bytes=done, total=meter.total, present=meter.present)
    return Path(path), max(0, done - meter.present), meter.present


@contextmanager
def _reporting(meter: DownloadMeter, reporter: Reporter) -> Iterator[None]:
    stop = threading.Event()

    def watch() -> None:
        last = None
        while True:
            done = meter.bytes_done()
            if done != last:
                reporter.send("download", bytes=done, total=meter.total, present=meter.present)
                last = done
            if stop.wait(PROGRESS_INTERVAL_SECONDS):
                return

    watcher = threading.Thread(target=watch, name="download-meter", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


# ---- load and generate --------------------------------------------------------------------------


def load(path: Path) -> tuple[Any, Any, float]:
    import mlx.core as mx
    import mlx_lm

    # Everything the load needs is on disk: mlx-lm and transformers must not fetch anything else.
    os.environ["HF_HUB_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = True  # read once, at import: the variable alone comes too late
    # transformers asks on stdin before running a repo's code; an empty stdin answers no at once.
    sys.stdin = io.StringIO()
    mx.reset_peak_memory()
    started = time.perf_counter()
    model, tokenizer = mlx_lm.load(str(path))
    return model, tokenizer, time.perf_counter() - started


def generate(model: Any, tokenizer: Any, prompt: str, max_tokens: int, reporter: Reporter) -> dict[str, Any]:
    import mlx.core as mx
    from mlx_lm import stream_generate

    pieces: list[str] = []
    reported_at = time.monotonic()
    tokens = prompt_tokens(tokenizer, prompt)
    with _no_heap_scans():
        for last in stream_generate(model, tokenizer, tokens, max_tokens=max_tokens):
            pieces.append(last.text)
            # The first token at once (time to first token is what a waiting study group feels), then throttled.
            if last.generation_tokens == 1 or time.monotonic() - reported_at >= PROGRESS_INTERVAL_SECONDS:
                reporter.send("generate", tokens=last.generation_tokens)
                reported_at = time.monotonic()
    return {
        "prompt_tokens": last.prompt_tokens,
        "prompt_tps": last.prompt_tps,
        "generation_tokens": last.generation_tokens,
        "generation_tps": last.generation_tps,
        "peak_memory_bytes": mx.get_peak_memory(),
        "text": "".join(pieces)[:TEXT_CHARS],
        "segments": pieces,  # the text each token added, for check_output
    }


def check_output(model: Any, tokenizer: Any, segments: list[str], generated_tokens: int) -> dict[str, Any]:
    """Whether the output looks broken though load() worked (bot/core/output_check.py): the perplexity of one
    forward pass over the reference text, and the printable share of the generation. Runs after the generation
    was measured. A forward pass that fails (a model that needs more than token ids) leaves the perplexity out;
    the trial still loaded and generated."""
    started = time.perf_counter()
    failed: dict[str, str] = {}
    try:
        mean_nll, vocab_size, measured = reference_loss(model, tokenizer)
    except Exception as e:  # noqa: BLE001 - a check beside the trial, never a reason to lose its result
        mean_nll, vocab_size, measured = None, None, 0
        failed["output_check_error"] = (str(e).strip() or type(e).__name__)[:MESSAGE_CHARS]
    check = output_check.judge(mean_nll, vocab_size, measured, output_check.printable_share(segments),
                               generated_tokens)
    return {**check.to_result(), **failed, "output_check_seconds": time.perf_counter() - started}


def reference_loss(model: Any, tokenizer: Any) -> tuple[float, int, int]:
    """(mean cross-entropy in nats per token, vocabulary size, tokens measured) of the model on the reference
    text, tokenized as the model's tokenizer does (its BOS included), in one forward pass."""
    import mlx.core as mx
    import mlx.nn as nn

    tokens = tokenizer.encode(output_check.REFERENCE_TEXT)[: output_check.MAX_REFERENCE_TOKENS]
    if len(tokens) < 2:
        raise ValueError("the tokenizer made fewer than two tokens of the reference text")
    inputs = mx.array(tokens)[None]
    logits = model(inputs[:, :-1]).astype(mx.float32)
    loss = nn.losses.cross_entropy(logits[0], inputs[0, 1:], reduction="mean")
    return float(loss.item()), int(logits.shape[-1]), len(tokens)


@contextmanager
def _no_heap_scans() -> Iterator[None]:
    """No cyclic garbage collection while tokens are generated.

    This process holds everything the download and the load left (huggingface_hub, transformers, the model's
    Python objects); a full collection walks all of it and, at GPU speed, a pause of tens of milliseconds is
    several percent of a short generation. Generating makes little cyclic garbage, and it is collected after.
    """
    gc.collect()
    gc.freeze()  # what exists now is never scanned again
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def prompt_tokens(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt as `mlx_lm.generate` encodes it: through the chat template when the tokenizer has one."""
    if tokenizer.has_chat_template:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        return tokenizer.encode(text, add_special_tokens=False)  # the template already placed them
    return tokenizer.encode(prompt)


def _machine() -> dict[str, str]:
    import mlx.core as mx
    import mlx_lm

    from bot.services.host import device_label

    return {
        "device": device_label(),  # as the bot's speed estimates name this host
        "mlx_version": mx.__version__,
        "mlx_lm_version": mlx_lm.__version__,
    }
