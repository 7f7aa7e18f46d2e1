"""The operator's view of an application: :class:`AppState` and :class:`AppStatus`.

Judged only from ``status.applicationState.state`` (never from executor states):
COMPLETED and FAILED are the only terminal states; everything else, including
SUBMISSION_FAILED or PENDING_RERUN (the operator may retry), means "keep waiting".
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class AppState(enum.Enum):
    """``status.applicationState.state`` of a SparkApplication (operator v2)."""

    NEW = ""
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SUBMISSION_FAILED = "SUBMISSION_FAILED"
    PENDING_RERUN = "PENDING_RERUN"
    INVALIDATING = "INVALIDATING"
    SUCCEEDING = "SUCCEEDING"
    FAILING = "FAILING"
    SUSPENDING = "SUSPENDING"
    SUSPENDED = "SUSPENDED"
    RESUMING = "RESUMING"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, value: object) -> AppState:
        """Return the state for ``value``; a state this version does not know is UNKNOWN."""
        for member in cls:
            if member.value == (value or ""):
                return member
        return cls.UNKNOWN

    @property
    def terminal(self) -> bool:
        """True for COMPLETED and FAILED only."""
        return self in (AppState.COMPLETED, AppState.FAILED)


@dataclass(frozen=True, kw_only=True)
class AppStatus:
    """What the operator reports about one SparkApplication."""

    name: str
    namespace: str
    state: AppState
    error_message: str = ""
    driver_pod: str | None = None
    spark_application_id: str | None = None
    executor_states: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> AppStatus:
        """Build from a SparkApplication object as the API returns it."""
        metadata = obj.get("metadata") or {}
        status = obj.get("status") or {}
        app_state = status.get("applicationState") or {}
        driver = status.get("driverInfo") or {}
        return cls(
            name=str(metadata.get("name", "")),
            namespace=str(metadata.get("namespace", "")),
            state=AppState.parse(app_state.get("state")),
            error_message=str(app_state.get("errorMessage") or ""),
            driver_pod=driver.get("podName"),
            spark_application_id=status.get("sparkApplicationId"),
            executor_states=dict(status.get("executorState") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (for ``--json``)."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "state": self.state.value or "NEW",
            "terminal": self.state.terminal,
            "errorMessage": self.error_message,
            "driverPod": self.driver_pod,
            "sparkApplicationId": self.spark_application_id,
            "executorState": self.executor_states,
        }
