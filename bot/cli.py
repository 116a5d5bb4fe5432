"""The `canrun` command: check | list architectures | trial | migrate | bot | secrets | service | host (and the internal trial-worker).

Exit codes (contract): 0 every repo got a verdict, 2 malformed input or configuration,
1 a repo could not be checked (Hugging Face unreachable) or the store failed.
`canrun trial` has its own (TRIAL_HELP): 0 loaded and generated, 1 refused / failed / timed out, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence

from bot.cli_exit import EXIT_OK, EXIT_UNCHECKED, EXIT_USAGE
from bot.cli_host import add_host_parser
from bot.cli_logging import cli_logging
from bot.cli_record import add_record_parser
from bot.cli_secrets import add_secrets_parser
from bot.cli_service import add_service_parser
from bot.config import Config, ConfigError, load_config
from bot.core.repo_id import RepoIdError, RepoRef, echo, parse_repo

log = logging.getLogger(__name__)

NO_TOKEN_HELP = """\
canrun: DISCORD_TOKEN is not set (neither in the environment nor in the keychain), so the bot cannot start.

To get a token:
  1. Open https://discord.com/developers/applications and create a New Application.
  2. Under "Bot", press "Reset Token", copy it, and keep it secret.
  3. Under "OAuth2 → URL Generator", tick the scopes `bot` and `applications.commands`,
     open the generated URL and invite the bot to your server.
  4. Store it in the system keychain (asked without echo), then start the bot:
       .venv/bin/canrun secrets set DISCORD_TOKEN
       make run
     or, without a keychain:  DISCORD_TOKEN=... make run

Meanwhile the same verdicts work in the terminal:
  .venv/bin/canrun check mlx-community/Qwen3-0.6B-4bit
"""

TRIAL_HELP = """\
Download REPO, load it with mlx_lm.load() and generate a few tokens, in the same worker process as the bot's
/trial: progress on stderr, the result on stdout.

The verdict and the [trials] limits of the config come first (download size, memory share, free disk), and what
the bot would refuse is refused here too. [trials] enabled is not needed: it lets Discord members start trials,
while running this command is the owner's own choice. Models go to [trials] cache_dir, within cache_budget_gb,
and are deleted after the trial unless keep_after_trial. Each phase has its [trials] time limit. Ctrl-C stops
the trial and kills the worker.

The result is not added to the bot's trial history (/trials): that table records Discord trials (who asked,
where), and the end of a trial there also settles predictions, which is the bot's job.

exit codes: 0 the model loaded and generated text; 1 no trial (refused by the verdict or the limits, Hugging
Face unreachable), or the trial failed or timed out; 2 malformed input or configuration; 130 interrupted by
Ctrl-C (128 + the signal number).
"""


CHECK_EXIT_CODES = """\
exit codes: 0 every repo got a verdict (whatever it says: `not_found` and `gated` are verdicts too); 1 a repo
could not be checked (Hugging Face unreachable or rate limiting; with --json its object has "verdict": null and
an "error"), or the local database failed; 2 malformed input or configuration, nothing checked.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep its message short and friendly
        self.print_usage(sys.stderr)
        print(f"canrun: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _common_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--config", default=default, help="config file (default: $CANRUN_CONFIG or ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log what happens to stderr")


def build_parser() -> argparse.ArgumentParser:
    # The options common to all commands go before the command or after it. After it, their default is SUPPRESS:
    # otherwise the subcommand's defaults would overwrite what was given before it (`canrun -v check ...`).
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, argparse.SUPPRESS)

    parser = _Parser(prog="canrun", description="Will this Hugging Face model load in mlx-lm?")
    _common_options(parser, None)
    parser.set_defaults(verbose=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = sub.add_parser("check", parents=[common], help="verdict for one or more repos", epilog=CHECK_EXIT_CODES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("repos", nargs="*", metavar="REPO", help="org/name or a huggingface.co model URL")
    check.add_argument("--revision", help="branch, tag or commit (default: the repo's default branch)")
    check.add_argument("--json", action="store_true", help="one JSON object per repo per line")
    check.add_argument("--refresh", action="store_true", help="ignore cached metadata")
    check.add_argument("--list-architectures", action="store_true",
                       help="print every model_type the installed mlx-lm accepts")

    trial = sub.add_parser("trial", parents=[common], help="really load a model with mlx-lm here, with a progress bar",
                           description=TRIAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    trial.add_argument("repo", metavar="REPO", help="org/name or a huggingface.co model URL")
    trial.add_argument("--revision", help="branch, tag or commit (default: the repo's default branch)")
    trial.add_argument("--prompt", help="what to generate from (default: [trials] default_prompt)")
    trial.add_argument("--max-tokens", type=_positive_int, metavar="N",
                       help="tokens to generate (default: [trials] default_max_tokens, at most max_tokens_limit)")
    trial.add_argument("--json", action="store_true", help="one JSON object instead of text")

    sub.add_parser("migrate", parents=[common], help="apply database migrations and exit")
    sub.add_parser("bot", parents=[common], help="run the Discord bot (token: DISCORD_TOKEN, from the environment or the keychain)")
    add_secrets_parser(sub, common, _Parser)
    add_service_parser(sub, common, _Parser)
    add_host_parser(sub, common)
    add_record_parser(sub, common)

    sub.metavar = "{" + ",".join(sub.choices) + "}"  # the internal commands below stay out of the help
    worker = sub.add_parser("trial-worker")  # started by the bot for a trial load: bot/services/trial_runner.py
    # Either the job on the command line, or --wait: import mlx-lm first, then read the job as one JSON line
    # on stdin (a worker started ahead, so a trial does not wait for the import).
    worker.add_argument("--wait", action="store_true")
    worker.add_argument("--repo")
    worker.add_argument("--revision")
    worker.add_argument("--prompt")
    worker.add_argument("--max-tokens", type=int)
    worker.add_argument("--cache-dir")
    worker.add_argument("--endpoint")
    worker.add_argument("--max-download-bytes", type=int)
    worker.add_argument("--min-free-disk-bytes", type=int)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already explained on stderr
        return int(e.code or 0)
    if args.command == "trial-worker":  # needs no configuration: the bot passes everything it needs
        from bot.services import trial_worker

        return trial_worker.main(args)
    if args.command == "secrets":  # needs no configuration: a broken config.toml must not keep a token out
        from bot.cli_secrets import run_secrets

        with cli_logging(args.verbose):
            return run_secrets(args)
    with cli_logging(args.verbose):
        try:
            return _run(args)
        except BrokenPipeError:
            return _stdout_closed()


def _run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"canrun: configuration error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "check":
            return asyncio.run(_check(args, config))
        if args.command == "trial":
            from bot.cli_trial import run_trial

            return asyncio.run(run_trial(args, config))
        if args.command == "migrate":
            return asyncio.run(_migrate(config))
        if args.command == "bot":
            return _bot(config)
        if args.command == "host":
            from bot.cli_host import run_host

            return run_host(args, config)
        if args.command == "record":
            from bot.cli_record import run_record

            return asyncio.run(run_record(args, config))
        if args.command == "service":
            from bot.cli_service import run_service

            return run_service(args, config)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise
    except Exception as e:  # noqa: BLE001 - a user sees a sentence, the details go to the log (-v)
        log.debug("unexpected error", exc_info=True)
        print(f"canrun: {type(e).__name__}: {e} (run with -v for details)", file=sys.stderr)
        return EXIT_UNCHECKED
    raise AssertionError(args.command)


def _stdout_closed() -> int:
    """The reader of stdout went away (`canrun check A B | head -1`): stop quietly. As the Python docs advise,
    stdout is pointed at devnull, so that the interpreter's last flush at exit does not fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_UNCHECKED


async def _migrate(config: Config) -> int:
    from bot.services.store import MigrationError, Store

    store = await Store.open(config.path(config.store.path))
    try:
        applied = await store.migrate()
    except MigrationError as e:
        print(f"canrun: {e}", file=sys.stderr)
        return EXIT_UNCHECKED
    finally:
        await store.close()
    names = ", ".join(f"{m.version:03d}_{m.name}" for m in applied) or "none (up to date)"
    print(f"migrations applied: {names}")
    return EXIT_OK


async def _check(args: argparse.Namespace, config: Config) -> int:
    if not args.repos and not args.list_architectures:
        print("canrun: give at least one repo, e.g. `canrun check mlx-community/Qwen3-0.6B-4bit`", file=sys.stderr)
        return EXIT_USAGE
    refs: list[RepoRef] = []
    bad = False
    for text in args.repos:
        try:
            refs.append(parse_repo(text, args.revision))
        except RepoIdError as e:
            print(f"canrun: {echo(text)}: {e}", file=sys.stderr)
            bad = True
    if bad:
        return EXIT_USAGE

    from bot.render.check_result import unchecked_json
    from bot.render.text import render_verdict
    from bot.services.answers import Audience, CanrunAnswers
    from bot.services.hub import HubUnavailable

    answers = await CanrunAnswers.open(config)
    try:
        if args.list_architectures:
            _print_architectures(answers.checker.table, args.json)
        code = EXIT_OK
        for ref in refs:
            try:  # the terminal always checks again: no reuse of a recent answer
                answer = await answers.answer(ref, Audience("cli"), refresh=args.refresh, reuse_recent=False)
            except HubUnavailable as e:
                print(f"canrun: {ref}: could not check: {e}", file=sys.stderr)
                if args.json:  # one object per repo, the failed ones included
                    print(json.dumps(unchecked_json(ref, str(e))), flush=True)
                code = EXIT_UNCHECKED
                continue
            if args.json:
                print(json.dumps(answer.verdict.to_json()), flush=True)
            else:
                print(render_verdict(answer.verdict, answers.checker.host) + "\n", flush=True)
        return code
    finally:
        await answers.close()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _print_architectures(table, as_json: bool) -> None:
    rows = table.rows()
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"model types accepted by mlx-lm {table.mlx_lm_version} ({sum(r['loads'] for r in rows)} of {len(rows)}):")
    for row in rows:
        target = row["module"] if row["module"] == row["model_type"] else f"{row['module']} ({row['remapped_by']})"
        status = "" if row["loads"] else f"  NOT LOADABLE: {row['needs']}"
        print(f"  {row['model_type']:<28} {target}{status}")


def _bot(config: Config) -> int:
    if not config.discord_token:
        print(NO_TOKEN_HELP, file=sys.stderr)
        return EXIT_USAGE
    from bot.discord.app import run_bot

    return run_bot(config)
