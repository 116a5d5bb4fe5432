"""A fake GitHub REST API: issue search, file contents and latest release, with GitHub's rate-limit behaviour.

    with FakeGitHub() as gh:
        gh.add_issue(101, "Add support for qwen3_next", pull_request=True)
        gh.add_file("mlx_lm/models/qwen3_next.py", ref="main")
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.threaded import ThreadedServer


@dataclass
class FakeIssue:
    number: int
    title: str
    body: str = ""
    pull_request: bool = False
    state: str = "open"
    user: str = "contributor"


@dataclass
class FakeGitHub(ThreadedServer):
    repo: str = "ml-explore/mlx-lm"
    latency: float = 0.0
    search_limit: int = 10  # GitHub's unauthenticated search allowance per minute
    issues: list[FakeIssue] = field(default_factory=list)
    files: dict[str, set[str]] = field(default_factory=dict)  # ref -> paths
    texts: dict[tuple[str, str], str] = field(default_factory=dict)  # (ref, path) -> file content
    latest_release: str | None = None
    fail_status: int | None = None  # answer every request with this status (a broken GitHub)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (path, query string, headers)

    def __post_init__(self) -> None:
        ThreadedServer.__init__(self)
        self._lock = threading.Lock()
        self._search_used = 0

    def add_issue(self, number: int, title: str, body: str = "", *, pull_request: bool = False, state: str = "open") -> None:
        self.issues.append(FakeIssue(number, title, body, pull_request, state))

    def add_file(self, path: str, ref: str = "main", text: str = "") -> None:
        self.files.setdefault(ref, set()).add(path)
        self.texts[(ref, path)] = text

    def count(self, path_contains: str = "") -> int:
        with self._lock:
            return sum(1 for p, _, _ in self.requests if path_contains in p)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/search/issues", self._search)
        app.router.add_get("/repos/{owner}/{name}/contents/{path:.+}", self._contents)
        app.router.add_get("/repos/{owner}/{name}/releases/latest", self._latest)
        app.middlewares.append(self._common)
        return app

    @web.middleware
    async def _common(self, request: web.Request, handler):
        with self._lock:
            self.requests.append((request.path, request.query_string, dict(request.headers)))
        await asyncio.sleep(self.latency)
        if self.fail_status is not None:
            return web.json_response({"message": "Server Error"}, status=self.fail_status)
        return await handler(request)

    async def _search(self, request: web.Request) -> web.Response:
        reset = str(int(time.time()) + 60)
        with self._lock:
            self._search_used += 1
            remaining = self.search_limit - self._search_used
        headers = {"X-RateLimit-Limit": str(self.search_limit), "X-RateLimit-Remaining": str(max(0, remaining)),
                   "X-RateLimit-Reset": reset, "X-RateLimit-Resource": "search"}
        if remaining < 0:
            return web.json_response(
                {"message": "API rate limit exceeded for 127.0.0.1.", "documentation_url": "https://docs.github.com/rest"},
                status=403, headers=headers,
            )
        words, qualifiers = _parse_query(request.query.get("q", ""))
        items = [
            _issue_json(self.repo, i) for i in self.issues
            if qualifiers.get("repo", self.repo) == self.repo
            and (qualifiers.get("state") in (None, i.state))
            and (qualifiers.get("is") not in ("pr", "issue") or (qualifiers["is"] == "pr") == i.pull_request)
            and all(w.lower() in f"{i.title} {i.body}".lower() for w in words)
        ]
        per_page = int(request.query.get("per_page", 30))
        return web.json_response(
            {"total_count": len(items), "incomplete_results": False, "items": items[:per_page]}, headers=headers
        )

    async def _contents(self, request: web.Request) -> web.Response:
        if f"{request.match_info['owner']}/{request.match_info['name']}" != self.repo:
            return web.json_response({"message": "Not Found"}, status=404)
        ref = request.query.get("ref", "main")
        path = request.match_info["path"]
        if path not in self.files.get(ref, set()):
            return web.json_response({"message": "Not Found"}, status=404)
        return web.json_response({
            "type": "file", "name": path.rsplit("/", 1)[-1], "path": path, "sha": "0" * 40,
            "size": len(text := self.texts.get((ref, path), "").encode()),
            "html_url": f"https://github.com/{self.repo}/blob/{ref}/{path}",
            "encoding": "base64", "content": base64.encodebytes(text).decode(),  # GitHub wraps it in lines too
        })

    async def _latest(self, request: web.Request) -> web.Response:
        if self.latest_release is None:
            return web.json_response({"message": "Not Found"}, status=404)
        tag = self.latest_release
        return web.json_response(
            {"tag_name": tag, "name": tag, "html_url": f"https://github.com/{self.repo}/releases/tag/{tag}"}
        )


def _parse_query(q: str) -> tuple[list[str], dict[str, str]]:
    words, qualifiers = [], {}
    for token in q.split():
        key, sep, value = token.partition(":")
        if sep and key in ("repo", "is", "state", "in", "type"):
            if key == "is" and value in ("open", "closed"):
                qualifiers["state"] = value
            elif key == "type":
                qualifiers["is"] = value
            else:
                qualifiers[key] = value
        else:
            words.append(token.strip('"'))
    return words, qualifiers


def _issue_json(repo: str, i: FakeIssue) -> dict:
    kind = "pull" if i.pull_request else "issues"
    item = {
        "number": i.number, "title": i.title, "state": i.state, "body": i.body,
        "html_url": f"https://github.com/{repo}/{kind}/{i.number}",
        "user": {"login": i.user}, "updated_at": "2026-11-01T00:00:00Z",
    }
    if i.pull_request:
        item["pull_request"] = {"html_url": item["html_url"]}
    return item
