"""`canrun service install | uninstall | status | logs`: the bot started at login and after a crash."""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

from bot.config import Config
from bot.services.service import config_file_of, service_manager, service_spec
from bot.services.service_status import ServiceError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

SERVICE_HELP = """\
Run the bot as a service of your user: on macOS a LaunchAgent (~/Library/LaunchAgents/org.canrun.bot.plist),
on Linux a systemd user unit (~/.config/systemd/user/canrun.service). It runs this checkout's canrun with this
config file, starts at login and again after a crash. The token is never written into the service's file: it
comes from the keychain (`canrun secrets set DISCORD_TOKEN`), or on a Linux without one from
~/.config/canrun/environment, a file you write.

exit codes: 0 done; 1 launchctl / systemctl failed; 2 malformed input, configuration, or no token for the service.
"""


def add_service_parser(sub, common: argparse.ArgumentParser, parser_class: type) -> None:
    service = sub.add_parser("service", parents=[common], help="run the bot at login and after a crash",
                             description=SERVICE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = service.add_subparsers(dest="action", required=True, parser_class=parser_class)
    actions.add_parser("install", parents=[common], help="write the service file and start the bot")
    actions.add_parser("uninstall", parents=[common], help="stop the bot and remove the service file")
    for action, text, default in (("status", "whether it runs, since when, and its last log lines", 10),
                                  ("logs", "the service's last log lines", 50)):
        p = actions.add_parser(action, parents=[common], help=text)
        p.add_argument("-n", "--lines", type=_lines, default=default, metavar="N", help=f"default {default}")


def run_service(args: argparse.Namespace, config: Config, system: str | None = None, home: Path | None = None,
                run=None) -> int:
    """`system`, `home` and `run` are this machine's unless given (tests give a recorder for `run`)."""
    home = home or Path.home()
    try:
        spec = service_spec(config, config_file_of(args.config), home)
        manager = service_manager(system or platform.system(), spec, home, *([run] if run else []))
        if args.action == "install":
            _say(manager.install())
        elif args.action == "uninstall":
            _say(manager.uninstall())
        elif args.action == "logs":
            _say(manager.logs(args.lines) or ["(no log lines yet)"])
        else:
            _print_status(manager, args.lines)
    except ServiceError as e:
        print(f"canrun: {e}", file=sys.stderr)
        return EXIT_USAGE if e.usage else EXIT_FAILED
    except OSError as e:  # the service folder or log folder could not be written
        print(f"canrun: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _print_status(manager, lines: int) -> None:
    status = manager.status(lines)
    if not status.installed:
        print(f"not installed (no {manager.path}): `canrun service install` sets it up")
        return
    state = f"running (pid {status.pid})" if status.running else "not running"
    print(f"{manager.kind} {manager.path}: {state}" + (f" since {status.since}" if status.since else ""))
    if status.detail:
        print(status.detail)
    if status.log_tail:
        print("last log lines:")
        _say(f"  {line}" for line in status.log_tail)


def _say(lines) -> None:
    for line in lines:
        print(line)


def _lines(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 10_000:
        raise argparse.ArgumentTypeError(f"expected a number of lines from 1 to 10000, got {text!r}")
    return int(text)
