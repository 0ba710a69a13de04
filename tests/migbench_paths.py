"""Where the shared MIG-Bench reference data lives (../shared/migbench beside the repo, or $MIRG_MIGBENCH)."""

import os
from pathlib import Path

import pytest

MIGBENCH = Path(
    os.environ.get("MIRG_MIGBENCH", Path(__file__).resolve().parents[1].parent / "shared" / "migbench")
)
REVISED = MIGBENCH / "revised_MIG_bench.json"
ORIGINAL = MIGBENCH / "MIG_data.json"
RESULTS = MIGBENCH / "results"

needs_migbench = pytest.mark.skipif(
    not REVISED.exists(), reason=f"MIG-Bench reference data not found at {MIGBENCH} (set MIRG_MIGBENCH)"
)
