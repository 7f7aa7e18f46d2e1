"""Every ```bash and ```python block of README.md's Quickstart runs, so the README cannot rot.

Blocks run in README order from the repository root, as a newcomer would type
them, sharing one fresh ``ICEFEED_HOME``: bash blocks with ``bash -euo
pipefail`` (their ``.venv/bin/...`` paths are relative to the repository
root), Python blocks in a subprocess of this interpreter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SECTION = "Quickstart"
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: Seconds one block may take (a Spark clean of the full flights data).
BLOCK_TIMEOUT = 540


def section(markdown: str, title: str) -> str:
    """The text under ``## title`` up to the next heading of level 1 or 2."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^#{{1,2}} |\Z)", markdown, re.M | re.S)
    if match is None:
        raise AssertionError(f"README.md has no '## {title}' section")
    return match.group(1)


def blocks(markdown: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block in ``markdown``, in order."""
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(markdown)]


QUICKSTART = [
    (lang, code)
    for lang, code in blocks(section(README.read_text(encoding="utf-8"), SECTION))
    if lang in ("bash", "python")
]


def test_block_extraction_finds_fenced_code_in_order():
    text = (
        "## Quickstart\n```bash\necho 1\n```\ntext\n```python\nprint(2)\n```\n"
        "## Next\n```bash\nx\n```\n"
    )
    assert blocks(section(text, "Quickstart")) == [("bash", "echo 1\n"), ("python", "print(2)\n")]


def test_quickstart_has_shell_and_python_snippets():
    assert {lang for lang, _ in QUICKSTART} == {"bash", "python"}


@pytest.fixture(scope="module")
def readme_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ICEFEED_HOME shared by the Quickstart's blocks, in order (module scope)."""
    return tmp_path_factory.mktemp("readme") / "icefeed-home"


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize(
    ("lang", "code"), QUICKSTART, ids=[f"{i}-{lang}" for i, (lang, _) in enumerate(QUICKSTART)]
)
def test_quickstart_block_runs(lang: str, code: str, readme_home: Path):
    env = {**os.environ, "ICEFEED_HOME": str(readme_home)}
    env.pop("ICEFEED_SPARK_MASTER", None)
    argv = (
        ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    )
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT
    )
    assert done.returncode == 0, (
        f"README Quickstart {lang} block failed (exit {done.returncode}):\n{code}\n"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )
    assert "Traceback" not in done.stderr
    assert done.stdout.strip(), "the block printed nothing"
