"""Text from users, model repos and GitHub, made safe for Discord: escaped and cut to Discord's limits.

allowed_mentions is none on every message as well; escaping also stops `<@id>` from *rendering* as a
mention and markdown in a repo name from restyling the embed.
"""

from __future__ import annotations

import re

import discord

# Discord's limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits)
EMBED_TOTAL = 6000
TITLE = 256
DESCRIPTION = 4096
FIELD_NAME = 256
FIELD_VALUE = 1024
FIELDS = 25
FOOTER = 2048
BUTTON_LABEL = 80
CHOICE_NAME = 100
CHOICE_VALUE = 100
CHOICES = 25
CONTENT = 2000

_URL = re.compile(r"^https?://[^\s<>]+$")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
# A link to a repo, whole: its id (Hugging Face allows 96 characters, up to twice that escaped, a revision beside
# it), the hub URL again and the markdown around them. `link` counts the URL too, so a smaller budget clips names.
REPO_LINK_CHARS = 450
CODE_SPAN_CHARS = 300  # a span of canrun's names what a repo holds: a file list, a tensor name


def clip(text: str, limit: int) -> str:
    """Cut to `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _no_mentions(text: str) -> str:
    """Break user/role/channel/command mentions and @everyone/@here with an invisible space."""
    text = discord.utils.escape_mentions(text)
    return re.sub(r"<(#|@&?|/)", "<\u200b\\1", text)


def escape(text: str) -> str:
    """Neutralise markdown and mentions, for running text."""
    return _no_mentions(discord.utils.escape_markdown(str(text)))


def code(text: str, limit: int = 100) -> str:
    """An inline code span that nothing can break out of (markdown is inert inside; backticks are not)."""
    return f"`{clip(_no_mentions(str(text).replace('`', 'ˋ')), limit)}`"


def rich(text: str) -> str:
    """One of canrun's own sentences (a verdict reason, a refusal), which marks names as code spans and carries
    what a repo or user provided (a model_type, file names, an error from mlx-lm): its code spans stay code, the
    rest is escaped. Whatever a repo put inside a span shows literally (markdown is inert in code, and `code`
    leaves no backtick to break out with); a stray backtick outside a pair is escaped like any other text."""
    out, pos = [], 0
    for span in _CODE_SPAN.finditer(text):
        out += [escape(text[pos:span.start()]), code(span.group(1), CODE_SPAN_CHARS)]
        pos = span.end()
    out.append(escape(text[pos:]))
    return "".join(out)


def safe_url(url: str) -> str | None:
    """Only plain http(s) URLs, and never ones that could break out of a markdown link."""
    if not url or not _URL.match(url) or any(c in url for c in "()[]"):
        return None
    return url


def link(title: str, url: str, limit: int) -> str:
    """A markdown link whose title is escaped; the bare title when the URL is not acceptable."""
    target = safe_url(url)
    label = escape(title).replace("[", "(").replace("]", ")")
    if target is None:
        return clip(label, limit)
    return f"[{clip(label, max(1, limit - len(target) - 4))}]({target})"


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """Trim fields from the end, then the description, until the embed is within Discord's total."""
    while len(embed) > EMBED_TOTAL and len(embed.fields) > 1:
        embed.remove_field(len(embed.fields) - 1)
    if len(embed) > EMBED_TOTAL and embed.description:
        excess = len(embed) - EMBED_TOTAL
        embed.description = clip(embed.description, max(0, len(embed.description) - excess))
    return embed
