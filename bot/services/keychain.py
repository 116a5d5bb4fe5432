"""Secrets: from the environment, else from the operating system's keychain through `keyring`.

The keychain is macOS's Keychain on a Mac and the Secret Service (GNOME Keyring, KWallet) on a Linux desktop. A
headless Linux usually has neither: there the environment stays the only source, and storing a secret says so.
Values are returned to the caller and never logged or printed; errors carry the backend's message, never a value.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

SECRET_NAMES = ("DISCORD_TOKEN", "HF_TOKEN", "GITHUB_TOKEN")
KEYCHAIN_SERVICE = "canrun"  # the keychain item's service; its account is the secret's name

NO_KEYCHAIN = (
    "there is no system keychain here (the keyring library found no backend: a Linux without a desktop session "
    "has no Secret Service). Set {name} in the environment instead; for `canrun service`, see README's "
    "\"Run as a service\"."
)


class KeychainUnavailable(Exception):
    """The keychain cannot store or read secrets here; the message says what to do instead."""


@dataclass(frozen=True)
class SecretStatus:
    name: str
    source: str | None  # "environment", "keychain" or None (not set)


def secret(name: str) -> str | None:
    """The secret's value: the environment wins, then the keychain; None when neither has it."""
    value = os.environ.get(name)
    if value:
        return value
    try:
        return _keyring().get_password(KEYCHAIN_SERVICE, name) or None
    except Exception as e:  # noqa: BLE001 - no keychain (or a locked one) means "not there", the environment path stays
        log.debug("keychain lookup of %s failed: %s", name, type(e).__name__)
        return None


def secret_status(name: str) -> SecretStatus:
    if os.environ.get(name):
        return SecretStatus(name, "environment")
    return SecretStatus(name, "keychain" if in_keychain(name) else None)


def in_keychain(name: str) -> bool:
    """Whether the keychain holds `name`, whatever the environment says (a service does not see the shell's)."""
    try:
        return bool(_keyring().get_password(KEYCHAIN_SERVICE, name))
    except Exception:  # noqa: BLE001 - as in secret()
        return False


def keychain_name() -> str | None:
    """The keychain secrets go to (keyring's name for its backend), or None when there is none here."""
    try:
        backend = _keyring()
    except Exception:  # noqa: BLE001 - keyring missing or failing to start: no keychain
        return None
    from keyring.backends import fail, null

    if isinstance(backend, (fail.Keyring, null.Keyring)):
        return None
    return str(getattr(backend, "name", type(backend).__name__))


def store_secret(name: str, value: str) -> str:
    """Store `value` under `name`; returns the keychain's name. KeychainUnavailable when there is none."""
    where = keychain_name()
    if where is None:
        raise KeychainUnavailable(NO_KEYCHAIN.format(name=name))
    try:
        _keyring().set_password(KEYCHAIN_SERVICE, name, value)
    except Exception as e:  # noqa: BLE001 - a locked or refusing keychain: say which, never the value
        raise KeychainUnavailable(f"{where} refused to store {name}: {type(e).__name__}: {e}") from None
    return where


def delete_secret(name: str) -> bool:
    """Remove `name` from the keychain; False when it was not there (or there is no keychain)."""
    if keychain_name() is None:
        return False
    try:
        if _keyring().get_password(KEYCHAIN_SERVICE, name) is None:
            return False
        _keyring().delete_password(KEYCHAIN_SERVICE, name)
    except Exception as e:  # noqa: BLE001
        raise KeychainUnavailable(f"could not remove {name} from the keychain: {type(e).__name__}: {e}") from None
    return True


def _keyring():
    import keyring  # imported when a secret is first needed: it looks for its backends then

    return keyring.get_keyring()
