"""The layout is the data flow (docs/architecture.md), written as import-linter contracts in pyproject.toml.

``lint-imports`` runs in .ci/run too; running it here means a developer who only runs pytest meets a broken layer
or an import cycle before CI does. Every import counts: under ``if TYPE_CHECKING:`` and inside functions too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout and " kept, " in done.stdout
