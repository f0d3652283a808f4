"""Server settings: where data lives, the API keys (key -> tenant), and every limit the API enforces."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from genserve.core.errors import ValidationError
from genserve.profiles import Profile

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
DEFAULT_TENANT = "default"  # the tenant of --api-key / GENSERVE_API_KEY, of a server without keys, of old rows
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class ServerSettings:
    """Everything `create_app` needs besides the engine.

    `profile` names the models the server accepts and fills in defaults (sizes, steps) and SLO deadlines
    (deadline = sigma * 1.5 * isolated latency). Limits are checked before a request reaches the engine.
    `max_active` bounds requests admitted and not yet finished: above it the API answers 429 with Retry-After.
    `api_keys` maps each accepted key to its tenant; `api_key` (a single key) joins it as tenant "default".
    Every job, file and listing belongs to one tenant. Without any key everything is tenant "default".
    """

    data_dir: Path
    profile: Profile
    api_key: str | None = None
    api_keys: dict[str, str] = field(default_factory=dict)  # key -> tenant
    engine_kind: str = "custom"
    default_sigma: float = 1.0
    fps: int = 8  # frames per second of the output clips: seconds <-> num_frames
    max_prompt_chars: int = 4000
    max_n: int = 8
    max_side: int = 2048  # pixels, width and height
    max_frames: int = 257
    max_steps: int = 200
    max_body_bytes: int = 1 << 20
    body_timeout_s: float = 30.0  # a request body must be complete this long after the request arrived (408)
    max_active: int = 512
    retry_after_s: int = 2
    image_timeout_s: float = 600.0
    drain_timeout_s: float = 30.0  # on SIGTERM: how long admitted work may run on before the process stops
    max_list_limit: int = 100
    public_url: str | None = None  # base of `url` responses; default: the request's own base URL
    image_url_ttl_s: int = 3600  # lifetime of signed image `url` answers
    poll_min_ms: int = 200  # bounds of the openai-poll-after-ms header (the job's expected time / 20)
    poll_max_ms: int = 5000
    close_engine_on_shutdown: bool = True
    extra_models: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        keys = dict(self.api_keys or {})
        for key, tenant in keys.items():
            check_api_key(key)
            check_tenant(tenant)
        if self.api_key is not None:
            check_api_key(self.api_key)
            if keys.get(self.api_key, DEFAULT_TENANT) != DEFAULT_TENANT:
                raise ValidationError(f"the --api-key is also a key of tenant {keys[self.api_key]!r}; use one")
            keys[self.api_key] = DEFAULT_TENANT
        self.api_keys = keys
        for name in ("fps", "max_n", "max_side", "max_frames", "max_steps", "max_body_bytes", "max_active",
                     "max_prompt_chars", "max_list_limit", "image_url_ttl_s", "poll_min_ms", "poll_max_ms"):
            if getattr(self, name) <= 0:
                raise ValidationError(f"{name} must be positive, got {getattr(self, name)}")
        if self.default_sigma <= 0:
            raise ValidationError(f"default_sigma must be positive, got {self.default_sigma}")
        if not self.drain_timeout_s >= 0:
            raise ValidationError(f"drain_timeout_s must be 0 or more, got {self.drain_timeout_s}")
        if not self.body_timeout_s > 0:
            raise ValidationError(f"body_timeout_s must be positive, got {self.body_timeout_s}")

    @property
    def auth_required(self) -> bool:
        return bool(self.api_keys)

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @classmethod
    def from_env(cls, data_dir: str | Path, profile: str | Profile = "tiny-cpu", **kw) -> "ServerSettings":
        prof = profile if isinstance(profile, Profile) else Profile.load(profile)
        kw.setdefault("api_key", os.environ.get("GENSERVE_API_KEY") or None)  # unset or empty: no key
        return cls(data_dir=Path(data_dir), profile=prof, **kw)


def is_loopback(host: str) -> bool:
    """True when binding `host` exposes the server to this machine only."""
    h = host.strip().strip("[]").lower()
    if h in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_api_key(key: str) -> None:
    """A key is what the client sends after 'Bearer ': blank or with spaces/control characters it could never
    match (the header's token is stripped), and silently dropping it would turn authentication off."""
    if not key or not key.strip():
        raise ValidationError("the API key is blank; pass a real key (or none at all on localhost)")
    if any(c.isspace() or not c.isprintable() for c in key):
        raise ValidationError("the API key contains whitespace or control characters; use printable characters only")


def check_tenant(tenant: str) -> None:
    if not isinstance(tenant, str) or not TENANT_RE.match(tenant):
        raise ValidationError(f"tenant name {tenant!r} is invalid: use 1-64 letters, digits, '_', '.', '-' "
                              "(starting with a letter or digit)")


def parse_keys(text: str, source: str) -> dict[str, str]:
    """Keys in the `--keys-file` format: one `tenant:key` a line; blank lines and lines starting with '#' are
    skipped. A tenant may have several keys (rotation); a key may appear once. Returns key -> tenant."""
    keys: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tenant, sep, key = line.partition(":")
        where = f"{source} line {n}"
        if not sep:
            raise ValidationError(f"{where}: expected 'tenant:key'")
        tenant, key = tenant.strip(), key.strip()
        try:
            check_tenant(tenant)
            check_api_key(key)
        except ValidationError as e:
            raise ValidationError(f"{where}: {e}") from None
        if key in keys:
            raise ValidationError(f"{where}: this key is already listed (tenant {keys[key]!r}); keys must be "
                                  "unique, or a request could not tell its tenant")
        keys[key] = tenant
    return keys


def load_keys_file(path: str | Path) -> dict[str, str]:
    """Read a keys file (see `parse_keys`); a missing, unreadable or empty file is an error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValidationError(f"cannot read the keys file {str(path)!r}: {e}") from None
    keys = parse_keys(text, str(path))
    if not keys:
        raise ValidationError(f"the keys file {str(path)!r} has no keys; write one 'tenant:key' a line")
    return keys


def check_bind(host: str, api_key: str | None, api_keys: dict[str, str] | None = None) -> None:
    """Refuse to listen beyond localhost without a (valid) API key; any key (single or from a keys file) counts."""
    if api_key is not None:
        check_api_key(api_key)
    for key in api_keys or {}:
        check_api_key(key)
    if not is_loopback(host) and not api_key and not api_keys:
        raise ValidationError(
            f"refusing to listen on {host!r} without an API key: anyone who can reach it could use your GPUs. "
            "Pass --api-key or --keys-file (or set GENSERVE_API_KEY), or bind to 127.0.0.1."
        )
