"""Run a recipe of docs/torch.md as written: the first python block under a ``###`` heading.

Used by ``tests/feeder/torch/test_trainers.py`` and the 2-process script it starts
(``accelerate_train.py``), so the doc's code is the code the tests run.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[3] / "docs" / "torch.md"
LIGHTNING = "PyTorch Lightning (a `LightningDataModule`)"
ACCELERATE = "Hugging Face Accelerate (no double sharding)"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def recipe(title: str) -> dict[str, Any]:
    """Run the first python block under ``### title`` of docs/torch.md.

    Args:
        title: the recipe's heading, without the ``### ``.

    Returns:
        The names the block defined.
    """
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^### {re.escape(title)}\s*$(.*?)(?=^#{{1,3}} |\Z)", text, re.M | re.S)
    assert match is not None, f"docs/torch.md has no '### {title}' section"
    block = _FENCE.search(match.group(1))
    assert block is not None, f"'### {title}' has no python block"
    namespace: dict[str, Any] = {"__name__": f"recipe_{uuid.uuid4().hex[:6]}"}
    exec(compile(block.group(1), f"{DOC}:{title}", "exec"), namespace)
    return namespace
