"""Suite-wide set-up: the tcs-core fixtures plugin, Hypothesis profiles, TCS_REQUIRE_PEERS.

- ``pytest_plugins`` registers ``tcs_core.testing.fixtures`` (``tcs_settings``, ``source_system``,
  ``small_province``).
- Hypothesis profiles: ``ci`` (60 examples, no deadline) and ``dev`` (Hypothesis' defaults); the
  environment variable ``HYPOTHESIS_PROFILE`` picks one (default ``ci``).
- ``TCS_REQUIRE_PEERS=1``: a test that ends up skipped (e.g. because PostgreSQL, sipp or Kannel is
  missing) fails instead, with the skip reason in the message, so a CI job that is meant to have
  every peer available cannot pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import settings

pytest_plugins = ["tcs_core.testing.fixtures"]

settings.register_profile("ci", max_examples=60, deadline=None)
settings.register_profile("dev")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr: Any = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """With ``TCS_REQUIRE_PEERS=1``, turn every skipped report into a failure (xfail stays)."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if os.environ.get("TCS_REQUIRE_PEERS") != "1":
        return
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} was skipped, but TCS_REQUIRE_PEERS=1 requires every test to run: "
            f"{_skip_reason(report)}"
        )
