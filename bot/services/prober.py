"""The warm dry-load process: mlx-lm imported once, one request at a time, restarted when it misbehaves.

The child (bot.services.dry_load_child) never runs in the bot's process: a model module may end the
process on import, a sanitize may allocate, transformers may prompt. Around it:
- a time limit per request and a memory ceiling (resident set, polled): past either it is killed;
- a fresh child after a crash, a kill, or `max_requests` answers (imports accumulate);
- stdin closed for the loader, HF_HUB_OFFLINE=1, no token, no trust_remote_code.

Blocking on purpose (subprocess + select), so one prober serves every event loop and thread of the
process; callers on an event loop use `asyncio.to_thread`.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
MEMORY_POLL_SECONDS = 0.25  # on macOS each look is a `ps`: not every wake-up
# Only what importing mlx/transformers needs; no secrets (the dry load reads local files only).
ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")


class ProberError(RuntimeError):
    """The dry load could not give an answer (timeout, memory ceiling, crash): not a verdict."""


@dataclass(frozen=True)
class ProberSettings:
    timeout_seconds: float = 60.0
    memory_ceiling_bytes: int = 4 * 1024**3
    max_requests: int = 200
    start_timeout_seconds: float = 120.0  # importing mlx-lm (and transformers) the first time
    remaps: tuple[str, ...] = ()  # TYPE=MODULE pairs added to MODEL_REMAPPING (tests)
    python: str = sys.executable


@dataclass
class Hello:
    pid: int
    mlx_lm_version: str
    mlx_version: str
    allow_patterns: list[str] = field(default_factory=list)
    tokenizer_libraries: str = ""  # "transformers X|tokenizers Y": load_tokenizer's answer depends on them too
    environment: str = ""  # every installed package (bot.services.environment): an install can change the answer


class Prober:
    def __init__(self, settings: ProberSettings = ProberSettings()):
        self.settings = settings
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._hello: Hello | None = None
        self._served = 0
        self._ids = itertools.count(1)
        self.starts = 0  # children started (tests and benchmarks read it)
        self.peak_rss_bytes = 0  # the largest resident set seen while a request ran

    # ---- public, thread-safe -----------------------------------------------------------------
    def hello(self) -> Hello:
        """The running child's versions; starts one if needed. Does not wait for a dry load in progress."""
        hello, proc = self._hello, self._proc
        if hello is not None and proc is not None and proc.poll() is None:
            return hello
        with self._lock:
            return self._ensure_started()

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Run one dry load; returns the child's result. Raises ProberError when there is no answer."""
        with self._lock:
            self._ensure_started()
            assert self._proc is not None and self._proc.stdin is not None
            request_id = next(self._ids)
            try:
                self._proc.stdin.write((json.dumps({**payload, "id": request_id}) + "\n").encode())
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError) as e:
                self._stop()
                raise ProberError("the dry-load process had died") from e
            try:
                msg = self._read(self.settings.timeout_seconds, watch_memory=True)
            except ProberError:
                self._stop()
                raise
            except (ValueError, subprocess.TimeoutExpired, OSError) as e:  # a garbled line, a child that won't die
                self._stop()
                raise ProberError(f"the dry-load process misbehaved ({type(e).__name__})") from e
            # A fast answer may come before any look at the child's memory: check what it reached now.
            peak = max(resident_bytes(self._proc.pid), int(msg.get("max_rss_bytes") or 0))
            self.peak_rss_bytes = max(self.peak_rss_bytes, peak)
            if peak > self.settings.memory_ceiling_bytes:
                self._stop()
                raise ProberError(self._over_ceiling(peak))
            self._served += 1
            if self._served >= self.settings.max_requests:
                self._stop()
            if msg.get("kind") != "result" or msg.get("id") != request_id:
                self._stop()
                raise ProberError("the dry-load process answered out of turn")
            return msg

    def wait_idle(self) -> None:
        """Return once the child has finished tidying up after its last dry load (freeing a large model's
        graph takes it a moment after answering)."""
        self.request({"ping": True})

    def close(self) -> None:
        with self._lock:
            self._stop()

    # ---- the child -----------------------------------------------------------------------------
    def _ensure_started(self) -> Hello:
        if self._proc is not None and self._proc.poll() is None and self._hello is not None:
            return self._hello
        self._stop()
        env = {k: v for k, v in os.environ.items() if k in ENV_KEEP or k.startswith(("MLX_", "METAL_"))}
        # Offline, and no token at all: not even the one huggingface_hub would read from its token file.
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
                   HF_HUB_DISABLE_IMPLICIT_TOKEN="1", HF_TOKEN_PATH=os.devnull,
                   TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
        args = [self.settings.python, "-m", "bot.services.dry_load_child"]
        for pair in self.settings.remaps:
            args += ["--remap", pair]
        self._proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            cwd=os.getcwd(), start_new_session=True,  # Ctrl-C in a terminal is ours; we end the child
        )
        self.starts += 1
        self._served = 0
        self._stderr_tail: list[bytes] = []
        try:
            msg = self._read(self.settings.start_timeout_seconds, watch_memory=False)
        except ProberError:
            self._stop()
            raise
        if msg.get("kind") != "hello":
            self._stop()
            raise ProberError("the dry-load process did not start properly")
        self._hello = Hello(msg["pid"], msg["mlx_lm_version"], msg["mlx_version"], list(msg.get("allow_patterns", [])),
                            str(msg.get("tokenizer_libraries", "")), str(msg.get("environment", "")))
        log.info("dry-load process %d started (mlx-lm %s, mlx %s)", self._hello.pid,
                 self._hello.mlx_lm_version, self._hello.mlx_version)
        return self._hello

    def _read(self, timeout: float, *, watch_memory: bool) -> dict[str, Any]:
        """The next JSON line from the child, draining its stderr meanwhile; enforces time and memory."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        deadline = time.monotonic() + timeout
        next_memory_look = 0.0
        buffer = b""
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, "out")
            sel.register(proc.stderr, selectors.EVENT_READ, "err")
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProberError(f"the dry load took longer than {timeout:.0f} s")
                for key, _ in sel.select(min(POLL_SECONDS, remaining)):
                    chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                    if key.data == "err":
                        if chunk:
                            self._stderr_tail = (self._stderr_tail + [chunk])[-20:]
                        else:
                            sel.unregister(proc.stderr)
                        continue
                    if not chunk:
                        proc.wait(timeout=5)
                        raise ProberError(f"the dry-load process ended (exit code {proc.returncode}): {self._stderr_text()}")
                    buffer += chunk
                    if b"\n" in buffer:
                        line, _, rest = buffer.partition(b"\n")
                        if rest.strip():
                            log.warning("dry-load process sent more than one line")
                        return json.loads(line)
                if watch_memory and time.monotonic() >= next_memory_look:
                    next_memory_look = time.monotonic() + MEMORY_POLL_SECONDS
                    rss = resident_bytes(proc.pid)
                    self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
                    if rss > self.settings.memory_ceiling_bytes:
                        raise ProberError(self._over_ceiling(rss))

    def _over_ceiling(self, rss: int) -> str:
        return (f"the dry load went past its memory ceiling ({rss / 1e9:.2f} GB > "
                f"{self.settings.memory_ceiling_bytes / 1e9:.2f} GB)")

    def _stderr_text(self) -> str:
        return b"".join(self._stderr_tail).decode("utf-8", "replace").strip()[-500:]

    def _stop(self) -> None:
        proc, self._proc, self._hello = self._proc, None, None
        if proc is None:
            return
        if proc.poll() is None:
            try:  # the child leads its own session: whatever it started goes with it
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except PermissionError:
                proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("dry-load process %d did not exit", proc.pid)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def resident_bytes(pid: int) -> int:
    """The resident set of a process: /proc on Linux, ps elsewhere (macOS). 0 when it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
        return int(out.stdout.strip() or 0) * 1024
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


_shared: dict[ProberSettings, Prober] = {}
_shared_lock = threading.Lock()


def shared_prober(settings: ProberSettings = ProberSettings()) -> Prober:
    """One warm prober per settings in this process (the bot, the CLI and the tests share it)."""
    with _shared_lock:
        prober = _shared.get(settings)
        if prober is None:
            prober = _shared[settings] = Prober(settings)
        return prober


@atexit.register
def close_shared_probers() -> None:
    with _shared_lock:
        probers = list(_shared.values())
        _shared.clear()
    for prober in probers:
        prober.close()
