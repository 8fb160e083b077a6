"""Tests for tcs_core.areadata: the 2025 and legacy structures and the reorganisation map."""

from __future__ import annotations

import datetime
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator
from types import ModuleType

import pytest

from tcs_core import areadata
from tcs_core.areadata import (
    AREA_KINDS,
    DATASET_VERSION,
    REORGANISATION_DATE,
    Succession,
    UnitRecord,
    reorganisation_2025,
    structure_2025,
    structure_legacy,
)

ISLANDS = ("Bạch Long Vĩ", "Cồn Cỏ", "Hoàng Sa", "Lý Sơn", "Côn Đảo")


# --------------------------------------------------------------------------- helpers


def _by_code(records: list[UnitRecord]) -> dict[str, UnitRecord]:
    return {r.code: r for r in records}


def _legacy_province(name: str) -> UnitRecord:
    (province,) = [r for r in structure_legacy() if r.kind == "province" and r.name == name]
    return province


def _legacy_children(parent_codes: set[str], kind: str | None = None) -> list[UnitRecord]:
    return [
        r
        for r in structure_legacy()
        if r.parent_code in parent_codes and (kind is None or r.kind == kind)
    ]


def _legacy_province_counts(name: str) -> tuple[int, int, int, int]:
    """(districts, communes, xã, phường + thị trấn) of a legacy province."""
    districts = _legacy_children({_legacy_province(name).code}, "district")
    communes = _legacy_children({d.code for d in districts})
    kinds = Counter(c.kind for c in communes)
    return (
        len(districts),
        len(communes),
        kinds["commune"],
        kinds["ward"] + kinds["township"],
    )


def _successions() -> dict[str, Succession]:
    return {s.old_code: s for s in reorganisation_2025()}


# --------------------------------------------------------------------------- constants


def test_constants() -> None:
    """The reorganisation date is 2025-07-01 and the dataset version names the package."""
    assert datetime.date(2025, 7, 1) == REORGANISATION_DATE
    assert DATASET_VERSION.startswith("vietnamadminunits ")
    assert " + vietnam-provinces " in DATASET_VERSION
    assert AREA_KINDS[0] == "country"


# --------------------------------------------------------------------------- 2025 structure


def test_2025_counts_by_kind() -> None:
    """2025 has 34 provinces and 3,321 communes: 2,621 xã, 687 phường, 13 đặc khu."""
    kinds = Counter(r.kind for r in structure_2025())
    assert kinds == {"province": 34, "commune": 2621, "ward": 687, "special_zone": 13}


def test_2025_codes_unique_and_provinces_first() -> None:
    """2025 codes are unique; provinces come first and every commune's parent is a province."""
    records = structure_2025()
    assert len({r.code for r in records}) == len(records)
    assert all(r.kind == "province" for r in records[:34])
    provinces = {r.code for r in records[:34]}
    assert all(r.parent_code is None for r in records[:34])
    assert all(r.parent_code in provinces for r in records[34:])


def test_2025_names_carry_their_type() -> None:
    """Names are full official names whose type word matches the kind."""
    prefixes = {"ward": "Phường ", "commune": "Xã ", "special_zone": "Đặc khu "}
    for r in structure_2025():
        if r.kind == "province":
            assert r.name.startswith(("Tỉnh ", "Thành phố ")), r
        else:
            assert r.name.startswith(prefixes[r.kind]), r


def test_2025_kind_follows_name_not_upstream_type_column() -> None:
    """Units whose vietnamadminunits wardType contradicts their name have the official kind."""
    by_name = {(r.parent_code, r.name): r.kind for r in structure_2025()}
    assert by_name[("31", "Phường Việt Hòa")] == "ward"
    assert by_name[("31", "Xã Vĩnh Hòa")] == "commune"
    assert by_name[("92", "Phường Tân Lộc")] == "ward"
    assert by_name[("92", "Xã Phong Điền")] == "commune"


def test_2025_gia_lai_has_code_52() -> None:
    """The 2025 Gia Lai province took code 52 (Bình Định's legacy code)."""
    assert _by_code(structure_2025())["52"] == UnitRecord("52", "Tỉnh Gia Lai", "province", None)


def test_2025_special_zones_include_the_islands() -> None:
    """Each island district of the legacy structure has a đặc khu of the same name in 2025."""
    zones = {r.name for r in structure_2025() if r.kind == "special_zone"}
    assert {f"Đặc khu {name}" for name in ISLANDS} <= zones


# --------------------------------------------------------------------------- legacy structure


def test_legacy_counts_by_level() -> None:
    """Legacy has 63 provinces, 696 districts and 10,035 communes."""
    kinds = Counter(r.kind for r in structure_legacy())
    assert kinds["province"] == 63
    assert kinds["district"] == 696
    assert kinds["commune"] + kinds["ward"] + kinds["township"] == 10_035
    assert set(kinds) <= set(AREA_KINDS)


def test_legacy_parents_come_first_and_exist() -> None:
    """Every legacy unit's parent appears earlier in the list, with the right level above it."""
    seen: dict[str, str] = {}
    above = {"district": "province"} | dict.fromkeys(("commune", "ward", "township"), "district")
    for r in structure_legacy():
        if r.kind == "province":
            assert r.parent_code is None
        else:
            assert r.parent_code is not None
            assert seen[r.parent_code] == above[r.kind], r
        seen[r.code] = r.kind
    assert len(seen) == 63 + 696 + 10_035  # codes are unique across all levels


def test_legacy_chu_prong_has_20_communes() -> None:
    """Huyện Chư Prông (Tỉnh Gia Lai) had 20 communes."""
    gia_lai = _legacy_province("Tỉnh Gia Lai")
    (chu_prong,) = [d for d in _legacy_children({gia_lai.code}) if d.name == "Huyện Chư Prông"]
    assert len(_legacy_children({chu_prong.code})) == 20


@pytest.mark.parametrize(
    ("province", "expected"),
    [
        ("Tỉnh Bình Định", (11, 155, 115, 40)),
        ("Tỉnh Bình Dương", (9, 91, 39, 52)),
        ("Tỉnh Bình Thuận", (10, 121, 93, 28)),
    ],
)
def test_legacy_province_composition(province: str, expected: tuple[int, ...]) -> None:
    """Districts, communes, xã and phường + thị trấn per legacy province match the record."""
    assert _legacy_province_counts(province) == expected


def test_legacy_kind_follows_name_not_upstream_type_column() -> None:
    """Legacy units whose upstream wardType says "Xã" but whose name says otherwise."""
    kinds = {r.name: r.kind for r in structure_legacy() if r.code in {"15061", "27046", "27076"}}
    assert kinds == {"Thị trấn Ngọc Lặc": "township", "Phường 5": "ward", "Phường 15": "ward"}


def test_results_are_fresh_copies() -> None:
    """Mutating a returned list does not change what later calls return."""
    for func in (structure_2025, structure_legacy, reorganisation_2025):
        first = func()
        n = len(first)
        first.clear()
        assert len(func()) == n


# --------------------------------------------------------------------------- reorganisation


def test_one_succession_per_legacy_unit() -> None:
    """There is exactly one Succession per legacy province, district and commune."""
    successions = reorganisation_2025()
    assert sorted(s.old_code for s in successions) == sorted(r.code for r in structure_legacy())


def test_every_legacy_commune_and_province_has_a_successor() -> None:
    """No legacy province or commune is left without a 2025 successor."""
    succ = _successions()
    for r in structure_legacy():
        if r.kind != "district":
            assert succ[r.code].new_codes, r


def test_successor_codes_exist_in_2025_and_are_sorted() -> None:
    """Every successor code is a 2025 unit of the right level, listed sorted and unique."""
    new = _by_code(structure_2025())
    legacy = _by_code(structure_legacy())
    for s in reorganisation_2025():
        assert list(s.new_codes) == sorted(set(s.new_codes))
        province_level = legacy[s.old_code].kind == "province"
        for code in s.new_codes:
            assert (new[code].kind == "province") == province_level, s


def test_binh_dinh_merged_into_gia_lai() -> None:
    """Bình Định (52) is merged, not continued, into 2025 Gia Lai (52)."""
    assert _successions()["52"] == Succession("52", ("52",), continues=False)


def test_ha_noi_continues() -> None:
    """Hà Nội (01) continues unchanged as 2025 Hà Nội."""
    assert _successions()["01"] == Succession("01", ("01",), continues=True)


def test_eleven_provinces_continue() -> None:
    """The 11 provinces left untouched by the 2025 mergers continue; the other 52 merge."""
    legacy = _by_code(structure_legacy())
    provinces = [s for s in reorganisation_2025() if legacy[s.old_code].kind == "province"]
    assert sum(s.continues for s in provinces) == 11
    assert all(len(s.new_codes) == 1 for s in provinces)


def test_binh_dinh_communes_go_to_gia_lai() -> None:
    """Every Bình Định commune's successors lie in the 2025 Gia Lai province."""
    new = _by_code(structure_2025())
    succ = _successions()
    binh_dinh = _legacy_province("Tỉnh Bình Định")
    districts = {d.code for d in _legacy_children({binh_dinh.code}, "district")}
    communes = _legacy_children(districts)
    assert len(communes) == 155
    for c in communes:
        assert {new[code].parent_code for code in succ[c.code].new_codes} == {"52"}, c


def test_districts_dissolved_except_islands() -> None:
    """All legacy districts dissolve except the five islands, which become same-name đặc khu."""
    new = _by_code(structure_2025())
    succ = _successions()
    surviving = {}
    for d in structure_legacy():
        if d.kind != "district":
            continue
        s = succ[d.code]
        assert not s.continues
        if s.new_codes:
            (code,) = s.new_codes
            surviving[d.name] = new[code].name
    assert surviving == {f"Huyện {name}": f"Đặc khu {name}" for name in ISLANDS}


def test_continuity_rule() -> None:
    """A commune continues iff its sole successor has its code and no other predecessor."""
    predecessors: defaultdict[str, int] = defaultdict(int)
    for s in reorganisation_2025():
        for code in s.new_codes:
            predecessors[code] += 1
    continuing = 0
    for s in reorganisation_2025():
        expected = s.new_codes == (s.old_code,) and predecessors[s.old_code] == 1
        if len(s.old_code) == 5:  # commune level; provinces are checked separately
            assert s.continues == expected, s
            continuing += s.continues
    assert continuing == 131


def test_commune_split_and_merge_counts() -> None:
    """Of 10,035 legacy communes 131 continue, 471 are split and 9,433 merge into one unit."""
    legacy = _by_code(structure_legacy())
    kinds = Counter(
        "continues" if s.continues else "split" if len(s.new_codes) > 1 else "merged"
        for s in reorganisation_2025()
        if legacy[s.old_code].kind not in ("province", "district")
    )
    assert kinds == {"continues": 131, "split": 471, "merged": 9433}


def test_every_2025_commune_has_a_predecessor() -> None:
    """Every 2025 unit is the successor of at least one legacy unit."""
    covered = {code for s in reorganisation_2025() for code in s.new_codes}
    assert {r.code for r in structure_2025()} == covered


# --------------------------------------------------------------------------- vietnam-provinces


@pytest.fixture(scope="module")
def vp() -> ModuleType:
    """The vietnam_provinces package (official GSO list), or skip if it is not installed."""
    module: ModuleType = pytest.importorskip(
        "vietnam_provinces", reason="vietnam-provinces (PyPI) is not installed"
    )
    return module


_PUNCTUATION = str.maketrans({"’": "'", "–": "-"})
_OLD_STYLE_TONES = {
    "oà": "òa", "oá": "óa", "oả": "ỏa", "oã": "õa", "oạ": "ọa",
    "oè": "òe", "oé": "óe", "oẻ": "ỏe", "oẽ": "õe", "oẹ": "ọe",
    "uỳ": "ùy", "uý": "úy", "uỷ": "ủy", "uỹ": "ũy", "uỵ": "ụy",
}  # fmt: skip


def _spelling_key(name: str) -> str:
    """Fold spelling variants (tone placement, case, spacing, apostrophe, dash) of one name."""
    text = " ".join(unicodedata.normalize("NFC", name).lower().translate(_PUNCTUATION).split())
    for old, new in _OLD_STYLE_TONES.items():
        text = text.replace(old, new)
    return text


def _official_wards(vp: ModuleType) -> dict[str, tuple[str, str, str]]:
    """Official wards: code -> (name, province code, kind)."""
    kinds = {"xã": "commune", "phường": "ward", "đặc khu": "special_zone"}
    return {
        f"{w.code.value:05d}": (
            w.name,
            f"{w.province_code.value:02d}",
            kinds[w.division_type.value],
        )
        for w in vp.Ward.iter_all()
    }


def test_provinces_match_vietnam_provinces(vp: ModuleType) -> None:
    """The 34 province codes and names equal the official list (which omits "Tỉnh ")."""
    official = {f"{p.code.value:02d}": p.name for p in vp.Province.iter_all()}
    ours = {r.code: r.name for r in structure_2025() if r.kind == "province"}
    assert ours == {
        code: name if name.startswith("Thành phố ") else f"Tỉnh {name}"
        for code, name in official.items()
    }


def test_communes_match_vietnam_provinces_by_name(vp: ModuleType) -> None:
    """Each province has the same communes (up to spelling) of the same kind as officially."""
    ours = {
        (r.parent_code, _spelling_key(r.name)): r.kind
        for r in structure_2025()
        if r.kind != "province"
    }
    official = {
        (province, _spelling_key(name)): kind
        for name, province, kind in _official_wards(vp).values()
    }
    assert len(ours) == len(official) == 3321  # the spelling key merges no two units
    assert ours == official


def test_2025_structure_equals_vietnam_provinces(vp: ModuleType) -> None:
    """2025 codes, names, kinds and parents equal the official list exactly."""
    kinds = {"tỉnh": "province", "thành phố trung ương": "province"}
    official = {
        f"{p.code.value:02d}": (
            p.name if p.name.startswith("Thành phố ") else f"Tỉnh {p.name}",
            kinds[p.division_type.value],
            None,
        )
        for p in vp.Province.iter_all()
    } | {code: (name, kind, p) for code, (name, p, kind) in _official_wards(vp).items()}
    ours = {r.code: (r.name, r.kind, r.parent_code) for r in structure_2025()}
    assert len(official) == 34 + 3321
    assert ours == official


def test_2025_cua_nam_has_its_official_code() -> None:
    """Phường Cửa Nam (Hà Nội) is 00073, not vietnamadminunits' 00082."""
    (cua_nam,) = [r for r in structure_2025() if r.name == "Phường Cửa Nam"]
    assert cua_nam == UnitRecord("00073", "Phường Cửa Nam", "ward", "01")


def test_successors_are_official_codes(vp: ModuleType) -> None:
    """Every legacy unit's successors are official 2025 codes of the right level."""
    wards = set(_official_wards(vp))
    provinces = {f"{p.code.value:02d}" for p in vp.Province.iter_all()}
    legacy = _by_code(structure_legacy())
    for s in reorganisation_2025():
        official = provinces if legacy[s.old_code].kind == "province" else wards
        assert set(s.new_codes) <= official, s


def test_legacy_cua_nam_successor_is_official() -> None:
    """Legacy Phường Cửa Nam (Quận Hoàn Kiếm) has 2025 Phường Cửa Nam (00073) as a successor."""
    legacy = _by_code(structure_legacy())
    (old,) = [
        r
        for r in structure_legacy()
        if r.name == "Phường Cửa Nam"
        and r.parent_code is not None
        and legacy[r.parent_code].name == "Quận Hoàn Kiếm"
    ]
    new = _by_code(structure_2025())
    successors = {new[code].name: code for code in _successions()[old.code].new_codes}
    assert successors["Phường Cửa Nam"] == "00073"
    assert "00082" not in successors.values()


def test_translation_repairs_upstream_codes(vp: ModuleType) -> None:
    """vietnamadminunits' 2025 units map one-to-one onto the official ones; 123 codes change."""
    translation = areadata._to_official()
    upstream = {r.code: r for r in areadata._index_2025().records}
    assert set(translation) == set(upstream)
    assert sorted(translation.values()) == sorted(r.code for r in structure_2025())
    changed = {code for code, new in translation.items() if code != new}
    assert len(changed) == 123
    assert len({upstream[code].parent_code for code in changed}) == 24
    new = _by_code(structure_2025())
    renamed = [c for c, n in translation.items() if upstream[c].name != new[n].name]
    assert len(renamed) == 40
    for code, new_code in translation.items():
        assert upstream[code].parent_code == new[new_code].parent_code
        assert upstream[code].kind == new[new_code].kind


@pytest.mark.parametrize(
    ("upstream", "official"),
    [
        ("Xã Hòa An", "Xã Hoà An"),
        ("Xã Thanh Thủy", "Xã Thanh Thuỷ"),
        ("Phường Nguyễn Úy", "Phường Nguyễn Uý"),
        ("Xã Bắc Đông Quan", "Xã  Bắc Đông Quan"),
        ("Xã Ea H'Leo", "Xã Ea H’leo"),
        ("Xã Chân Mây - Lăng Cô", "Xã Chân Mây – Lăng Cô"),
        ("Phường Đăk Bla", "Phường Đăk BLa"),
    ],
)
def test_name_key_folds_spelling_variants(upstream: str, official: str) -> None:
    """Tone placement, spacing, apostrophes, dashes and case do not distinguish names."""
    assert areadata._name_key(upstream) == areadata._name_key(official)


@pytest.mark.parametrize(
    ("a", "b"),
    [("Xã Hòa An", "Xã Hoa An"), ("Phường Hoàng Mai", "Phường Hòang Mai"), ("Xã An", "Phường An")],
)
def test_name_key_keeps_real_differences(a: str, b: str) -> None:
    """Tones themselves, tone placement inside a syllable and the type word still count."""
    assert areadata._name_key(a) != areadata._name_key(b)


@pytest.fixture
def fresh_caches() -> Iterator[None]:
    """Clear the translation caches around a test that swaps in altered data."""
    areadata._to_official.cache_clear()
    yield
    areadata._to_official.cache_clear()


@pytest.mark.usefixtures("fresh_caches")
def test_unmatched_commune_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2025 unit with no official counterpart fails loudly, naming both sides' leftovers."""
    real = areadata._official_2025()
    altered = tuple(
        UnitRecord(r.code, "Phường Cửa Bắc", r.kind, r.parent_code) if r.code == "00073" else r
        for r in real
    )
    monkeypatch.setattr(areadata, "_official_2025", lambda: altered)
    with pytest.raises(LookupError, match=r"1 from vietnamadminunits: .*'Phường Cửa Nam'") as exc:
        areadata._to_official()
    assert "00073 'Phường Cửa Bắc' (province 01)" in str(exc.value)


@pytest.mark.usefixtures("fresh_caches")
def test_province_name_mismatch_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A province whose official name disagrees with vietnamadminunits' fails loudly."""
    altered = tuple(
        UnitRecord(r.code, "Tỉnh Kon Tum", r.kind, None) if r.code == "52" else r
        for r in areadata._official_2025()
    )
    monkeypatch.setattr(areadata, "_official_2025", lambda: altered)
    with pytest.raises(LookupError, match=r"provinces .*\['52'\]"):
        areadata._to_official()
