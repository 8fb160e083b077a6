"""The indicators the provincial plans report (chỉ tiêu), as data.

Each indicator has a stable id, its Vietnamese name as the plans write it, an English name, and
what its numerator and denominator count. The values themselves are computed by
``tcs_core.kpi.engine`` from the ``KpiProjection``.

Kinds:

- ``ratio``: numerator / denominator as a percentage (never outside 0-100 %);
- ``count``: the numerator is the value (the denominator is shown for context);
- ``average``: numerator / denominator as a plain number (e.g. hours of airtime per commune).
"""

from __future__ import annotations

import enum

import attrs

__all__ = [
    "INDICATORS",
    "OPERATIONAL",
    "PLAN_INDICATORS",
    "Indicator",
    "IndicatorKind",
    "Unit",
    "indicator",
]


class IndicatorKind(enum.StrEnum):
    """How an indicator's value is formed from its numerator and denominator."""

    RATIO = "ratio"  # percentage, 0-100
    COUNT = "count"  # the numerator itself
    AVERAGE = "average"  # numerator / denominator, any non-negative number


class Unit(enum.StrEnum):
    """What one contribution to an indicator is (what is counted)."""

    COMMUNE = "commune"  # xã, phường, thị trấn, đặc khu
    DISTRICT = "district"  # huyện, quận, thị xã, thành phố thuộc tỉnh
    PROVINCE = "province"
    STATION = "station"  # đài truyền thanh cấp xã
    FACILITY = "facility"
    FEEDBACK = "feedback"
    DEVICE_SECONDS = "device_seconds"
    DELIVERY = "delivery"  # one dispatch to one device
    BULLETIN = "bulletin"  # one occurrence of a broadcast aired in one commune (an airing)


@attrs.frozen
class Indicator:
    """One indicator: names, what is counted, and how the value is formed."""

    id: str
    name_vi: str
    name_en: str
    numerator_vi: str
    numerator_en: str
    denominator_vi: str
    denominator_en: str
    kind: IndicatorKind
    unit: Unit
    operational: bool = False

    def name(self, lang: str) -> str:
        """The name in ``lang`` (``vi`` or ``en``)."""
        return self.name_vi if lang == "vi" else self.name_en

    def numerator(self, lang: str) -> str:
        """What the numerator counts, in ``lang``."""
        return self.numerator_vi if lang == "vi" else self.numerator_en

    def denominator(self, lang: str) -> str:
        """What the denominator counts, in ``lang``."""
        return self.denominator_vi if lang == "vi" else self.denominator_en


_R, _C, _A = IndicatorKind.RATIO, IndicatorKind.COUNT, IndicatorKind.AVERAGE

_DEFS: tuple[Indicator, ...] = (
    Indicator(
        "radio_coverage",
        "Tỷ lệ xã, phường, thị trấn có hệ thống truyền thanh hoạt động đến thôn, bản, tổ dân "
        "phố, khu dân cư",
        "Communes, wards and towns with a radio system working down to every village",
        "xã, phường, thị trấn có đài truyền thanh chưa dừng hoạt động, không hư hỏng, phủ đến "
        "thôn, tổ dân phố",
        "communes with a station that is not closed, not broken and reaches the villages",
        "xã, phường, thị trấn",
        "communes, wards and towns",
        _R,
        Unit.COMMUNE,
    ),
    Indicator(
        "ip_conversion",
        "Tỷ lệ chuyển đổi đài truyền thanh có dây/không dây FM sang truyền thanh ứng dụng công "
        "nghệ thông tin - viễn thông",
        "Wired/FM radio stations converted to IP (telecom/IT) radio",
        "đài có dây/FM tại thời điểm gốc đã chuyển đổi sang ứng dụng CNTT-VT",
        "baseline wired/FM stations converted to IP",
        "đài truyền thanh có dây/không dây FM tại thời điểm gốc",
        "wired/FM stations at the baseline",
        _R,
        Unit.STATION,
    ),
    Indicator(
        "ip_conversion_annual",
        "Đài truyền thanh có dây/không dây FM chuyển đổi sang truyền thanh ứng dụng công nghệ "
        "thông tin - viễn thông trong năm",
        "Wired/FM stations converted to IP within the reporting period",
        "đài có dây/FM tại thời điểm gốc chuyển đổi trong kỳ báo cáo",
        "baseline wired/FM stations converted within the period",
        "đài truyền thanh có dây/không dây FM tại thời điểm gốc",
        "wired/FM stations at the baseline",
        _R,
        Unit.STATION,
    ),
    Indicator(
        "website_urban",
        "Tỷ lệ Ủy ban nhân dân phường, thị trấn có trang thông tin điện tử",
        "Wards and towns whose People's Committee has a website",
        "phường, thị trấn có trang thông tin điện tử đang hoạt động",
        "wards and towns with a working website",
        "phường, thị trấn",
        "wards and towns",
        _R,
        Unit.COMMUNE,
    ),
    Indicator(
        "website_rural",
        "Tỷ lệ Ủy ban nhân dân xã có trang thông tin điện tử",
        "Rural communes whose People's Committee has a website",
        "xã có trang thông tin điện tử đang hoạt động",
        "rural communes with a working website",
        "xã",
        "rural communes",
        _R,
        Unit.COMMUNE,
    ),
    Indicator(
        "eboard_urban",
        "Tỷ lệ phường, thị trấn có bảng tin điện tử công cộng",
        "Wards and towns with a public electronic board",
        "phường, thị trấn có bảng tin điện tử công cộng đang hoạt động",
        "wards and towns with a working public e-board",
        "phường, thị trấn",
        "wards and towns",
        _R,
        Unit.COMMUNE,
    ),
    Indicator(
        "eboard_rural",
        "Tỷ lệ xã có bảng tin điện tử công cộng",
        "Rural communes with a public electronic board",
        "xã có bảng tin điện tử công cộng đang hoạt động",
        "rural communes with a working public e-board",
        "xã",
        "rural communes",
        _R,
        Unit.COMMUNE,
    ),
    Indicator(
        "eboard_count_urban",
        "Số bảng tin điện tử công cộng ở phường, thị trấn",
        "Public electronic boards in wards and towns",
        "bảng tin điện tử công cộng đang hoạt động ở phường, thị trấn",
        "working public e-boards in wards and towns",
        "phường, thị trấn",
        "wards and towns",
        _C,
        Unit.FACILITY,
    ),
    Indicator(
        "eboard_count_rural",
        "Số bảng tin điện tử công cộng ở xã",
        "Public electronic boards in rural communes",
        "bảng tin điện tử công cộng đang hoạt động ở xã",
        "working public e-boards in rural communes",
        "xã",
        "rural communes",
        _C,
        Unit.FACILITY,
    ),
    Indicator(
        "district_board_connected",
        "Tỷ lệ huyện, thị xã, thành phố có bảng tin điện tử công cộng cỡ lớn (màn hình LED, màn "
        "hình LCD) được kết nối với Hệ thống thông tin nguồn cấp tỉnh",
        "Districts with a large public e-board (LED/LCD) connected to the provincial source "
        "information system",
        "huyện, thị xã, thành phố có bảng tin cỡ lớn đã kết nối",
        "districts with a connected large board",
        "huyện, quận, thị xã, thành phố thuộc tỉnh",
        "districts (pre-2025 structure)",
        _R,
        Unit.DISTRICT,
    ),
    Indicator(
        "district_board_connected_town",
        "Tỷ lệ thị xã, thành phố trực thuộc tỉnh có bảng tin điện tử công cộng cỡ lớn (màn hình "
        "LED, màn hình LCD) được kết nối với Hệ thống thông tin nguồn của tỉnh",
        "District-level towns and cities with a large public e-board connected to the source "
        "system",
        "thị xã, thành phố, quận có bảng tin cỡ lớn đã kết nối",
        "district-level towns and cities with a connected large board",
        "thị xã, thành phố thuộc tỉnh, quận",
        "district-level towns and cities",
        _R,
        Unit.DISTRICT,
    ),
    Indicator(
        "district_board_connected_rural",
        "Tỷ lệ huyện có bảng tin điện tử công cộng cỡ lớn (màn hình LED, màn hình LCD) được kết "
        "nối với Hệ thống thông tin nguồn của tỉnh",
        "Rural districts (huyện) with a large public e-board connected to the source system",
        "huyện có bảng tin cỡ lớn đã kết nối",
        "rural districts with a connected large board",
        "huyện",
        "rural districts",
        _R,
        Unit.DISTRICT,
    ),
    Indicator(
        "source_system",
        "Tỷ lệ hệ thống thông tin nguồn để cung cấp thông tin thiết yếu và quản lý, giám sát, "
        "đánh giá hiệu quả hoạt động thông tin cơ sở trên địa bàn tỉnh",
        "Provincial source information system established",
        "tỉnh đã thiết lập Hệ thống thông tin nguồn cấp tỉnh",
        "provinces with an established source information system",
        "tỉnh",
        "provinces",
        _R,
        Unit.PROVINCE,
    ),
    Indicator(
        "feedback_handled",
        "Tỷ lệ ý kiến phản ánh của người dân về hiệu quả thực thi chính sách, pháp luật ở cơ sở "
        "được tiếp nhận, xử lý",
        "Citizen feedback received and handled",
        "ý kiến nhận trong kỳ đã được trả lời hoặc đóng",
        "feedback items received in the period that were answered or closed",
        "ý kiến phản ánh nhận trong kỳ",
        "feedback items received in the period",
        _R,
        Unit.FEEDBACK,
    ),
    Indicator(
        "device_availability",
        "Tỷ lệ thời gian thiết bị (cụm loa, bảng tin) hoạt động",
        "Device availability (share of observed time online)",
        "thời gian thiết bị trực tuyến trong kỳ",
        "device-seconds online in the period",
        "thời gian thiết bị được theo dõi trong kỳ",
        "device-seconds observed in the period",
        _R,
        Unit.DEVICE_SECONDS,
        operational=True,
    ),
    Indicator(
        "on_time_delivery",
        "Tỷ lệ lượt phát đến thiết bị đúng giờ",
        "On-time delivery rate",
        "lượt phát đến thiết bị thành công đúng giờ",
        "deliveries completed within the tolerance of their occurrence",
        "lượt phát đến thiết bị trong kỳ",
        "deliveries (dispatch × device) in the period",
        _R,
        Unit.DELIVERY,
        operational=True,
    ),
    Indicator(
        "airtime_per_commune",
        "Thời lượng phát thanh bình quân mỗi xã, phường, thị trấn (giờ)",
        "Broadcast airtime per commune (hours)",
        "tổng số giờ phát thanh đến được xã",
        "hours of bulletins aired in the communes",
        "xã, phường, thị trấn",
        "communes, wards and towns",
        _A,
        Unit.COMMUNE,
        operational=True,
    ),
    Indicator(
        "bulletins_aired",
        "Số lượt bản tin đã phát đến xã, phường, thị trấn (theo lĩnh vực)",
        "Bulletin airings in the communes (by category)",
        "lượt bản tin phát đến ít nhất một thiết bị của xã, phường, thị trấn",
        "bulletin occurrences delivered to at least one device of a commune (airings)",
        "lượt bản tin gửi đến xã, phường, thị trấn trong kỳ",
        "bulletin occurrences sent to a commune in the period",
        _C,
        Unit.BULLETIN,
        operational=True,
    ),
)

#: Every indicator by id, in report order.
INDICATORS: dict[str, Indicator] = {i.id: i for i in _DEFS}
#: The indicators the plans set targets for.
PLAN_INDICATORS: tuple[str, ...] = tuple(i.id for i in _DEFS if not i.operational)
#: The operational indicators computed from device and dispatch events.
OPERATIONAL: tuple[str, ...] = tuple(i.id for i in _DEFS if i.operational)


def indicator(indicator_id: str) -> Indicator:
    """The indicator with that id; KeyError names the known ids."""
    try:
        return INDICATORS[indicator_id]
    except KeyError:
        raise KeyError(
            f"unknown indicator {indicator_id!r}; known: {', '.join(INDICATORS)}"
        ) from None
