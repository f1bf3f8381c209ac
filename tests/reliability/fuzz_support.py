"""What the reliability tests import by name (a conftest is no module to import from:
every folder's is called ``conftest``): the header type, the fuzzing budget and the
Hypothesis profile, and the Open311 client of tests/open311."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "open311"))

from georeport_doc import GeoReport

__all__ = ["FUZZ_EXAMPLES", "FUZZ_PHASES", "RELIABILITY", "GeoReport", "Headers"]

Headers = dict[str, str]

FUZZ_EXAMPLES = int(os.environ.get("FIELDOPS_FUZZ_EXAMPLES", "5"))
"""Examples per fuzzed operation (and per backend); raise it for a longer hunt."""

settings.register_profile(
    "reliability",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
RELIABILITY = settings.get_profile("reliability")

FUZZ_PHASES = (Phase.explicit, Phase.reuse, Phase.generate)
"""HTTP fuzzing does not shrink: a failing request is reported as found, so a failing run
stays as short as a passing one (each shrinking step would be another request)."""
