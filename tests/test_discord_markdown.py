"""Discord shows canrun's own formatting (code spans in verdict reasons and refusals) and escapes what comes from
repos and users: through the fake Discord, with the production bot and an unmodified discord.py."""

from __future__ import annotations

import json
import re

from tests.fakes.hub import FakeRepo
from tests.fakes.hub_zoo import QWEN3, TOKENIZER_JSON, weights
from tests.test_discord_bot import fake, final_edit, make_config, start_bot  # noqa: F401 - fixtures

# A model_type that tries to end canrun's code span early and then style, mention and link.
BREAKOUT = "x` **bold** __under__ ~~gone~~ ||spoiler|| <@123456789> [phish](https://evil.example/x) `y"


def unescaped_markdown(text: str) -> list[str]:
    """Markdown that Discord would act on in `text`, outside code spans: what escaping must leave none of."""
    found, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":  # an escaped character is shown as itself
            i += 2
            continue
        if ch == "`":  # a code span: markdown is inert up to the closing backtick
            end = text.find("`", i + 1)
            if end == -1:
                found.append("unclosed `")
                break
            i = end + 1
            continue
        if ch in "*_~|" or text.startswith("<@", i) or (ch == "[" and re.match(r"\[[^\]]*\]\(", text[i:])):
            found.append(text[i:i + 12])
        i += 1
    return found


def reasons_of(payload) -> list[str]:
    return [line[2:] for line in payload["embeds"][0]["description"].splitlines() if line.startswith("• ")]


async def test_canruns_code_spans_render_and_repo_text_stays_escaped(fake, start_bot, zoo_hub):
    zoo_hub.add_repo(FakeRepo("md-lab/Breakout", {
        "config.json": {**QWEN3, "model_type": BREAKOUT}, "model.safetensors": weights(10),
        "tokenizer.json": TOKENIZER_JSON}))
    await start_bot()

    own = await final_edit(fake, await fake.send_slash_command("canrun", {"repo": "odd-lab/custom-model-file"}))
    reasons = reasons_of(own)
    assert any("`model_file`" in r for r in reasons), reasons  # a code span, not \`model\_file\`
    assert not any("\\`" in r for r in reasons)

    evil = await final_edit(fake, await fake.send_slash_command("canrun", {"repo": "md-lab/Breakout"}))
    reasons = reasons_of(evil)
    assert any("`x`" in r for r in reasons), reasons  # canrun's span around the model_type still renders
    for reason in reasons:
        assert unescaped_markdown(reason) == [], reason
    assert "<@123456789>" not in json.dumps(evil, ensure_ascii=False)
    assert evil["allowed_mentions"] == {"parse": []}


async def test_a_trial_refusal_shows_the_verdict_as_code(fake, start_bot):
    await start_bot(trials={"enabled": True, "min_free_disk_gb": 0.0})
    interaction = await fake.send_slash_command("trial", {"repo": "odd-lab/custom-model-file"}, user=fake.owner)
    edit = await fake.wait_for_request("PATCH", f"{interaction.token}/messages/@original")
    content = edit.json["content"]
    assert "canrun's verdict is `remote_code`" in content, content
    assert unescaped_markdown(content.split(": ", 1)[1]) == []
