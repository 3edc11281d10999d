"""Where "now" comes from: the system clock, or a fixed instant.

The service and batch scoring read the time only through a :class:`Clock`,
so a test (or a replay of a past day) can pin it: ``serving.clock`` is
``system`` or an ISO-8601 instant with its offset, e.g.
``NEXTBEST__SERVING__CLOCK=2025-06-30T10:00:00+00:00``.
"""

from __future__ import annotations

from datetime import datetime, timezone


def parse_instant(text: str) -> datetime:
    """An ISO-8601 instant with its UTC offset (``Z`` allowed) as a UTC datetime; ValueError otherwise."""
    t = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; write e.g. {text}+00:00")
    return t.astimezone(timezone.utc)


class Clock:
    """``now()`` in UTC: the system time, or always ``fixed`` when one is given."""

    def __init__(self, fixed: datetime | None = None):
        if fixed is not None and fixed.tzinfo is None:
            raise ValueError("a fixed clock needs a tz-aware instant")
        self.fixed = None if fixed is None else fixed.astimezone(timezone.utc)

    @classmethod
    def from_setting(cls, value: str) -> "Clock":
        """``system`` or an ISO-8601 instant (see the module docstring)."""
        return cls() if value == "system" else cls(parse_instant(value))

    def now(self) -> datetime:
        return self.fixed if self.fixed is not None else datetime.now(timezone.utc)

    def __repr__(self) -> str:
        return "Clock(system)" if self.fixed is None else f"Clock(fixed at {self.fixed.isoformat()})"
