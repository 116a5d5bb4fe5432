"""The models that trials downloaded, on disk under a size budget: least recently used ones go first.

`cache_dir` has huggingface_hub's cache layout, one `models--org--name` folder per repo. The trial worker runs
with the hub's cross-repo shared blob store off (trial_runner.py), so each folder holds all of its model's bytes
and deleting it frees them. huggingface_hub's own `scan_cache_dir` does not fit: its repo sizes leave out unfinished
downloads (the `.incomplete` files that a cancelled or killed trial leaves behind), and it dates repos by their
blobs' access time, which many filesystems do not keep up to date.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator, Set
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub.file_download import repo_folder_name

from bot.core.units import human_bytes

REPO_PREFIX = "models--"
LEASES_DIR = ".canrun-leases"  # one locked file per model in use: <repo folder>@<random>
CACHE_LOCK = ".lock"


class ModelCacheFull(Exception):
    """The model cannot fit in the cache's budget; the message is for people."""


@dataclass(frozen=True)
class CachedModel:
    repo_id: str
    path: Path
    size: int  # bytes on disk, unfinished downloads included
    last_used: float  # the newest modification in its folder, or its last touch()


class Lease:
    """A model in use by this process. The lease file stays locked (flock) while the lease is held: the lock, not a
    pid, says it is alive, so a lease dies with its process whatever pid comes next. release() when done."""

    def __init__(self, repo_id: str, path: Path, fd: int):
        self.repo_id = repo_id
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)  # and with it the lock
            self._fd = None


class ModelCache:
    def __init__(self, cache_dir: Path, budget_bytes: int, min_free_bytes: int = 0,
                 free_disk: Callable[[Path], int] | None = None):
        self.cache_dir = Path(cache_dir)
        self.budget_bytes = budget_bytes
        self.min_free_bytes = min_free_bytes  # the disk keeps this much free after a download ([trials])
        self._free_disk = free_disk or free_disk_bytes

    def usage(self) -> int:
        """Bytes on disk under the cache directory."""
        return _disk_bytes(self.cache_dir)

    def models(self) -> list[CachedModel]:
        """Every cached repo, least recently used first."""
        if not self.cache_dir.is_dir():
            return []
        found = [
            CachedModel(_repo_id(path), path, _disk_bytes(path), _last_modified(path))
            for path in self.cache_dir.iterdir()
            if path.name.startswith(REPO_PREFIX) and path.is_dir()
        ]
        return sorted(found, key=lambda model: model.last_used)

    def make_room(self, needed_bytes: int, *, keep: Set[str] = frozenset()) -> list[str]:
        """Delete least recently used models (never those in `keep`) until `needed_bytes` more fit in the budget
        and leave the disk at least `min_free_bytes` free (the trial's admission counted what deleting could
        free; the worker checks the disk again before its first byte). Returns the deleted repo ids. Raises
        ModelCacheFull, deleting nothing, when they cannot fit."""
        with self._cache_lock():
            if needed_bytes > self.budget_bytes:
                raise ModelCacheFull(
                    f"the model needs {human_bytes(needed_bytes)}, more than the whole model cache "
                    f"({human_bytes(self.budget_bytes)})"
                )
            keep = set(keep) | self.leased()  # what a trial, of this process or another, is using
            usage, free = self.usage(), self._free_disk(self.cache_dir)
            evict: list[CachedModel] = []
            for model in self.models():
                if usage + needed_bytes <= self.budget_bytes and free - needed_bytes >= self.min_free_bytes:
                    break
                if model.repo_id not in keep:
                    evict.append(model)
                    usage -= model.size
                    free += model.size
            if usage + needed_bytes > self.budget_bytes:
                raise ModelCacheFull(
                    f"the model needs {human_bytes(needed_bytes)}, but only {human_bytes(max(0, self.budget_bytes - usage))} "
                    f"of the model cache ({human_bytes(self.budget_bytes)}) can be made free: the rest is kept"
                )
            if free - needed_bytes < self.min_free_bytes:
                raise ModelCacheFull(
                    f"the model needs {human_bytes(needed_bytes)}, which would leave less than "
                    f"{human_bytes(self.min_free_bytes)} free on disk even with every model canrun may delete gone "
                    f"({human_bytes(free)} free then)"
                )
            for model in evict:
                self._delete(model.repo_id)
            return [model.repo_id for model in evict]

    def available_bytes(self) -> int:
        """Free disk where models go, plus what evicting the whole cache could free."""
        return free_disk_bytes(self.cache_dir) + self.usage()

    def reserve(self, repo_id: str, total_bytes: int) -> Lease:
        """Before a trial: lease the repo and make room for its download. Raises ModelCacheFull, holding nothing,
        when it cannot fit."""
        lease = self.lease(repo_id)
        try:
            self.make_room_for(repo_id, total_bytes)
        except BaseException:
            lease.release()
            raise
        return lease

    def after_trial(self, repo_id: str, lease: Lease | None, *, keep: bool) -> None:
        """After a trial (whatever its end): its lease ends, and its model stays as just used, or goes."""
        if lease is not None:
            lease.release()
        if keep:
            self.touch(repo_id)
        else:
            self.remove(repo_id)

    def make_room_for(self, repo_id: str, total_bytes: int) -> list[str]:
        """make_room for a repo's download of `total_bytes`: what of it is already on disk (kept from an earlier
        trial, or left by an interrupted one) needs no new room."""
        missing = max(0, total_bytes - _disk_bytes(self._path(repo_id)))
        return self.make_room(missing, keep={repo_id})

    def remove(self, repo_id: str) -> bool:
        """Delete a repo's files. False when it was not cached, or is in use (leased) by a trial."""
        with self._cache_lock():
            if not self._path(repo_id).is_dir() or repo_id in self.leased():
                return False
            self._delete(repo_id)
            return True

    def lease(self, repo_id: str) -> Lease:
        """Mark a repo in use while a trial downloads and loads it: neither the bot nor `canrun trial` (both may run
        on this Mac, sharing the cache) deletes it until the lease is released or its process is gone."""
        with self._cache_lock():  # not while another process is between checking leases and deleting
            path = self.cache_dir / LEASES_DIR / f"{repo_folder_name(repo_id=repo_id, repo_type='model')}@{uuid.uuid4().hex}"
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            return Lease(repo_id, path, fd)

    def leased(self) -> set[str]:
        """Repos with a live lease; the files of dead leases are cleared."""
        leases = self.cache_dir / LEASES_DIR
        if not leases.is_dir():
            return set()
        live = set()
        for path in leases.iterdir():
            if path.name == CACHE_LOCK:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:  # released meanwhile
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its holder is alive (this process included: another open file)
                live.add(_repo_id(Path(path.name.partition("@")[0])))
            else:
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return live

    @contextmanager
    def _cache_lock(self) -> Iterator[None]:
        """One process at a time leases, or checks leases and deletes (cache-wide, across processes)."""
        leases = self.cache_dir / LEASES_DIR
        leases.mkdir(parents=True, exist_ok=True)
        fd = os.open(leases / CACHE_LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def touch(self, repo_id: str) -> None:
        """Mark a repo as just used."""
        path = self._path(repo_id)
        if path.is_dir():
            os.utime(path)

    def _path(self, repo_id: str) -> Path:
        return self.cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model")

    def _delete(self, repo_id: str) -> None:
        folder = repo_folder_name(repo_id=repo_id, repo_type="model")
        shutil.rmtree(self.cache_dir / folder)
        shutil.rmtree(self.cache_dir / ".locks" / folder, ignore_errors=True)  # the hub's lock files for it


def free_disk_bytes(path: Path) -> int:
    """Free bytes on the disk that holds `path`, which need not exist yet."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def _repo_id(path: Path) -> str:
    return path.name.removeprefix(REPO_PREFIX).replace("--", "/")  # the hub forbids "--" in repo names


def _walk(root: Path) -> Iterator[os.stat_result]:
    """lstat of `root` and of everything under it; symlinks are not followed."""
    yield root.lstat()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            try:
                yield os.lstat(os.path.join(folder, name))
            except FileNotFoundError:  # a download finished (renamed) while we looked
                continue


def _disk_bytes(root: Path) -> int:
    if not root.exists():
        return 0
    return sum(st.st_size for st in _walk(root) if stat.S_ISREG(st.st_mode))


def _last_modified(root: Path) -> float:
    return max(st.st_mtime for st in _walk(root))
