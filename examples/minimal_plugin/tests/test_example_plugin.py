"""The example transport passes tcs-core's transport conformance suite."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest
from tcs_plugin_example import ExampleTransport

from tcs_core import Channel, DeviceKind
from tcs_core.testing.conformance import TransportConformance
from tcs_core.transport import DeviceTarget


class TestExampleTransport(TransportConformance):
    """Every conformance test, run on ExampleTransport with a few board folders."""

    @pytest.fixture
    def transport(self, tmp_path: Path) -> ExampleTransport:
        (tmp_path / "bang-tin-cho").mkdir()
        (tmp_path / "bang-tin-hong").mkdir()
        (tmp_path / "bang-tin-hong" / "items.jsonl").write_text("<html>502 Bad Gateway</html>\n")
        return ExampleTransport(str(tmp_path), rate_per_s=20.0, timeout_s=0.5)

    @pytest.fixture
    def device(self) -> DeviceTarget:
        return DeviceTarget(
            UUID(int=1), "Bảng tin chợ", DeviceKind.BOARD, "bang-tin-cho", {}, (Channel.BOARD,)
        )

    @pytest.fixture
    def unreachable_device(self) -> DeviceTarget:
        return DeviceTarget(UUID(int=2), "Bảng tin thôn Một", DeviceKind.BOARD, "thon-mot")

    @pytest.fixture
    def malformed_device(self) -> DeviceTarget:
        return DeviceTarget(UUID(int=3), "Bảng tin hỏng", DeviceKind.BOARD, "bang-tin-hong")

    # slow_device stays None: a local folder is never slower than the timeout, so that test
    # is skipped (with the reason).
