"""A fake Hugging Face Hub: a real aiohttp server on 127.0.0.1 that the unmodified `huggingface_hub` client talks to.

The server runs its own event loop in a background thread, so synchronous client calls and async tests can both
use it. It speaks the subset of the Hub protocol that `huggingface_hub` 2.x uses for reading model repos: model
info, model listing, tree / paths-info listings and `/resolve` downloads (HEAD, GET, Range).

    with FakeHub() as hub:
        hub.add_repo(FakeRepo("org/model", {"config.json": {"model_type": "llama"}}))
        HfApi(endpoint=hub.endpoint).model_info("org/model")
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDictProxy, MultiMapping

from tests.fakes.threaded import ThreadedServer

# Bytes per element, as named in safetensors headers.
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "U16": 2,
    "I16": 2,
    "F16": 2,
    "BF16": 2,
    "U32": 4,
    "I32": 4,
    "F32": 4,
    "U64": 8,
    "I64": 8,
    "F64": 8,
}

# The extensions that Hub repos track with Git LFS by default.
LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".model")

# LFS files up to this size get their true sha256; bigger ones get a synthetic one, since hashing
# 100 GB of virtual zeros would take minutes.
_MAX_HASHED_SIZE = 64 << 20
_ZEROS = memoryview(bytes(1 << 20))


@dataclass(frozen=True)
class FakeFile:
    """A file in a fake repo. Frozen so that its hashes can be cached."""

    content: bytes = b""  # the real leading bytes, e.g. a safetensors header
    size: int | None = None  # declared size; bytes past `content` are served as zeros
    lfs: bool | None = None  # None: guess from the extension

    def __post_init__(self) -> None:
        if self.size is not None and self.size < len(self.content):
            raise ValueError(f"size {self.size} is smaller than the {len(self.content)} bytes of content")


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, FakeFile | bytes | str | dict] = field(default_factory=dict)  # the "main" branch
    gated: bool | str = False  # False, True (= "auto"), "auto" or "manual"
    private: bool = False
    tags: list[str] = field(default_factory=list)
    card_data: dict | None = None
    downloads: int = 0
    likes: int = 0
    pipeline_tag: str | None = "text-generation"
    library_name: str | None = None
    created_at: str = "2025-01-01T00:00:00.000Z"
    last_modified: str = "2025-01-02T00:00:00.000Z"
    revisions: dict[str, dict[str, FakeFile | bytes | str | dict]] = field(default_factory=dict)  # branches, tags

    @property
    def sha(self) -> str:
        """Commit id of "main"."""
        return _snapshot(self.repo_id, self.files).sha

    def sha_of(self, revision: str) -> str:
        """Commit id of a named revision."""
        return _snapshot(self.repo_id, self.revisions[revision]).sha

    def _resolve(self, revision: str) -> _Snapshot | None:
        """The files at a branch, tag or full commit id."""
        branches = {"main": self.files, **self.revisions}
        if revision in branches:
            return _snapshot(self.repo_id, branches[revision])
        snapshots = (_snapshot(self.repo_id, files) for files in branches.values())
        return next((snapshot for snapshot in snapshots if snapshot.sha == revision), None)


class RecordedRequest(NamedTuple):
    method: str
    path: str  # percent-decoded
    query: MultiMapping[str]  # use .getall() for repeated keys
    headers: CIMultiDictProxy[str]

    @property
    def token(self) -> str | None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None


def safetensors_header(
    tensors: dict[str, tuple[str, list[int]]], metadata: dict | None = None
) -> tuple[bytes, int]:
    """Leading bytes of a safetensors file holding `tensors` ({name: (dtype, shape)}), and the file's total size."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        end = offset + DTYPE_SIZES[dtype] * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, end]}
        offset = end
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the reference writer pads so that tensor data is 8-byte aligned
    prefix = len(encoded).to_bytes(8, "little") + encoded
    return prefix, len(prefix) + offset


def safetensors_file(tensors: dict[str, tuple[str, list[int]]], metadata: dict | None = None) -> FakeFile:
    """A valid safetensors file whose tensors are all zeros."""
    content, size = safetensors_header(tensors, metadata)
    return FakeFile(content, size)


@dataclass(frozen=True)
class _Blob:
    content: bytes
    size: int
    lfs: bool
    blob_id: str  # git object id; for LFS files that of the pointer file, as on the Hub
    sha256: str | None  # LFS only
    pointer_size: int | None  # LFS only

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id

    def chunks(self, start: int, end: int) -> Iterator[bytes | memoryview]:
        """Bytes [start, end): the real content, then zeros generated a chunk at a time."""
        if start < len(self.content):
            yield self.content[start:end]
        position = max(start, len(self.content))
        while position < end:
            chunk = _ZEROS[: end - position]
            yield chunk
            position += len(chunk)


@functools.lru_cache(maxsize=1024)
def _blob(file: FakeFile, lfs: bool) -> _Blob:
    size = len(file.content) if file.size is None else file.size
    if not lfs:
        return _Blob(file.content, size, False, _git_blob_id(file.content), None, None)
    if size <= _MAX_HASHED_SIZE:
        sha256 = hashlib.sha256(file.content + bytes(size - len(file.content))).hexdigest()
    else:
        sha256 = hashlib.sha256(b"fake-lfs:%d:" % size + file.content).hexdigest()
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    return _Blob(file.content, size, True, _git_blob_id(pointer), sha256, len(pointer))


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _as_file(value: FakeFile | bytes | str | dict) -> FakeFile:
    if isinstance(value, FakeFile):
        return value
    if isinstance(value, dict):
        value = json.dumps(value, indent=2)
    return FakeFile(value.encode() if isinstance(value, str) else value)


@dataclass(frozen=True)
class _Snapshot:
    """One revision of a repo: its commit id and files."""

    sha: str
    blobs: dict[str, _Blob]

    @functools.cached_property
    def directories(self) -> set[str]:
        return {path.rsplit("/", i)[0] for path in self.blobs for i in range(1, path.count("/") + 1)}

    def entry(self, path: str) -> dict:
        """A path as the tree and paths-info endpoints describe it."""
        blob = self.blobs.get(path)
        if blob is None:
            oid = hashlib.sha1(f"{self.sha}:{path}".encode()).hexdigest()
            return {"type": "directory", "oid": oid, "size": 0, "path": path}
        entry = {"type": "file", "oid": blob.blob_id, "size": blob.size, "path": path}
        if blob.lfs:
            entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
        return entry


def _snapshot(repo_id: str, files: dict) -> _Snapshot:
    blobs = {}
    for path, value in files.items():
        file = _as_file(value)
        blobs[path] = _blob(file, path.endswith(LFS_SUFFIXES) if file.lfs is None else file.lfs)
    tree = "".join(f"{path}\0{blob.blob_id}\n" for path, blob in sorted(blobs.items()))
    return _Snapshot(hashlib.sha1(f"{repo_id}\n{tree}".encode()).hexdigest(), blobs)


class _HubError(Exception):
    """An error response, with the X-Error-Code header that huggingface_hub maps to its exception classes."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> web.Response:
        headers = {"X-Error-Message": self.message, **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
        return web.json_response({"error": self.message}, status=self.status, headers=headers)


@dataclass
class _Failure:
    status: int
    remaining: int
    path_contains: str
    retry_after: int | None


# Keys of a /api/models listing entry, and the extra ones that `full=true` adds.
_LIST_KEYS = ("likes", "private", "downloads", "tags", "pipeline_tag", "library_name", "createdAt", "modelId")
_FULL_KEYS = ("author", "sha", "lastModified", "gated", "disabled", "siblings")
_SORT_KEYS = {
    "downloads": lambda repo: repo.downloads,
    "likes": lambda repo: repo.likes,
    "createdAt": lambda repo: repo.created_at,
    "lastModified": lambda repo: repo.last_modified,
}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class FakeHub(ThreadedServer):
    def __init__(self, latency: float = 0.0):
        super().__init__()
        self.latency = latency  # seconds of sleep before every response
        self.slow_paths: dict[str, float] = {}  # extra sleep for requests whose path contains the key
        self.authorized_tokens: set[str] = set()  # tokens that may read private repos and download from gated ones
        self.page_size = 1000  # items per page of listings, as on the Hub; lower it to exercise pagination
        self._repos: dict[str, FakeRepo] = {}
        self._requests: list[RecordedRequest] = []
        self.bytes_served: Counter[str] = Counter()  # "repo/path" -> body bytes sent
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """What to pass as `endpoint=` to huggingface_hub, e.g. "http://127.0.0.1:PORT"."""
        return self.url

    def build_app(self) -> web.Application:
        app = web.Application()
        # One catch-all route: repo ids and revisions contain slashes, so _dispatch splits the raw path itself.
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    # -- test controls

    def add_repo(self, repo: FakeRepo) -> FakeRepo:
        self._repos[repo.repo_id] = repo
        return repo

    def fail_next(self, status: int, count: int = 1, path_contains: str = "", retry_after: int | None = None) -> None:
        """Answer the next `count` requests whose path contains `path_contains` with `status`."""
        with self._lock:
            self._failures.append(_Failure(status, count, path_contains, retry_after))

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the log, oldest first."""
        with self._lock:
            return list(self._requests)

    def count(self, method: str | None = None, path_contains: str = "") -> int:
        return sum(1 for r in self.requests if method in (None, r.method) and path_contains in r.path)

    def served(self, repo_id: str, path: str) -> int:
        """Body bytes sent for one file of a repo (whole or ranged GETs), since the last reset_log()."""
        with self._lock:
            return self.bytes_served[f"{repo_id}/{path}"]

    def reset_log(self) -> None:
        with self._lock:
            self._requests.clear()
            self.bytes_served.clear()

    # -- request handling

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = RecordedRequest(request.method, request.path, request.query, request.headers)
        with self._lock:
            self._requests.append(recorded)
            failure = self._take_failure(request.path)
        extra = sum(delay for part, delay in self.slow_paths.items() if part in request.path)
        await asyncio.sleep(self.latency + extra)
        try:
            if failure is not None:
                raise failure
            return await self._dispatch(request, recorded.token)
        except _HubError as error:
            return error.response()

    def _take_failure(self, path: str) -> _HubError | None:
        for failure in self._failures:
            if failure.path_contains in path:
                failure.remaining -= 1
                if failure.remaining == 0:
                    self._failures.remove(failure)
                headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
                return _HubError(failure.status, None, f"Injected failure {failure.status}", headers)
        return None

    async def _dispatch(self, request: web.Request, token: str | None) -> web.StreamResponse:
        # Split the raw path: the client percent-encodes "/" inside revisions such as "refs/pr/1".
        segments = [unquote(s) for s in request.raw_path.partition("?")[0].strip("/").split("/")]
        if segments[:2] == ["api", "models"]:
            if len(segments) == 2 and request.method == "GET":
                return self._list_models(request, token)
            repo, rest = self._find_repo(segments[2:], token)
            match request.method, rest:
                case "GET", []:
                    return self._model_info(request, repo, "main")
                case "GET", ["revision", revision]:
                    return self._model_info(request, repo, revision)
                case "GET", ["tree", revision, *path]:
                    return self._tree(request, repo, revision, "/".join(path))
                case "POST", ["paths-info", revision]:
                    return await self._paths_info(request, repo, revision)
        elif request.method in ("GET", "HEAD"):
            # /{repo_id}/resolve/{revision}/{path}, where repo_id has one or two segments
            for i in (2, 1):
                if len(segments) > i + 2 and segments[i] == "resolve":
                    repo, _ = self._find_repo(segments[:i], token)
                    return await self._resolve(request, repo, segments[i + 1], "/".join(segments[i + 2 :]), token)
        raise _HubError(404, None, "Not Found")

    def _find_repo(self, segments: list[str], token: str | None) -> tuple[FakeRepo, list[str]]:
        for n in (2, 1):
            repo = self._repos.get("/".join(segments[:n]))
            if repo is not None and (not repo.private or token in self.authorized_tokens):
                return repo, segments[n:]
        # The Hub answers 401 to anonymous callers and 404 to authenticated ones, for missing and private repos alike.
        raise _HubError(404 if token else 401, "RepoNotFound", "Repository not found")

    @staticmethod
    def _checkout(repo: FakeRepo, revision: str) -> _Snapshot:
        snapshot = repo._resolve(revision)
        if snapshot is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return snapshot

    # -- /api/models

    def _model_info(self, request: web.Request, repo: FakeRepo, revision: str) -> web.Response:
        info = _info(repo, self._checkout(repo, revision), blobs=_flag(request.query.get("blobs")))
        if expand := _expand(request.query):
            info = _pick(info, expand)
        return web.json_response(info)

    def _list_models(self, request: web.Request, token: str | None) -> web.Response:
        query = request.query
        # list() copies in one step, so a concurrent add_repo cannot break the iteration.
        repos = [r for r in list(self._repos.values()) if not r.private or token in self.authorized_tokens]
        if search := query.get("search"):
            repos = [r for r in repos if search.lower() in r.repo_id.lower()]
        if author := query.get("author"):
            repos = [r for r in repos if _author(r).lower() == author.lower()]
        for tag in query.getall("filter", []):
            # The Hub also lists the library and the pipeline tag among a repo's tags.
            repos = [r for r in repos if tag in {*r.tags, r.library_name, r.pipeline_tag}]
        if pipeline_tag := query.get("pipeline_tag"):
            repos = [r for r in repos if r.pipeline_tag == pipeline_tag]
        if sort_key := _SORT_KEYS.get(query.get("sort", "")):
            repos.sort(key=sort_key, reverse=query.get("direction") != "1")  # the Hub sorts descending by default

        expand = _expand(query)
        keys = [*_LIST_KEYS]
        if _flag(query.get("full")):
            keys += _FULL_KEYS
        if _flag(query.get("cardData")):
            keys.append("cardData")
        if _flag(query.get("config")):
            keys.append("config")
        entries = [_pick(_info(r, self._checkout(r, "main"), blobs=False), expand or keys) for r in repos]
        return self._page(request, entries)

    def _tree(self, request: web.Request, repo: FakeRepo, revision: str, base: str) -> web.Response:
        snapshot = self._checkout(repo, revision)
        if base and base not in snapshot.directories:
            raise _HubError(404, "EntryNotFound", f"{base} does not exist on {revision}")
        prefix = f"{base}/" if base else ""
        recursive = _flag(request.query.get("recursive"))
        paths = sorted(
            path
            for path in (*snapshot.blobs, *snapshot.directories)
            if path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :])
        )
        return self._page(request, [snapshot.entry(path) for path in paths])

    async def _paths_info(self, request: web.Request, repo: FakeRepo, revision: str) -> web.Response:
        snapshot = self._checkout(repo, revision)
        form = await request.post()
        # Paths that do not exist are left out, not reported as errors.
        found = [p for p in form.getall("paths", []) if p in snapshot.blobs or p in snapshot.directories]
        return web.json_response([snapshot.entry(path) for path in found])

    def _page(self, request: web.Request, items: list) -> web.Response:
        """One page of a listing, with a GitHub-style Link header to the next one, as the client expects."""
        start = int(request.query.get("cursor", 0))
        limit = request.query.get("limit")
        size = min(int(limit), self.page_size) if limit else self.page_size
        headers = {}
        if start + size < len(items):
            headers["Link"] = f'<{request.url.update_query(cursor=start + size)}>; rel="next"'
        return web.json_response(items[start : start + size], headers=headers)

    # -- /{repo_id}/resolve/{revision}/{path}

    async def _resolve(
        self, request: web.Request, repo: FakeRepo, revision: str, path: str, token: str | None
    ) -> web.StreamResponse:
        if repo.gated and token not in self.authorized_tokens:
            message = f"Access to model {repo.repo_id} is restricted. You must have access to it and be authenticated."
            raise _HubError(403 if token else 401, "GatedRepo", message)
        snapshot = self._checkout(repo, revision)
        blob = snapshot.blobs.get(path)
        if blob is None:
            # The client caches the miss under this commit id.
            raise _HubError(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": snapshot.sha})

        headers = {
            "X-Repo-Commit": snapshot.sha,
            "ETag": f'"{blob.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if blob.lfs:
            # What the Hub sends along with its redirect to the CDN; here the file is served directly,
            # which the client accepts (the download URL then stays the /resolve one).
            headers["X-Linked-Etag"] = f'"{blob.sha256}"'
            headers["X-Linked-Size"] = str(blob.size)
        start, end, status = 0, blob.size, 200
        if byte_range := _parse_range(request.headers.get("Range"), blob.size):
            start, end = byte_range
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"

        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = end - start
        await response.prepare(request)
        if request.method == "GET":
            try:
                for chunk in blob.chunks(start, end):
                    await response.write(chunk)
                    with self._lock:
                        self.bytes_served[f"{repo.repo_id}/{path}"] += len(chunk)
            except ConnectionResetError:  # the client stopped reading, e.g. it only wanted the first bytes
                return response
        await response.write_eof()
        return response


def _info(repo: FakeRepo, snapshot: _Snapshot, blobs: bool) -> dict:
    """Everything GET /api/models/{repo_id} can return; listings and `expand` select from it."""
    siblings = []
    for path, blob in snapshot.blobs.items():
        sibling: dict = {"rfilename": path}
        if blobs:
            sibling |= {"blobId": blob.blob_id, "size": blob.size}
            if blob.lfs:
                sibling["lfs"] = {"sha256": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
        siblings.append(sibling)
    info = {
        "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": _author(repo),
        "sha": snapshot.sha,
        "lastModified": repo.last_modified,
        "createdAt": repo.created_at,
        "private": repo.private,
        "gated": "auto" if repo.gated is True else repo.gated,
        "disabled": False,
        "downloads": repo.downloads,
        "likes": repo.likes,
        "tags": list(repo.tags),
        "pipeline_tag": repo.pipeline_tag,
        "library_name": repo.library_name,
        "cardData": repo.card_data,
        "config": _config_summary(snapshot),
        "siblings": siblings,
        "spaces": [],
        "safetensors": _safetensors_summary(snapshot),
        "usedStorage": sum(blob.size for blob in snapshot.blobs.values()),
    }
    # The Hub leaves out what a repo does not have rather than sending nulls.
    return {key: value for key, value in info.items() if value is not None}


def _author(repo: FakeRepo) -> str:
    return repo.repo_id.split("/")[0]


def _config_summary(snapshot: _Snapshot) -> dict | None:
    """The few config.json keys the Hub copies into model info."""
    blob = snapshot.blobs.get("config.json")
    try:
        config = json.loads(blob.content) if blob else None
    except ValueError:
        return None
    if not isinstance(config, dict):
        return None
    return {key: config[key] for key in ("architectures", "model_type") if key in config}


def _safetensors_summary(snapshot: _Snapshot) -> dict | None:
    """Parameter counts per dtype over all *.safetensors files whose header is in their content."""
    counts: Counter[str] = Counter()
    for path, blob in snapshot.blobs.items():
        if path.endswith(".safetensors") and len(blob.content) >= 8:
            header_size = int.from_bytes(blob.content[:8], "little")
            try:
                header = json.loads(blob.content[8 : 8 + header_size])
            except ValueError:  # not a safetensors header, or a truncated one
                continue
            for name, tensor in header.items():
                if name != "__metadata__":
                    counts[tensor["dtype"]] += math.prod(tensor["shape"])
    return {"parameters": dict(counts), "total": sum(counts.values())} if counts else None


def _pick(info: dict, keys: list[str]) -> dict:
    return {key: info[key] for key in ("_id", "id", *keys) if key in info}


def _expand(query: MultiMapping[str]) -> list[str]:
    # The client sends `expand=a&expand=b`; the Hub's own docs use `expand[]=a`.
    return query.getall("expand", []) + query.getall("expand[]", [])


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true")


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of a single `bytes=` range; None to serve the whole file (as servers may for odd ranges)."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # suffix range: the last N bytes
        start, end = max(size - int(last), 0), size
    else:
        start, end = int(first), min(int(last) + 1, size) if last else size
    if start >= size or start >= end:
        raise _HubError(416, None, "Requested Range Not Satisfiable", {"Content-Range": f"bytes */{size}"})
    return start, end
