"""Registering tasks by name, with per-type options."""

from __future__ import annotations

from typing import Any

import pytest

from api.workers.registry import TaskRegistry


def noop(ctx: Any) -> None:
    return None


def other(ctx: Any) -> None:
    return None


def test_the_decorator_registers_the_function_and_returns_it_unchanged() -> None:
    tasks = TaskRegistry()
    decorated = tasks.task("reports.build", max_attempts=5, timeout_seconds=30)(noop)
    spec = tasks.get("reports.build")
    assert decorated is noop
    assert spec is not None
    assert (spec.function, spec.executor, spec.max_attempts, spec.timeout_seconds) == (noop, "thread", 5, 30)


def test_a_cpu_heavy_type_chooses_the_process_pool() -> None:
    tasks = TaskRegistry()
    tasks.task("conversion.run", executor="process")(noop)
    spec = tasks.get("conversion.run")
    assert spec is not None
    assert spec.executor == "process"


def test_a_process_task_must_be_a_module_level_function() -> None:
    def nested(ctx: Any) -> None:
        return None

    with pytest.raises(ValueError, match="module-level"):
        TaskRegistry().task("x.nested", executor="process")(nested)


def test_a_name_taken_by_another_function_is_refused() -> None:
    tasks = TaskRegistry()
    tasks.task("dup")(noop)
    tasks.task("dup")(noop)  # the same function again (a module imported twice) is fine
    with pytest.raises(ValueError, match="already registered"):
        tasks.task("dup")(other)


@pytest.mark.parametrize("name", ["", "has space", "x" * 101, "../etc"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="task name"):
        TaskRegistry().task(name)(noop)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        TaskRegistry().task("a", max_attempts=0)(noop)
    with pytest.raises(ValueError, match="timeout_seconds"):
        TaskRegistry().task("b", timeout_seconds=0)(noop)


def test_names_are_listed_sorted() -> None:
    tasks = TaskRegistry()
    tasks.task("b")(noop)
    tasks.task("a")(other)
    assert tasks.names() == ("a", "b")


def test_periodic_functions_are_collected_for_the_scheduler() -> None:
    tasks = TaskRegistry()
    tasks.periodic("tick", interval_seconds=5)(noop)
    assert [(entry.name, entry.interval_seconds) for entry in tasks.periodic_tasks()] == [("tick", 5)]
