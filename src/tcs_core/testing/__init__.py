"""Test support for suites that exercise tcs-core: Hypothesis strategies and pytest fixtures.

- ``tcs_core.testing.strategies``: strategies for every public domain type, and random area
  histories (``area_histories`` / ``apply_history`` / ``AreaModel``);
- ``tcs_core.testing.fixtures``: a pytest plugin
  (``pytest_plugins = ["tcs_core.testing.fixtures"]``) with ``tcs_settings``, ``source_system``
  and ``small_province``;
- ``tcs_core.testing.conformance``: ``TransportConformance``, the contract suite every transport
  plugin runs against its own transport (see ``docs/plugins.md``).

No submodule is imported here: they need the ``test`` extra (hypothesis, pytest).
See ``docs/testing.md``.
"""

__all__ = ["conformance", "fixtures", "strategies"]
