"""A controllable clock for tests: time moves only when a test advances it."""

from __future__ import annotations

START_TIME = 1_000_000.0


class FakeClock:
    """A clock that moves only when told to (``advance``); pass it as a component's ``clock``."""

    def __init__(self, now: float = START_TIME) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
