"""Turn what a learner pastes into a Hugging Face model id (`org/name`) and an optional revision.

Only ids ever leave this module, never paths: mlx-lm treats an existing local path as a model
folder, so a "repo" like `../../etc` must never reach it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from bot.core.errors import CanrunUserError

# The hub's own rule (huggingface_hub.utils.validate_repo_id), ASCII only: `org/name`, or a legacy `name`
# without an organisation (`gpt2`, `bert-base-uncased`), which the hub redirects to its current home.
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"(?:{_PART}/)?{_PART}")
_HUB_HOSTS = {"huggingface.co", "www.huggingface.co", "hf.co"}
# Where links to a repo point unless `[hub] endpoint` (config.hf_endpoint) names another hub.
HUB_URL = "https://huggingface.co"
# Path segments after org/name in a pasted URL that carry a revision: /tree/REV, /blob/REV/file, /resolve/REV/file
_REVISION_SEGMENTS = {"tree", "blob", "resolve", "commit"}
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


DEFAULT_BRANCH = "main"  # Hugging Face's; a pasted .../tree/main link names it


def is_default_branch(revision: str | None) -> bool:
    """No revision, or the default branch by name: the model people mean when they name a repo."""
    return revision is None or revision == DEFAULT_BRANCH


ECHO_CHARS = 80  # of a user's input repeated in an error message: enough to recognise it, never a wall of text


class RepoIdError(CanrunUserError, ValueError):
    """The input is not a model id or a Hugging Face model URL. The message is for the user."""


def clean_input(text: str | None) -> str:
    """What was pasted, without the invisible characters web pages carry along (U+200E left-to-right marks,
    zero-width spaces, a BOM...: Unicode's format characters) and without surrounding whitespace."""
    return "".join(ch for ch in (text or "") if unicodedata.category(ch) != "Cf").strip()


def echo(text: str | None, limit: int = ECHO_CHARS) -> str:
    """The user's input, quoted for an error message and cut to `limit` characters."""
    cleaned = clean_input(text)
    return repr(cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…")


@dataclass(frozen=True)
class RepoRef:
    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo_id if self.revision is None else f"{self.repo_id}@{self.revision}"


def parse_repo(text: str, revision: str | None = None) -> RepoRef:
    """Parse `org/name`, `org/name@rev` or a huggingface.co URL. An explicit `revision` wins over one in the URL."""
    raw = clean_input(text).strip("<>").strip()
    if not raw:
        raise RepoIdError("Give a model id like `mlx-community/Qwen3-0.6B-4bit`.")
    if len(raw) > 500:
        raise RepoIdError("That is too long to be a model id.")

    url_revision = None
    if "://" in raw or raw.split("/", 1)[0].lower() in _HUB_HOSTS:
        repo_id, url_revision = _from_url(raw if "://" in raw else "https://" + raw)
    else:
        repo_id = raw
        if "@" in raw:
            repo_id, url_revision = raw.rsplit("@", 1)

    if repo_id.endswith(".git") and _REPO_ID.fullmatch(repo_id.removesuffix(".git")):
        raise RepoIdError(f"That is a git address: the model id is `{repo_id.removesuffix('.git')}`, without `.git`.")
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id:
        raise RepoIdError(
            "A model id looks like `org/name` (letters, digits, `-`, `_`, `.`), "
            "or paste the model's huggingface.co link."
        )
    chosen = revision if revision not in (None, "") else url_revision
    if chosen is not None:
        chosen = chosen.strip()
        if not _REVISION.fullmatch(chosen) or ".." in chosen:
            raise RepoIdError("A revision is a branch, tag or commit id, like `main` or `a1b2c3d`.")
    return RepoRef(repo_id, chosen)


def _from_url(raw: str) -> tuple[str, str | None]:
    try:
        parts = urlsplit(raw)
    except ValueError as e:
        raise RepoIdError("That link could not be read.") from e
    if (parts.hostname or "").lower() not in _HUB_HOSTS:
        raise RepoIdError("Only huggingface.co model links are understood.")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if segments and segments[0] in ("datasets", "spaces"):
        raise RepoIdError("That link is a dataset or a Space, not a model.")
    if segments and segments[0] == "models":  # huggingface.co/models/org/name is an old form
        segments = segments[1:]
    if len(segments) < 2:
        raise RepoIdError("That link does not point at a model (expected huggingface.co/org/name).")
    repo_id = f"{segments[0]}/{segments[1]}"
    revision = None
    if len(segments) >= 4 and segments[2] in _REVISION_SEGMENTS:
        revision = segments[3]
    return repo_id, revision
