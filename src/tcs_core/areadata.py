"""Vietnam's administrative units before and after the 2025 reorganisation.

Pure data access over two PyPI packages:

* The 2025 structure in force from 2025-07-01 (34 provinces, 3,321 communes) is the official
  GSO list as packaged in ``vietnam-provinces`` (imported lazily as ``vietnam_provinces``):
  its codes and names are used as given. A province's type word is added from its
  ``division_type`` where the name lacks it ("Gia Lai" -> "Tỉnh Gia Lai"; the centrally
  governed cities are already "Thành phố …"); a commune's kind follows its ``division_type``
  (xã, phường, đặc khu), which must agree with the type word its name opens with.
* The legacy three-level structure (63 provinces, 696 districts, 10,035 communes) comes from
  ``vietnamadminunits``: table ``admin_units_legacy`` of its ``data/dataset.db`` (SQLite), one
  row per commune plus one ward-less row for each of the five island districts.
* The legacy -> 2025 mapping is ``vietnamadminunits``' ``data/converter_2025.json``, written with
  that dataset's normalised name keys (e.g. ``"tinhbinhdinh"``, ``"huyenchuprong"``,
  ``"xaiapia"``). The keys are resolved through its own 2025 table ``admin_units``, and each of
  those units is then translated to the official unit.

The translation step exists because ``vietnamadminunits`` 1.0.4 and ``vietnam-provinces``
2025.10.1 have the same 34 provinces (same codes) and the same 3,321 communes per province, but
123 communes in 24 provinces carry a different code upstream (another predecessor's code, e.g.
Phường Cửa Nam is 00082 there, 00073 officially) and 40 names differ only in spelling: 22 in
tone placement (Hòa/Hoà, Thủy/Thuỷ), 10 by a doubled space in the official name, 5 in the
apostrophe (' vs ’), 1 in the dash (- vs –), 2 in letter case (Đăk Bla/BLa). Units are
therefore matched within their province by kind and by a normalised name (NFC, casefolded,
whitespace collapsed, apostrophes and dashes unified, old-style tone placement "hòa", "khỏe",
"thủy" folded to "hoà", "khoẻ", "thuỷ"); the match must be one-to-one for all 3,321 communes,
and provinces, matched by code, must agree by name, or a LookupError is raised. A legacy
commune "continues" only if its sole successor has its official code (131 do; 471 are split
and 9,433 merged into one unit).

``vietnamadminunits`` is located with :func:`importlib.util.find_spec` and never imported,
because its ``__init__`` pulls in heavy dependencies we do not need.

Results are computed once and cached; the public functions return fresh lists of frozen
records, so callers may mutate what they get without affecting later calls.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import importlib.util
import json
import re
import sqlite3
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "AREA_KINDS",
    "DATASET_VERSION",
    "REORGANISATION_DATE",
    "Succession",
    "UnitRecord",
    "reorganisation_2025",
    "structure_2025",
    "structure_legacy",
]

AREA_KINDS = (
    "country",
    "province",
    "district",
    "ward",
    "township",
    "commune",
    "special_zone",
    "village",
)

REORGANISATION_DATE: datetime.date = datetime.date(2025, 7, 1)

_PACKAGE = "vietnamadminunits"
_OFFICIAL_DIST = "vietnam-provinces"  # imported as vietnam_provinces


def _official_version() -> str:
    try:
        return importlib.metadata.version(_OFFICIAL_DIST)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


DATASET_VERSION: str = (
    f"{_PACKAGE} {importlib.metadata.version(_PACKAGE)} + {_OFFICIAL_DIST} {_official_version()}"
)

# Commune-level kinds of vietnamadminunits' units, by the type word that opens the unit's full
# name. The name is used, not the dataset's ``wardType`` column, because that column contradicts
# the name in 7 rows of vietnamadminunits 1.0.4 (2025: Phường Việt Hòa, Xã Vĩnh Hòa, Phường Tân
# Lộc, Xã Phong Điền; legacy: Thị trấn Ngọc Lặc, Phường 5 and Phường 15 of Quận Phú Nhuận), and
# the name agrees with the official list (PyPI vietnam-provinces), whose own kinds we use for
# 2025.
_COMMUNE_KINDS: dict[str, str] = {
    "Phường": "ward",
    "Thị trấn": "township",
    "Xã": "commune",
    "Đặc khu": "special_zone",
}
_TYPE_WORDS: dict[str, str] = {kind: word + " " for word, kind in _COMMUNE_KINDS.items()}


@attrs.frozen
class UnitRecord:
    """One administrative unit: official code, full name with its type, kind and parent."""

    code: str
    name: str
    kind: str
    parent_code: str | None


@attrs.frozen
class Succession:
    """The 2025 units that took over a legacy unit's territory."""

    old_code: str
    new_codes: tuple[str, ...]
    continues: bool


# --------------------------------------------------------------------------- raw data access


@functools.lru_cache(maxsize=1)
def _data_dir() -> Path:
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {_PACKAGE!r} is not installed", name=_PACKAGE)
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _query(sql: str) -> list[tuple[Any, ...]]:
    # Read-only URI so a stray write can never corrupt the installed package's dataset.
    db = _data_dir() / "dataset.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@functools.lru_cache(maxsize=1)
def _converter() -> dict[str, Any]:
    with (_data_dir() / "converter_2025.json").open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def _province_kind(name: str) -> str:
    # Provinces are "Tỉnh X" or centrally governed "Thành phố X"; both are one level.
    if not name.startswith(("Tỉnh ", "Thành phố ")):
        raise ValueError(f"unexpected province name {name!r}")
    return "province"


def _commune(code: str, name: str, parent_code: str) -> UnitRecord:
    for unit_type, kind in _COMMUNE_KINDS.items():
        prefix = unit_type + " "
        # Case-insensitive, and the type word rewritten in its usual casing, because 5 legacy
        # names are spelt "Thị Trấn …" (Ái Tử, Prao, Phú Hòa, Óc Eo, Năm Căn).
        if name[: len(prefix)].lower() == prefix.lower():
            return UnitRecord(code, prefix + name[len(prefix) :], kind, parent_code)
    raise ValueError(f"unexpected commune-level unit name {name!r}")


# --------------------------------------------------------------------------- upstream 2025


@attrs.frozen
class _Index2025:
    """vietnamadminunits' own 2025 table, to resolve the converter's keys (upstream codes)."""

    records: tuple[UnitRecord, ...]
    province_code: dict[str, str]  # provinceKey -> code
    ward_code: dict[tuple[str, str], str]  # (provinceKey, wardKey) -> code


@functools.lru_cache(maxsize=1)
def _index_2025() -> _Index2025:
    rows = _query(
        "SELECT province, provinceCode, provinceKey, ward, wardCode, wardKey"
        " FROM admin_units ORDER BY provinceCode, wardCode"
    )
    provinces: dict[str, UnitRecord] = {}
    communes: list[UnitRecord] = []
    province_code: dict[str, str] = {}
    ward_code: dict[tuple[str, str], str] = {}
    for p_name, p_code, p_key, w_name, w_code, w_key in rows:
        if p_code not in provinces:
            provinces[p_code] = UnitRecord(p_code, p_name, _province_kind(p_name), None)
            province_code[p_key] = p_code
        communes.append(_commune(w_code, w_name, p_code))
        ward_code[(p_key, w_key)] = w_code
    return _Index2025(
        records=(*provinces.values(), *communes),
        province_code=province_code,
        ward_code=ward_code,
    )


# --------------------------------------------------------------------------- official 2025

_OFFICIAL_PROVINCE_TYPES: dict[str, str] = {"tỉnh": "Tỉnh ", "thành phố trung ương": "Thành phố "}
_OFFICIAL_COMMUNE_KINDS: dict[str, str] = {
    "phường": "ward",
    "xã": "commune",
    "đặc khu": "special_zone",
}


@functools.lru_cache(maxsize=1)
def _official_2025() -> tuple[UnitRecord, ...]:
    # Imported here, not at module level: its lookup table is ~400 kB of Python source.
    from vietnam_provinces import Province, Ward

    provinces: list[UnitRecord] = []
    for p in Province.iter_all():
        prefix = _OFFICIAL_PROVINCE_TYPES[p.division_type.value]
        name = p.name if p.name.startswith(prefix) else prefix + p.name
        provinces.append(UnitRecord(f"{p.code.value:02d}", name, "province", None))
    communes: list[UnitRecord] = []
    for w in Ward.iter_all():
        kind = _OFFICIAL_COMMUNE_KINDS[w.division_type.value]
        # Kept exactly as published (even "Xã  Bắc Đông Quan" with its doubled space), but
        # the name must open with the type word of its division type.
        if not w.name.startswith(_TYPE_WORDS[kind]):
            raise ValueError(f"official unit {w.name!r} is not a {w.division_type.value}")
        communes.append(
            UnitRecord(f"{w.code.value:05d}", w.name, kind, f"{w.province_code.value:02d}")
        )
    provinces.sort(key=lambda r: r.code)
    communes.sort(key=lambda r: (r.parent_code or "", r.code))
    return (*provinces, *communes)


def structure_2025() -> list[UnitRecord]:
    """The official 2025 structure: 34 provinces, then 3,321 communes (parent: the province).

    Codes and names are those of PyPI ``vietnam-provinces``; communes are ordered by province
    code, then by their own code.
    """
    return list(_official_2025())


# --------------------------------------------------------------------------- name matching

# Apostrophes (M’Drắk / M'Drắk) and dashes (Chân Mây – Lăng Cô / Chân Mây - Lăng Cô).
_PUNCTUATION = str.maketrans(dict.fromkeys("’‘ʼ`´", "'") | dict.fromkeys("‐‑‒–—−", "-"))


def _tone_moves() -> dict[str, str]:
    # Old-style tone placement on a syllable-final "oa", "oe", "uy" (hòa, khỏe, thủy) -> the
    # new style (hoà, khoẻ, thuỷ); both are in official use, e.g. "Hòa" vs "Hoà".
    marks = "\u0300\u0301\u0309\u0303\u0323"  # grave, acute, hook above, tilde, dot below
    return {
        unicodedata.normalize("NFC", a + mark) + b: a + unicodedata.normalize("NFC", b + mark)
        for a, b in ("oa", "oe", "uy")
        for mark in marks
    }


_TONE_MOVES = _tone_moves()
_TONE_RE = re.compile("(?:" + "|".join(_TONE_MOVES) + r")(?!\w)")


def _name_key(name: str) -> str:
    """Fold a unit name's spelling variants: case, spacing, punctuation, tone placement."""
    text = " ".join(unicodedata.normalize("NFC", name).casefold().translate(_PUNCTUATION).split())
    return _TONE_RE.sub(lambda m: _TONE_MOVES[m.group()], text)


def _describe(records: list[UnitRecord]) -> str:
    return ", ".join(f"{r.code} {r.name!r} (province {r.parent_code})" for r in records)


# (province code, kind, name key) -> the units with that key; exactly one if all is well
_Keyed = dict[tuple[str | None, str, str], list[UnitRecord]]


@functools.lru_cache(maxsize=1)
def _to_official() -> dict[str, str]:
    """Translate every vietnamadminunits 2025 code (province or commune) to the official one."""
    upstream, official = _index_2025().records, _official_2025()
    # Provinces: the codes agree; check that the names do too.
    up_p = {r.code: r for r in upstream if r.kind == "province"}
    off_p = {r.code: r for r in official if r.kind == "province"}
    bad = sorted(set(up_p) ^ set(off_p)) + [
        code
        for code in sorted(set(up_p) & set(off_p))
        if _name_key(up_p[code].name) != _name_key(off_p[code].name)
    ]
    if bad:
        raise LookupError(f"2025 provinces that do not match the official list by code: {bad}")
    translation = {code: code for code in up_p}

    # Communes: one-to-one on (province, kind, normalised name).
    def by_key(records: tuple[UnitRecord, ...]) -> _Keyed:
        table: _Keyed = defaultdict(list)
        for r in records:
            if r.kind != "province":
                table[(r.parent_code, r.kind, _name_key(r.name))].append(r)
        return table

    def unmatched(mine: _Keyed, theirs: _Keyed) -> list[UnitRecord]:
        return [
            r for k, rs in mine.items() if len(rs) != 1 or len(theirs.get(k, [])) != 1 for r in rs
        ]

    up_c, off_c = by_key(upstream), by_key(official)
    unmatched_up, unmatched_off = unmatched(up_c, off_c), unmatched(off_c, up_c)
    if unmatched_up or unmatched_off:
        raise LookupError(
            f"2025 communes without exactly one counterpart (same province, kind and name):"
            f" {len(unmatched_up)} from {_PACKAGE}: {_describe(unmatched_up)};"
            f" {len(unmatched_off)} from {_OFFICIAL_DIST}: {_describe(unmatched_off)}"
        )
    for key, (record,) in up_c.items():
        translation[record.code] = off_c[key][0].code
    return translation


# --------------------------------------------------------------------------- legacy structure


@attrs.frozen
class _IndexLegacy:
    records: tuple[UnitRecord, ...]
    province_code: dict[str, str]  # provinceKey -> code
    # "provinceKey_districtKey_wardKey" (the converter's key format) -> commune code
    commune_code: dict[str, str]
    # island districts without communes: converter key "provinceKey_districtKey_" -> (code, short)
    islands: dict[str, tuple[str, str]]


@functools.lru_cache(maxsize=1)
def _index_legacy() -> _IndexLegacy:
    rows = _query(
        "SELECT province, provinceCode, provinceKey, district, districtShort, districtCode,"
        " districtKey, ward, wardCode, wardKey"
        " FROM admin_units_legacy ORDER BY provinceCode, districtCode, wardCode"
    )
    provinces: dict[str, UnitRecord] = {}
    districts: dict[str, UnitRecord] = {}
    communes: list[UnitRecord] = []
    province_code: dict[str, str] = {}
    commune_code: dict[str, str] = {}
    islands: dict[str, tuple[str, str]] = {}
    for row in rows:
        p_name, p_code, p_key, d_name, d_short, d_code, d_key, w_name, w_code, w_key = row
        if p_code not in provinces:
            provinces[p_code] = UnitRecord(p_code, p_name, _province_kind(p_name), None)
            province_code[p_key] = p_code
        if d_code not in districts:
            # Huyện, Quận, Thành phố and Thị xã are all the same (second) level.
            districts[d_code] = UnitRecord(d_code, d_name, "district", p_code)
        if w_code is None:
            # The island districts (Bạch Long Vĩ, Cồn Cỏ, Hoàng Sa, Lý Sơn, Côn Đảo) had no
            # communes; the dataset gives each one row with NULL ward columns.
            islands[f"{p_key}_{d_key}_"] = (d_code, d_short)
            continue
        communes.append(_commune(w_code, w_name, d_code))
        commune_code[f"{p_key}_{d_key}_{w_key}"] = w_code
    return _IndexLegacy(
        records=(*provinces.values(), *districts.values(), *communes),
        province_code=province_code,
        commune_code=commune_code,
        islands=islands,
    )


def structure_legacy() -> list[UnitRecord]:
    """The pre-2025 structure: 63 provinces, 696 districts, 10,035 communes, parents first."""
    return list(_index_legacy().records)


# --------------------------------------------------------------------------- reorganisation


def _resolve(table: dict[Any, str], key: Any, what: str) -> str:
    try:
        return table[key]
    except KeyError:
        raise LookupError(f"{what} key {key!r} not found in the {_PACKAGE} dataset") from None


def _province_successions(
    old: _IndexLegacy, new: _Index2025, official: dict[str, str]
) -> list[Succession]:
    result: dict[str, Succession] = {}
    for new_key, old_keys in _converter()["DICT_PROVINCE"].items():
        new_code = official[_resolve(new.province_code, new_key, "2025 province")]
        for old_key in old_keys:
            old_code = _resolve(old.province_code, old_key, "legacy province")
            if old_code in result:
                raise ValueError(f"legacy province {old_key!r} has several 2025 successors")
            # Equal codes alone are not enough: Bình Định (52) merged into Gia Lai, which
            # took code 52, so the new unit must also have no other predecessor.
            continues = len(old_keys) == 1 and old_code == new_code
            result[old_code] = Succession(old_code, (new_code,), continues)
    missing = sorted(set(old.province_code.values()) - set(result))
    if missing:
        raise LookupError(f"legacy provinces without a 2025 successor: {missing}")
    return [result[code] for code in sorted(result)]


def _commune_successors(
    old: _IndexLegacy, new: _Index2025, official: dict[str, str]
) -> dict[str, set[str]]:
    """Map every converter key (communes and island districts) to its official 2025 codes."""
    conv = _converter()
    successors: dict[str, set[str]] = defaultdict(set)
    # Wards absorbed whole into one new unit.
    for new_province, wards in conv["DICT_PROVINCE_WARD_NO_DIVIDED"].items():
        for new_ward, old_keys in wards.items():
            code = _resolve(new.ward_code, (new_province, new_ward), "2025 commune")
            for old_key in old_keys:
                successors[old_key].add(official[code])
    # Wards split across several new units: each share is a successor.
    for new_province, splits in conv["DICT_PROVINCE_WARD_DIVIDED"].items():
        for old_key, parts in splits.items():
            for part in parts:
                key = (new_province, part["newWardKey"])
                successors[old_key].add(official[_resolve(new.ward_code, key, "2025 commune")])
    # In vietnamadminunits 1.0.4 every one of the 10,040 converter keys (10,035 communes +
    # 5 islands) resolves and is covered: 9,569 only in NO_DIVIDED, 471 only in DIVIDED, none
    # in both, none unknown. Any future gap must fail loudly rather than drop a unit.
    unknown = sorted(set(successors) - set(old.commune_code) - set(old.islands))
    if unknown:
        raise LookupError(f"converter keys not in the legacy dataset: {unknown[:10]}")
    uncovered = sorted(set(old.commune_code) - set(successors))
    if uncovered:
        raise LookupError(f"legacy communes without a 2025 successor: {uncovered[:10]}")
    return successors


def _district_successions(old: _IndexLegacy, successors: dict[str, set[str]]) -> list[Succession]:
    new = {r.code: r for r in _official_2025()}
    island_successor: dict[str, str] = {}
    for key, (d_code, d_short) in old.islands.items():
        # The converter maps each island district to its special zone; check that it really is
        # the đặc khu of the same name, so a data error cannot silently re-parent an island.
        codes = successors.get(key, set())
        zone_name = _name_key(_TYPE_WORDS["special_zone"] + d_short)
        zones = [
            c
            for c in codes
            if _name_key(new[c].name) == zone_name and new[c].kind == "special_zone"
        ]
        if len(codes) != 1 or len(zones) != 1:
            raise LookupError(f"island district {key!r}: no single special zone named {d_short!r}")
        island_successor[d_code] = zones[0]
    # 2025 abolished the district level; only the islands live on, as special zones.
    return [
        Succession(r.code, (island_successor[r.code],) if r.code in island_successor else (), False)
        for r in old.records
        if r.kind == "district"
    ]


@functools.lru_cache(maxsize=1)
def _reorganisation() -> tuple[Succession, ...]:
    old, new, official = _index_legacy(), _index_2025(), _to_official()
    successors = _commune_successors(old, new, official)
    # A new commune "continues" an old one only if it has no other predecessor, so count
    # predecessors over everything the converter maps (islands included).
    predecessors: dict[str, int] = defaultdict(int)
    for codes in successors.values():
        for code in codes:
            predecessors[code] += 1
    communes = []
    for key, old_code in old.commune_code.items():
        new_codes = tuple(sorted(successors[key]))
        continues = new_codes == (old_code,) and predecessors[old_code] == 1
        communes.append(Succession(old_code, new_codes, continues))
    communes.sort(key=lambda s: s.old_code)
    return (
        *_province_successions(old, new, official),
        *_district_successions(old, successors),
        *communes,
    )


def reorganisation_2025() -> list[Succession]:
    """One Succession per legacy province, district and commune (in that order, by code).

    Successors are official 2025 codes (those of :func:`structure_2025`), and a unit
    ``continues`` only if its sole successor has its code and no other predecessor.
    """
    return list(_reorganisation())
