"""`canrun check --json` for a repo that got no verdict: the keys of a verdict's object, so that a script reading
one object per repo finds every repo, with `verdict: null`, nothing known, and the `error` that stopped it."""

from __future__ import annotations

from typing import Any

from bot.core.repo_id import RepoRef
from bot.core.verdicts import Verdict


def unchecked_json(ref: RepoRef, error: str) -> dict[str, Any]:
    # Built from a Verdict's own object, so a key added to verdicts appears here too (empty).
    template = Verdict(repo=ref.repo_id, verdict="", revision=ref.revision).to_json()
    unknown = {key: type(value)() if isinstance(value, (list, dict)) else None for key, value in template.items()}
    return {**unknown, "repo": ref.repo_id, "revision": ref.revision, "verdict": None, "error": error}
