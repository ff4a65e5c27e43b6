"""What a deployment check is, what it reports, and how the outcomes are rendered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from api.core.config import Settings


class CheckFailed(Exception):
    """A check's own verdict that the deployment is not usable: what is wrong and what to do."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Check:
    """A named check. ``run`` returns a one-line detail on success and raises on failure.

    ``needs`` names checks that must have passed first: a check that would otherwise repair what
    another one reports (the app's start-up applies migrations, for one) is not run after it failed.
    """

    name: str
    run: Callable[[Settings], str]
    needs: tuple[str, ...] = ()


def render_text(results: list[CheckResult]) -> str:
    """One ✅/❌ line per check, then ``n passed, m failed``."""
    lines = [f"{'✅' if result.ok else '❌'} {result.name}: {result.detail}" for result in results]
    passed, failed = _counts(results)
    lines.append(f"{passed} passed, {failed} failed")
    return "\n".join(lines)


def render_json(results: list[CheckResult]) -> dict[str, object]:
    """``{"ok", "summary": {"passed", "failed"}, "checks": [{"name", "ok", "detail"}, ...]}``."""
    passed, failed = _counts(results)
    return {
        "ok": failed == 0,
        "summary": {"passed": passed, "failed": failed},
        "checks": [asdict(result) for result in results],
    }


def _counts(results: list[CheckResult]) -> tuple[int, int]:
    failed = sum(not result.ok for result in results)
    return len(results) - failed, failed
