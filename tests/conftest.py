"""Settings for every test session: the Hypothesis profile of the property-based (fuzz) tests.

``ci`` (the default) is reproducible: a fixed seed (``derandomize``), no example database,
no per-example deadline (the machines are shared), and a bounded number of examples so the
fuzz tests together take seconds. ``HYPOTHESIS_PROFILE=deep`` runs many more, randomised, to
hunt for new failures locally.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("deep", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
