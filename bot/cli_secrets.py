"""`canrun secrets set | delete | status`: the bot's tokens in the system keychain. No value is ever printed."""

from __future__ import annotations

import argparse
import getpass
import sys

from bot.services.keychain import (
    KEYCHAIN_SERVICE,
    NO_KEYCHAIN,
    SECRET_NAMES,
    KeychainUnavailable,
    delete_secret,
    keychain_name,
    secret_status,
    store_secret,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

SECRETS_HELP = f"""\
The tokens canrun uses ({", ".join(SECRET_NAMES)}) come from the environment, else from the system keychain
(macOS Keychain; the Secret Service on a Linux desktop) under the service name "{KEYCHAIN_SERVICE}".
`set NAME` asks for the value without echoing it (or reads one line from stdin when it is not a terminal).
"""


def add_secrets_parser(sub, common: argparse.ArgumentParser, parser_class: type) -> None:
    secrets = sub.add_parser("secrets", parents=[common], help="store tokens in the system keychain, or list them",
                             description=SECRETS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = secrets.add_subparsers(dest="action", required=True, parser_class=parser_class)
    for action, text in (("set", "store NAME in the keychain (asked without echo)"),
                         ("delete", "remove NAME from the keychain")):
        p = actions.add_parser(action, parents=[common], help=text)
        p.add_argument("name", metavar="NAME", type=str.upper, choices=SECRET_NAMES, help=" | ".join(SECRET_NAMES))
    actions.add_parser("status", parents=[common], help="which secrets are set, and where from (never their values)")


def run_secrets(args: argparse.Namespace) -> int:
    if args.action == "status":
        return _status()
    if args.action == "delete":
        try:
            removed = delete_secret(args.name)
        except KeychainUnavailable as e:
            print(f"canrun: {e}", file=sys.stderr)
            return EXIT_FAILED
        print(f"{args.name} removed from the keychain" if removed else f"{args.name} was not in the keychain")
        return EXIT_OK
    return _set(args.name)


def _set(name: str) -> int:
    if keychain_name() is None:  # before asking for a value that could not be kept
        print(f"canrun: cannot store {name}: {NO_KEYCHAIN.format(name=name)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        value = _read_value(name)
    except (KeyboardInterrupt, EOFError):
        print(file=sys.stderr)
        return 130
    if not value:
        print(f"canrun: nothing entered, {name} left as it was", file=sys.stderr)
        return EXIT_USAGE
    try:
        where = store_secret(name, value)
    except KeychainUnavailable as e:
        print(f"canrun: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{name} stored in {where} (service \"{KEYCHAIN_SERVICE}\")")
    if secret_status(name).source == "environment":
        print(f"note: {name} is also set in this environment, and the environment wins while it is set")
    return EXIT_OK


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(f"{name} (typing is not shown): ").strip()
    return sys.stdin.readline().strip()  # piped in, e.g. from a password manager's command line


def _status() -> int:
    where = keychain_name()
    for name in SECRET_NAMES:
        source = secret_status(name).source
        text = {"environment": "set, from the environment",
                "keychain": f"set, from the keychain ({where})",
                None: "not set"}[source]
        print(f"{name:<14} {text}")
    print(f"keychain: {where}" if where else "keychain: none here (the environment is the only source)")
    return EXIT_OK
