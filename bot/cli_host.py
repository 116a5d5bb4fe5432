"""`canrun host [--json]`: what canrun measures models against here (the host model, bot/core/host_model.py)."""

from __future__ import annotations

import argparse
import json

from bot.config import Config
from bot.core.units import human_bytes


def add_host_parser(sub, common: argparse.ArgumentParser) -> None:
    host = sub.add_parser("host", parents=[common], help="what MLX computes on here, and the memory budget")
    host.add_argument("--json", action="store_true", help="one JSON object instead of text")


def run_host(args: argparse.Namespace, config: Config) -> int:
    from bot.services.host import this_host

    host = this_host(config.memory.budget_gb)
    if args.json:
        print(json.dumps(host.to_json()))
        return 0
    print(f"host:    {host.name}")
    print(f"kind:    {host.kind_label}")
    print(f"device:  {host.device}")
    print(f"memory:  {human_bytes(host.memory.budget_bytes)} ({host.memory.source})")
    return 0
