"""Keyring backends for tests: one in memory, and one in a JSON file (for a `python -m bot` child process, chosen
with PYTHON_KEYRING_BACKEND=tests.fakes.keyring_backend.FileKeyring and CANRUN_TEST_KEYRING_FILE)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class MemoryKeyring(KeyringBackend):
    priority = 1
    name = "test keychain"

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.items.get((service, username))

    def set_password(self, service, username, password):
        self.items[(service, username)] = password

    def delete_password(self, service, username):
        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


class FileKeyring(MemoryKeyring):
    name = "test file keychain"

    def __init__(self) -> None:
        super().__init__()
        self.path = Path(os.environ["CANRUN_TEST_KEYRING_FILE"])
        if self.path.exists():
            self.items = {tuple(k.split("/", 1)): v for k, v in json.loads(self.path.read_text()).items()}

    def set_password(self, service, username, password):
        super().set_password(service, username, password)
        self._save()

    def delete_password(self, service, username):
        super().delete_password(service, username)
        self._save()

    def _save(self) -> None:
        self.path.write_text(json.dumps({f"{s}/{u}": v for (s, u), v in self.items.items()}))
