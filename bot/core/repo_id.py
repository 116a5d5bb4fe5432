"""Turn what a learner pastes into a Hugging Face model id (`org/name`) and an optional revision.

Only ids ever leave this module, never paths: mlx-lm treats an existing local path as a model
folder, so a "repo" like `../../etc` must never reach it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# The hub's own rule (huggingface_hub.utils.validate_repo_id), narrowed to `org/name`.
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"({_PART})/({_PART})")
_HUB_HOSTS = {"huggingface.co", "www.huggingface.co", "hf.co"}
# Path segments after org/name in a pasted URL that carry a revision: /tree/REV, /blob/REV/file, /resolve/REV/file
_REVISION_SEGMENTS = {"tree", "blob", "resolve", "commit"}
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


DEFAULT_BRANCH = "main"  # Hugging Face's; a pasted .../tree/main link names it


def is_default_branch(revision: str | None) -> bool:
    """No revision, or the default branch by name: the model people mean when they name a repo."""
    return revision is None or revision == DEFAULT_BRANCH


class RepoIdError(ValueError):
    """The input is not a model id or a Hugging Face model URL. The message is for the user."""


@dataclass(frozen=True)
class RepoRef:
    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo_id if self.revision is None else f"{self.repo_id}@{self.revision}"


def parse_repo(text: str, revision: str | None = None) -> RepoRef:
    """Parse `org/name`, `org/name@rev` or a huggingface.co URL. An explicit `revision` wins over one in the URL."""
    raw = (text or "").strip().strip("<>").strip()
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

    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id:
        if "/" not in repo_id and re.fullmatch(_PART, repo_id):
            raise RepoIdError(
                f"`{repo_id}` needs its organisation: use the full id shown on the model page, "
                "like `openai-community/gpt2`."
            )
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
