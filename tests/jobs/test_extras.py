"""jobs.extras: optional dependencies are imported lazily and a missing one names its extra."""

from __future__ import annotations

import pytest

from jobs.errors import IcefeedError, MissingExtraError
from jobs.extras import require


def test_require_returns_the_module_when_installed() -> None:
    json_module = require("json", "core")
    assert json_module.dumps({"a": 1}) == '{"a": 1}'


def test_missing_extra_names_the_extra_to_install() -> None:
    with pytest.raises(MissingExtraError, match=r"pip install 'icefeed\[spark\]'") as info:
        require("icefeed_module_that_does_not_exist", "spark")
    assert isinstance(info.value, IcefeedError)
