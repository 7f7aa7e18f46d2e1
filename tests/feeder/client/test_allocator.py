"""feeder.client.allocator: glibc heap thresholds for streaming consumers."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from feeder.client.allocator import TUNING_ENV, tuning_enabled
from jobs.errors import SpecError

REPO = Path(__file__).resolve().parents[3]

# A fresh process builds a FeederClient (no connection is made), then allocates,
# touches and frees 16 MiB in 1 MiB blocks six times, as a stream's receive buffers
# come and go, and reports the page faults of rounds 2-6: with glibc's defaults each
# round lands on pages just given back to the kernel.
_CHURN = """
import ctypes, json, resource, sys
from feeder.client.allocator import tune_for_streaming
from feeder.client.client import FeederClient
FeederClient("grpc://127.0.0.1:1")
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
faults = 0
for round_ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [libc.malloc(1 << 20) for _ in range(16)]
    for block in blocks:
        ctypes.memset(block, 1, 1 << 20)
    for block in blocks:
        libc.free(block)
    if round_:
        faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"faults": faults, "applied": tune_for_streaming().applied}))
"""


def _churn(tuning: str) -> dict[str, object]:
    env = {**os.environ, TUNING_ENV: tuning}
    out = subprocess.run(
        [sys.executable, "-c", _CHURN], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_a_feeder_client_keeps_freed_buffers_mapped_instead_of_refaulting_them():
    untuned, tuned = _churn("0"), _churn("1")
    assert untuned["applied"] is False and tuned["applied"] is True
    # 5 rounds x 16 MiB = 20,480 pages refaulted with glibc's defaults; none when tuned
    assert untuned["faults"] > 10_000, untuned
    assert tuned["faults"] < 500, tuned


@pytest.mark.parametrize("value", ["", "1", "true", "ON", " yes "])
def test_tuning_is_on_by_default_and_for_yes_values(value):
    assert tuning_enabled({TUNING_ENV: value}) is True
    assert tuning_enabled({}) is True


@pytest.mark.parametrize("value", ["0", "false", "No", "off"])
def test_tuning_can_be_turned_off(value):
    assert tuning_enabled({TUNING_ENV: value}) is False


def test_a_malformed_setting_names_the_variable_and_the_values():
    with pytest.raises(SpecError, match=rf"{TUNING_ENV}='maybe' is not one of 1, .* 0, false"):
        tuning_enabled({TUNING_ENV: "maybe"})
