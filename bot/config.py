"""Configuration: a TOML file validated at start; secrets from the environment or the system keychain, never the file.

Every key has a safe default, so `canrun check` works with no file at all. A wrong key or type is
a ConfigError whose message names the key, e.g. "[hub] cache_ttl_seconds: expected an integer".
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from bot.core.repo_id import HUB_URL

DEFAULT_CONFIG_PATH = "config.toml"
DEFAULT_GITHUB_API = "https://api.github.com"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class HubConfig:
    endpoint: str = ""  # empty: HF_ENDPOINT from the environment, else huggingface.co
    cache_ttl_seconds: int = 3600
    request_timeout_seconds: float = 15.0
    max_retries: int = 3
    download_dir: str = ".canrun/hub"  # where config.json and friends are cached (never weights)
    deadline_seconds: float = 60.0  # one whole hub operation, retries included: then "could not reach"


@dataclass(frozen=True)
class StoreConfig:
    path: str = ".canrun/canrun.sqlite3"


@dataclass(frozen=True)
class MemoryConfig:
    context_tokens: int = 4096
    fit_fraction: float = 0.75
    budget_gb: float = 0.0  # 0: ask the host (Metal's recommended working set on macOS, else RAM)


@dataclass(frozen=True)
class SuggestionsConfig:
    github_api: str = ""  # empty: CANRUN_GITHUB_API from the environment, else api.github.com
    mlx_lm_repo: str = "ml-explore/mlx-lm"
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class DiscordConfig:
    guild_ids: list[int] = field(default_factory=list)
    canrun_cooldown_seconds: float = 10.0
    autocomplete_timeout_seconds: float = 2.0  # Discord drops autocomplete answers after 3 s
    moderator_roles: list[str] = field(default_factory=list)
    api_base: str = ""  # empty: Discord's own (https://discord.com/api/v10); another base is for test doubles
    gateway_url: str = ""  # empty: Discord's own gateway


@dataclass(frozen=True)
class TrialsConfig:
    enabled: bool = False  # trials download and run models on this Mac: off until the owner turns them on
    max_download_gb: float = 20.0
    max_memory_fraction: float = 0.7  # of the memory budget (Metal's recommended working set on a Mac)
    min_free_disk_gb: float = 20.0  # left free after the download
    queue_max: int = 10
    per_user_queued: int = 2
    queued_ttl_hours: float = 6.0  # queued trials older than this expire at start instead of running
    download_timeout_seconds: float = 1800.0
    load_timeout_seconds: float = 600.0
    generate_timeout_seconds: float = 300.0
    default_prompt: str = "Explain in one sentence what MLX is."
    default_max_tokens: int = 64
    max_tokens_limit: int = 512
    cache_dir: str = ".canrun/models"
    cache_budget_gb: float = 100.0
    keep_after_trial: bool = False
    warm_worker: bool = True  # a worker process waits with mlx-lm imported, so a trial starts seconds sooner
    progress_interval_seconds: float = 1.0  # Discord edits at most this often


@dataclass(frozen=True)
class PredictionsConfig:
    default_confidence: int = 70  # when /predict is given no confidence (50-99 %)
    min_settled: int = 5  # scoring predictions a member needs before appearing on the leaderboard
    page_size: int = 10  # leaderboard rows per page
    round_reveal_by_trial: bool = True  # with trials enabled, /round reveal settles each repo by a real trial


@dataclass(frozen=True)
class DryLoadConfig:
    enabled: bool = True  # ask the installed mlx-lm itself (a child process, metadata only); off: static gates only
    timeout_seconds: float = 60.0  # one dry load; past it the child is killed and the static verdict stands
    memory_ceiling_gb: float = 4.0  # resident memory of the dry-load process; past it, it is killed
    max_requests: int = 200  # a fresh process after this many dry loads (imported model modules add up)
    work_dir: str = ".canrun/dryload"  # header-only model folders, deleted after each dry load


@dataclass(frozen=True)
class SpeedConfig:
    enabled: bool = True  # tokens/s estimates in verdicts, calibrated by this host's trials
    prompt_tokens: int = 512  # prompt speed is estimated for a prompt this long


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    file: str = ".canrun/canrun.log"


@dataclass(frozen=True)
class Config:
    hub: HubConfig = field(default_factory=HubConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    suggestions: SuggestionsConfig = field(default_factory=SuggestionsConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    trials: TrialsConfig = field(default_factory=TrialsConfig)
    predictions: PredictionsConfig = field(default_factory=PredictionsConfig)
    dry_load: DryLoadConfig = field(default_factory=DryLoadConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    base_dir: Path = Path(".")  # relative paths in the file are relative to the file's folder

    # ---- values resolved against the environment ---------------------------------------------
    @property
    def hf_endpoint(self) -> str:
        return (self.hub.endpoint or os.environ.get("HF_ENDPOINT") or HUB_URL).rstrip("/")

    @property
    def github_api(self) -> str:
        return (os.environ.get("CANRUN_GITHUB_API") or self.suggestions.github_api or DEFAULT_GITHUB_API).rstrip("/")

    # Secrets: the environment, else the system keychain (`canrun secrets set NAME`), never this file.
    @property
    def hf_token(self) -> str | None:
        return _secret("HF_TOKEN")

    @property
    def github_token(self) -> str | None:
        return _secret("GITHUB_TOKEN")

    @property
    def discord_token(self) -> str | None:
        return _secret("DISCORD_TOKEN")

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def _secret(name: str) -> str | None:
    from bot.services.keychain import secret

    return secret(name)


_SECTIONS = {f.name: f.type for f in fields(Config) if f.name != "base_dir"}
_SECRET_KEYS = {"token", "discord_token", "hf_token", "github_token"}


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate. `path` None: CANRUN_CONFIG, else ./config.toml if it exists, else defaults."""
    explicit = path is not None or "CANRUN_CONFIG" in os.environ
    path = Path(path or os.environ.get("CANRUN_CONFIG") or DEFAULT_CONFIG_PATH)
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path} does not exist (copy config.example.toml to start one)")
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from e
    return parse_config(data, base_dir=path.resolve().parent)


def parse_config(data: dict[str, Any], base_dir: Path = Path(".")) -> Config:
    sections = {}
    hints = get_type_hints(Config)
    for name, value in data.items():
        if name not in _SECTIONS:
            raise ConfigError(f"unknown section [{name}] (known: {', '.join(sorted(_SECTIONS))})")
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table")
        sections[name] = _parse_section(name, hints[name], value)
    return Config(**sections, base_dir=base_dir)


def _parse_section(section: str, cls: type, values: dict[str, Any]) -> Any:
    hints = get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        where = f"[{section}] {key}"
        if key in _SECRET_KEYS:
            raise ConfigError(f"{where}: secrets are read from the environment only, not from the config file")
        if key not in hints:
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(hints))})")
        kwargs[key] = _check_type(where, hints[key], value)
    instance = cls(**kwargs)
    _check_ranges(section, instance)
    return instance


def _check_type(where: str, expected: Any, value: Any) -> Any:
    if get_origin(expected) is list:
        (item,) = get_args(expected)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_check_type(f"{where}[{i}]", item, v) for i, v in enumerate(value)]
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type")  # pragma: no cover - a programming error


def _check_ranges(section: str, instance: Any) -> None:
    for f in fields(instance):
        value = getattr(instance, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"[{section}] {f.name}: must not be negative, got {value}")
    if section == "memory" and not 0 < instance.fit_fraction <= 1:
        raise ConfigError(f"[memory] fit_fraction: expected a number in (0, 1], got {instance.fit_fraction}")
    if section == "speed" and instance.prompt_tokens < 1:
        raise ConfigError("[speed] prompt_tokens: expected a positive integer")
    if section == "memory" and instance.context_tokens < 1:
        raise ConfigError("[memory] context_tokens: expected a positive integer")
    if section == "trials" and not 0 < instance.max_memory_fraction <= 1:
        raise ConfigError(f"[trials] max_memory_fraction: expected a number in (0, 1], got {instance.max_memory_fraction}")
    if section == "trials" and not 1 <= instance.default_max_tokens <= instance.max_tokens_limit:
        raise ConfigError("[trials] default_max_tokens: expected 1 to max_tokens_limit")
    if section == "predictions" and not 50 <= instance.default_confidence <= 99:
        raise ConfigError(f"[predictions] default_confidence: expected 50 to 99, got {instance.default_confidence}")
    if section == "predictions" and not 1 <= instance.page_size <= 25:
        raise ConfigError(f"[predictions] page_size: expected 1 to 25, got {instance.page_size}")
    if section == "discord" and instance.gateway_url and not instance.gateway_url.startswith(("ws://", "wss://")):
        raise ConfigError(f"[discord] gateway_url: expected a ws(s) URL, got {instance.gateway_url!r}")
    if section == "logging" and instance.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"[logging] level: expected DEBUG, INFO, WARNING or ERROR, got {instance.level!r}")
    for f in fields(instance):
        value = getattr(instance, f.name)
        if f.name in ("endpoint", "github_api", "api_base") and value and not value.startswith(("http://", "https://")):
            raise ConfigError(f"[{section}] {f.name}: expected an http(s) URL, got {value!r}")
