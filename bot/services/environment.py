"""A fingerprint of the installed packages, for caches whose answers depend on more than mlx-lm's version.

What mlx-lm can load depends on what else is installed: a model module that imports a package (olmo needs
ai2-olmo), a tokenizer that needs sentencepiece or tiktoken, transformers itself. canrun's own advice is often
"install X"; once the owner has, an answer cached under the same mlx-lm and mlx versions must not keep saying no.
"""

from __future__ import annotations

import functools
import hashlib
from importlib.metadata import distributions


@functools.cache  # reading every distribution's metadata takes ~0.1 s; a running process keeps what it imported
def installed_fingerprint() -> str:
    """A short hash of every installed distribution's name and version (this interpreter's environment, as it
    was when this process first asked)."""
    found = sorted({f"{(d.metadata['Name'] or '?').lower()}=={d.version}" for d in distributions()})
    return hashlib.sha256("\n".join(found).encode()).hexdigest()[:16]
