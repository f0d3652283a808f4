"""Server settings: where data lives, the API key, and every limit the API enforces."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from genserve.core.errors import ValidationError
from genserve.profiles import Profile

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass
class ServerSettings:
    """Everything `create_app` needs besides the engine.

    `profile` names the models the server accepts and fills in defaults (sizes, steps) and SLO deadlines
    (deadline = sigma * 1.5 * isolated latency). Limits are checked before a request reaches the engine.
    `max_active` bounds requests admitted and not yet finished: above it the API answers 429 with Retry-After.
    """

    data_dir: Path
    profile: Profile
    api_key: str | None = None
    engine_kind: str = "custom"
    default_sigma: float = 1.0
    fps: int = 8  # frames per second of the output clips: seconds <-> num_frames
    max_prompt_chars: int = 4000
    max_n: int = 8
    max_side: int = 2048  # pixels, width and height
    max_frames: int = 257
    max_steps: int = 200
    max_body_bytes: int = 1 << 20
    max_active: int = 512
    retry_after_s: int = 2
    image_timeout_s: float = 600.0
    max_list_limit: int = 100
    public_url: str | None = None  # base of `url` responses; default: the request's own base URL
    close_engine_on_shutdown: bool = True
    extra_models: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.api_key is not None:
            check_api_key(self.api_key)
        for name in ("fps", "max_n", "max_side", "max_frames", "max_steps", "max_body_bytes", "max_active",
                     "max_prompt_chars", "max_list_limit"):
            if getattr(self, name) <= 0:
                raise ValidationError(f"{name} must be positive, got {getattr(self, name)}")
        if self.default_sigma <= 0:
            raise ValidationError(f"default_sigma must be positive, got {self.default_sigma}")

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


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond localhost without a (valid) API key."""
    if api_key is not None:
        check_api_key(api_key)
    if not is_loopback(host) and not api_key:
        raise ValidationError(
            f"refusing to listen on {host!r} without an API key: anyone who can reach it could use your GPUs. "
            "Pass --api-key (or set GENSERVE_API_KEY), or bind to 127.0.0.1."
        )
