"""`canrun record [--json] [--misses N]`: canrun's record against the bot's trials, per mlx-lm version (the same
as /canrun-record). Reads the store only; exit 0, 2 for malformed options or configuration, 1 when the store fails."""

from __future__ import annotations

import argparse
import json
import sys

from bot.cli_exit import EXIT_OK, EXIT_USAGE
from bot.config import Config
from bot.core.canrun_record import LATEST_MISSES

MAX_MISSES = 50

RECORD_HELP = """\
How often canrun's verdict matched what a trial's mlx_lm.load() really did, its Brier score (each verdict read
as the chance that load() succeeds), and the latest misses with the trial's error, per mlx-lm version. Only the
bot's trials count: a `canrun trial` is kept only for the speed estimates.
"""


def add_record_parser(sub, common: argparse.ArgumentParser) -> None:
    record = sub.add_parser("record", parents=[common], help="canrun's verdicts against the bot's trials",
                            description=RECORD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    record.add_argument("--json", action="store_true", help="one JSON object instead of text")
    record.add_argument("--misses", type=_miss_count, default=LATEST_MISSES, metavar="N",
                        help=f"misses listed per mlx-lm version (default {LATEST_MISSES}, at most {MAX_MISSES})")


def _miss_count(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_MISSES:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {MAX_MISSES}, got {text!r}")
    return int(text)


async def run_record(args: argparse.Namespace, config: Config) -> int:
    from bot.render.canrun_record import record_json, render_record
    from bot.services.canrun_record import canrun_record
    from bot.services.store import Store, StoreNotReady

    try:  # a reader beside the running bot: it neither creates nor migrates the bot's database
        store = await Store.open_to_read(config.path(config.store.path))
    except StoreNotReady as e:
        print(f"canrun: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        rec = await canrun_record(store, args.misses)
    finally:
        await store.close()
    print(json.dumps(record_json(rec)) if args.json else render_record(rec), flush=True)
    return EXIT_OK
