from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
H100_LOGS = FIXTURES / "llama-server-h100"


@pytest.fixture(scope="session")
def h100_logs() -> Path:
    return H100_LOGS
