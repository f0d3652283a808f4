"""Policy registry: names -> lazily imported classes, and `make_policy(name, options)`."""

from __future__ import annotations

import importlib

from genserve.core.errors import ValidationError
from genserve.scheduling.options import PolicyOptions

# name -> "module:Class"; imported only when asked for, so a missing or broken policy does not break the others.
POLICIES: dict[str, str] = {
    "fcfs": "genserve.scheduling.baselines:FCFS",
    "sjf": "genserve.scheduling.baselines:SJF",
    "srtf": "genserve.scheduling.baselines:SRTF",
    "rasp": "genserve.scheduling.baselines:RASP",
    "dedicated": "genserve.scheduling.baselines:Dedicated",
    "genserve": "genserve.scheduling.dp:GenServePolicy",
}

BASELINES = ("fcfs", "sjf", "srtf", "rasp", "dedicated")


def policy_class(name: str) -> type:
    """The class behind `name`; ValidationError for an unknown name or a policy that cannot be imported."""
    key = name.strip().lower()
    if key not in POLICIES:
        raise ValidationError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
    module, _, cls = POLICIES[key].partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise ValidationError(f"policy {key!r} is not available: module {module} does not exist yet") from None
        raise ValidationError(f"policy {key!r} is not available: importing {module} failed: {e}") from None
    except ImportError as e:
        raise ValidationError(f"policy {key!r} is not available: importing {module} failed: {e}") from None
    try:
        return getattr(mod, cls)
    except AttributeError:
        raise ValidationError(f"policy {key!r} is not available: {module} has no {cls}") from None


def make_policy(name: str, options: PolicyOptions | None = None):
    """A policy object by registry name, configured with `options` (defaults when None)."""
    return policy_class(name)(options or PolicyOptions())


def available_policies() -> list[str]:
    """Registry names whose module imports now (genserve may be missing while it is being written)."""
    out = []
    for name in POLICIES:
        try:
            policy_class(name)
        except ValidationError:
            continue
        out.append(name)
    return out
