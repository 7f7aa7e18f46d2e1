"""What validation reports (:class:`Problem`) and the errors of the sparkapps package.

Every failure in ``sparkapps`` raises :class:`jobs.errors.ManifestError` or one
of the subclasses below, whatever layer it came from (schema, webhook rule,
Kubernetes API, local spark-submit), so callers catch one type.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from jobs.errors import ManifestError, RunFailedError


class Check(enum.Enum):
    """Which validation layer found a problem."""

    SCHEMA = "schema"  # the operator CRD's OpenAPI schema
    UNKNOWN_FIELD = "unknown-field"  # a field name the schema does not have
    WEBHOOK = "webhook"  # a rule the operator's admission webhook enforces
    KUBERNETES = "kubernetes"  # Kubernetes' own schema (pod templates, core objects)
    MANIFEST = "manifest"  # the document itself (kind, apiVersion, metadata)


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One thing wrong with a manifest: where (dotted ``path``), what, and what to do."""

    path: str
    message: str
    hint: str = ""
    check: Check = Check.SCHEMA

    def __str__(self) -> str:
        text = f"{self.path or '<root>'}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def to_dict(self) -> dict[str, str]:
        """Return a JSON-ready dict (for ``--json``)."""
        return {
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
            "check": self.check.value,
        }


class ManifestInvalidError(ManifestError):
    """A manifest failed validation; ``problems`` lists every finding."""

    def __init__(self, what: str, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{what} is invalid ({len(self.problems)} problem(s)):\n{lines}")


class KubernetesApiError(ManifestError):
    """The Kubernetes API refused or failed a call (status code kept in ``status``)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ApplicationExistsError(KubernetesApiError):
    """A SparkApplication with that name already exists in the namespace (HTTP 409)."""


class ApplicationNotFoundError(KubernetesApiError):
    """No SparkApplication with that name exists in the namespace (HTTP 404)."""


class ApplicationFailedError(ManifestError, RunFailedError):
    """The operator reported the application FAILED; the message carries its errorMessage."""

    def __init__(self, name: str, error_message: str) -> None:
        self.name = name
        self.error_message = error_message
        super().__init__(f"SparkApplication {name!r} FAILED: {error_message or 'no error message'}")


class WaitTimeoutError(ManifestError, RunFailedError):
    """The application did not reach COMPLETED or FAILED within the timeout."""
