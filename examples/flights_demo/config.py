"""What one demo run does (:class:`DemoConfig`), validated at construction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from examples.flights_demo.data import FLIGHTS_SPEC
from jobs.errors import SpecError


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """What ``python -m examples.flights_demo`` does; validated at construction (SpecError)."""

    run_id: str | None = None
    epochs: int = 5
    output: Path = Path("demo-output")
    sample_every: int = 1
    batch_size: int = 1024
    nodes: int = 2
    seed: int = 0
    spec_path: Path = FLIGHTS_SPEC

    def __post_init__(self) -> None:
        for name in ("epochs", "sample_every", "batch_size", "nodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"{name}: {value!r} must be an integer >= 1")
        if self.run_id is not None:
            from jobs.clean.job import check_run_id

            check_run_id(self.run_id)
