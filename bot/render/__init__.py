"""Turning verdicts into text: plain terminal text, JSON lines, and (bot.discord) embeds."""
