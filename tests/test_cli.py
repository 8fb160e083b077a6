"""Tests for the `tcs` command: in-process through `main([...])`, and as a subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tcs_core import SourceSystem, __version__, cli
from tcs_core.cli import MESSAGES, main
from tcs_core.config import Settings
from tcs_core.errors import PermissionDenied

CHU_PRONG = "632"  # Huyện Chư Prông, Gia Lai (dissolved 2025-07-01)
BINH_DINH_THEN_GIA_LAI = "52"  # Tỉnh Bình Định until 2025-06-30, Tỉnh Gia Lai since


@pytest.fixture(autouse=True)
def _no_tcs_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the caller's TCS_* variables from choosing another store."""
    for name in [k for k in os.environ if k.startswith("TCS_")]:
        monkeypatch.delenv(name)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `tcs argv...` in-process; return (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def row(output: str, label: str) -> str:
    """The value cell of the table row whose first cell is ``label``."""
    match = re.search(rf"│ {re.escape(label)}\s*│\s*(.*?)\s*│", output)
    assert match, f"no row {label!r} in:\n{output}"
    return match.group(1)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A SQLite store with the whole history loaded once through the CLI, and what it printed."""
    db = tmp_path_factory.mktemp("history") / "tcs.sqlite"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["--lang", "en", "--db", str(db), "areas", "load", "history"])
    assert code == 0, buffer.getvalue()
    return db, buffer.getvalue()


def show_json(capsys: pytest.CaptureFixture[str], db: Path, *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "--db", str(db), "areas", "show", *argv, "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


# -- version, help, catalogue --------------------------------------------------------------------


def test_version_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    """`tcs --version` prints the installed version and exits 0."""
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"tcs (tcs-core) {__version__}"


def test_version_as_subprocess() -> None:
    """`python -m tcs_core.cli --version` works as a real process."""
    proc = subprocess.run(
        [sys.executable, "-m", "tcs_core.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert __version__ in proc.stdout


def test_help_is_vietnamese_by_default_and_english_on_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Help texts come from the catalogue in the language chosen by --lang (default vi)."""
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert MESSAGES["cmd.demo"]["vi"] in out.replace("\n                  ", " ")
    code, out, _ = run(capsys, "--lang", "en", "areas", "show", "--help")
    assert code == 0
    assert MESSAGES["opt.children"]["en"] in out


def test_message_catalogue_is_complete() -> None:
    """Every message exists in both languages with the same placeholders."""
    for key, texts in MESSAGES.items():
        assert set(texts) == {"vi", "en"}, key
        fields = [
            {f for _, f, _, _ in string.Formatter().parse(texts[lang]) if f}
            for lang in ("vi", "en")
        ]
        assert all(texts.values()), key
        assert fields[0] == fields[1], key


# -- usage and validation errors -------------------------------------------------------------------


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """`tcs` alone exits 2 with one line that points at --help."""
    code, out, err = run(capsys)
    assert code == 2
    assert out == ""
    assert err.strip().count("\n") == 0
    assert "tcs --help" in err


def test_bad_date_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A malformed --at date exits 2 and says which format to use."""
    db = tmp_path / "t.sqlite"
    code, _, err = run(
        capsys, "--lang", "en", "--db", str(db), "areas", "show", "52", "--at", "2023-13-01"
    )
    assert code == 2
    assert "invalid date '2023-13-01'" in err
    assert "YYYY-MM-DD" in err
    assert "Traceback" not in err


def test_bad_count_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`events tail -n 0` is refused with exit code 2."""
    code, _, err = run(capsys, "--db", str(tmp_path / "t.sqlite"), "events", "tail", "-n", "0")
    assert code == 2
    assert "'0'" in err


def test_missing_config_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--config naming a missing file is a validation error (exit 2), not a crash."""
    code, _, err = run(capsys, "--config", str(tmp_path / "nope.toml"), "events", "tail")
    assert code == 2
    assert "no such file" in err


def test_unknown_code_as_subprocess_prints_no_traceback(tmp_path: Path) -> None:
    """An unknown area code exits 2 with a one-line red reason and no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TCS_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tcs_core.cli",
            "--lang",
            "en",
            "--db",
            str(tmp_path / "x.sqlite"),
            "areas",
            "show",
            "99999",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("Error: no area has code '99999' on ")
    assert proc.stderr.strip().count("\n") == 0
    assert "Traceback" not in proc.stderr


def test_unreadable_store_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A file that is not a SQLite database is a storage failure: exit 1, one line."""
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not a database\n" * 100)
    code, _, err = run(capsys, "--lang", "en", "--db", str(bad), "events", "tail")
    assert code == 1
    assert err.startswith("Error: cannot open or write the event store")
    assert "Traceback" not in err


def test_permission_denied_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TcsError that is not a validation error (here PermissionDenied) exits 1."""

    def refuse(app: SourceSystem, actor: str) -> Any:
        raise PermissionDenied("clerk needs the admin role over every area")

    monkeypatch.setitem(cli._LOADERS, "2025", refuse)
    code, _, err = run(
        capsys, "--lang", "en", "--db", str(tmp_path / "t.sqlite"), "areas", "load", "2025"
    )
    assert code == 1
    assert err.strip() == "Error: clerk needs the admin role over every area"


def test_config_file_names_the_store(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--config reads tcs.toml; a relative sqlite_path is relative to the file."""
    config = tmp_path / "tcs.toml"
    config.write_text('[persistence]\nkind = "sqlite"\nsqlite_path = "events.sqlite"\n')
    code, out, _ = run(capsys, "--lang", "en", "--config", str(config), "events", "tail")
    assert code == 0
    assert "No events yet." in out
    assert (tmp_path / "events.sqlite").exists()


# -- areas ---------------------------------------------------------------------------------------


def test_load_history_reports_counts(history: tuple[Path, str]) -> None:
    """`areas load history` creates the areas and reports 34 provinces and 3,321 communes now."""
    _, out = history
    assert int(row(out, "Created")) > 10_000
    assert int(row(out, "Changed (reform)")) > 10_000
    assert row(out, "Already there (skipped)") == "0"
    assert row(out, "Provinces now") == "34"
    assert row(out, "Communes now") == "3321"
    assert row(out, "Elapsed").endswith(" s")


def test_load_history_again_changes_nothing(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, str]
) -> None:
    """Loading the history a second time creates and changes nothing."""
    db, first = history
    code, out, _ = run(capsys, "--lang", "en", "--db", str(db), "areas", "load", "history")
    assert code == 0
    assert row(out, "Created") == "0"
    assert row(out, "Changed (reform)") == "0"
    assert row(out, "Already there (skipped)") == row(first, "Created")


def test_show_chu_prong_2023(capsys: pytest.CaptureFixture[str], history: tuple[Path, str]) -> None:
    """Code 632 on 2023-12-31 is Huyện Chư Prông: 20 communes, in Gia Lai, dissolved in 2025."""
    db, _ = history
    data = show_json(capsys, db, CHU_PRONG, "--at", "2023-12-31")
    assert data["name"] == "Huyện Chư Prông"
    assert data["kind"] == "district"
    assert data["children"] == 20
    assert data["communes"] == 20
    assert [a["name"] for a in data["ancestors"]] == ["Tỉnh Gia Lai"]
    assert data["valid_to"] == "2025-07-01"
    assert data["successors"] == []
    code, out, _ = run(capsys, "--db", str(db), "areas", "show", CHU_PRONG, "--at", "2023-12-31")
    assert code == 0
    assert row(out, "Tên") == "Huyện Chư Prông"
    assert row(out, "Số xã, phường trong địa bàn") == "20"
    assert row(out, "Kế thừa (hiện nay)") == "giải thể, không có đơn vị kế thừa"


def test_show_children_lists_the_communes(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, str]
) -> None:
    """--children lists the 20 communes of Chư Prông in 2023 in a table and in JSON."""
    db, _ = history
    argv = ("--lang", "en", "--db", str(db), "areas", "show", CHU_PRONG, "--at", "2023-12-31")
    code, out, _ = run(capsys, *argv, "--children")
    assert code == 0
    assert "Direct children on 2023-12-31" in out
    assert "│ 23926 │ Xã Ia Pia" in out
    data = show_json(capsys, db, CHU_PRONG, "--at", "2023-12-31", "--children")
    assert len(data["children_list"]) == 20
    assert {c["communes"] for c in data["children_list"]} == {1}


def test_show_52_then_and_now(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, str]
) -> None:
    """Code 52 is Bình Định on 2023-12-31 (succeeded by Gia Lai) and Gia Lai today."""
    db, _ = history
    then = show_json(capsys, db, BINH_DINH_THEN_GIA_LAI, "--at", "2023-12-31")
    assert then["name"] == "Tỉnh Bình Định"
    assert then["communes"] == 155
    assert then["children"] == 11
    assert [s["name"] for s in then["successors"]] == ["Tỉnh Gia Lai"]
    now = show_json(capsys, db, BINH_DINH_THEN_GIA_LAI)
    assert now["name"] == "Tỉnh Gia Lai"
    assert now["valid_from"] == "2025-07-01"
    assert now["valid_to"] is None
    assert now["successors"] is None
    assert now["communes"] == 135
    assert now["area_id"] != then["area_id"]
    code, out, _ = run(
        capsys, "--lang", "en", "--db", str(db), "areas", "show", "52", "--at", "2023-12-31"
    )
    assert code == 0
    assert row(out, "Successors (now)") == "Tỉnh Gia Lai (52)"


def test_show_continuing_commune(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, str]
) -> None:
    """A commune that kept its code and territory in 2025 is shown as continuing, renamed."""
    db, _ = history
    argv = ("--lang", "en", "--db", str(db), "areas", "show", "00922", "--at", "2023-12-31")
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert row(out, "Name") == "Xã Thuận Hòa"
    assert row(out, "Valid") == "from 2000-01-01 to 2025-07-01"
    assert row(out, "Successors (now)") == "continues as Xã Thuận Hoà (code 00922)"


def test_unknown_code_exits_2(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, str]
) -> None:
    """A code no area held on the date exits 2 and says when the code was valid."""
    db, _ = history
    code, out, err = run(capsys, "--lang", "en", "--db", str(db), "areas", "show", "632")
    assert code == 2
    assert out == ""
    assert err.startswith("Error: no area has code '632' on ")
    assert "Huyện Chư Prông 2000-01-01–2025-07-01" in err
    code, _, err = run(capsys, "--db", str(db), "areas", "show", "99999")
    assert code == 2
    assert err.startswith("Lỗi: no area has code '99999'")


def test_options_may_follow_the_command(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, str]
) -> None:
    """--db and --lang work after the command as well as before it."""
    db, _ = history
    code, out, _ = run(
        capsys, "areas", "show", "52", "--at", "2000-01-01", "--db", str(db), "--lang", "en"
    )
    assert code == 0
    assert row(out, "Name") == "Tỉnh Bình Định"


# -- events --------------------------------------------------------------------------------------


def test_events_tail(capsys: pytest.CaptureFixture[str], history: tuple[Path, str]) -> None:
    """`events tail -n 5` shows the last five notifications with topic, actor and a summary."""
    db, _ = history
    code, out, _ = run(capsys, "--lang", "en", "--db", str(db), "events", "tail", "-n", "5")
    assert code == 0
    assert "Latest 5 events" in out
    lines = [line for line in out.splitlines() if "tcs.area.created" in line]
    assert len(lines) == 5
    assert all("│ system " in line and "code=" in line for line in lines)


def test_events_tail_follow_prints_new_events(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--follow prints events recorded by another writer and stops cleanly on Ctrl-C."""
    db = tmp_path / "f.sqlite"
    polls: list[float] = []

    def fake_sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:
            with SourceSystem(Settings.sqlite(db)) as other:
                other.bootstrap_admin("admin")
            return
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_sleep", fake_sleep)
    code, out, _ = run(capsys, "--lang", "en", "--db", str(db), "events", "tail", "--follow")
    assert code == 0
    assert polls == [1.0, 1.0]
    assert "No events yet." in out
    (line,) = [x for x in out.splitlines() if "tcs.principal.created" in x]
    assert "system" in line
    assert "username=admin" in line
    assert "permissions=[emergency, sms_sender]" in line  # brackets are text, not rich markup


# -- demo ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_minimal_demo_runs_twice_when_the_province_demo_is_not_installed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the province demo (a wheel has no examples/), `tcs demo` says so in one line and
    runs the minimal demo: history into ./tcs-demo.sqlite, one bulletin dispatched, reusable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_demo_cache", [None, "not installed"])
    code, out, err = run(capsys, "--lang", "en", "demo")
    assert code == 0, err
    assert "province demo could not be loaded (not installed)" in out
    db = tmp_path / "tcs-demo.sqlite"
    assert db.exists()
    assert row(out, "Database") == str(db)
    assert row(out, "Communes of Gia Lai province now") == "135"
    assert row(out, "Communes of Chư Prông district on 2023-12-31") == "20"
    assert row(out, "Devices in Xã Ia Pia") == "4"
    assert row(out, "Broadcast status") == "expired (expired)"  # aired: no occurrence left
    assert row(out, "Dispatch") == "delivered 4/4, failed 0, pending 0"
    assert row(out, "Broadcasts drafted so far") == "1"
    areas = row(out, "Areas (all periods)")

    code, out, err = run(capsys, "--lang", "en", "demo")
    assert code == 0, err
    assert row(out, "Areas (all periods)") == areas
    assert row(out, "Devices in Xã Ia Pia") == "4"
    assert row(out, "Dispatch") == "delivered 4/4, failed 0, pending 0"
    assert row(out, "Broadcasts drafted so far") == "2"
    assert row(out, "Dispatches so far") == "2"

    with SourceSystem(Settings.sqlite(db)) as app:
        assert all(app.principals.get(u) for u in ("admin", "op.iapia", "duyet.iapia"))
        assert {d.transport for d in app.devices.all()} == {"simulated"}


def test_demo_options_come_from_the_province_demo(capsys: pytest.CaptureFixture[str]) -> None:
    """`tcs demo --help` lists the options the province demo's entry point adds."""
    code, out, _ = run(capsys, "--lang", "en", "demo", "--help")
    assert code == 0
    for option in ("--province", "--port", "--speed", "--exit", "--device-ports"):
        assert option in out


def test_demo_refuses_a_store_with_only_the_2025_structure(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`tcs demo` on a store loaded with `areas load 2025` exits 2 instead of mixing loads."""
    db = str(tmp_path / "2025.sqlite")
    code, out, _ = run(capsys, "--lang", "en", "--db", db, "areas", "load", "2025")
    assert code == 0
    assert row(out, "Provinces now") == "34"
    assert row(out, "Communes now") == "3321"
    code, out, err = run(capsys, "--lang", "en", "--db", db, "demo")
    assert code == 2
    assert "not the pre-2025 history" in err
    code, out, _ = run(capsys, "--lang", "en", "--db", db, "areas", "load", "2025")
    assert row(out, "Created") == "0"


@pytest.mark.slow
def test_simulate_national_day_prints_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """`tcs simulate national-day` seeds 3,321 communes, runs the virtual day and summarises."""
    code, out, err = run(
        capsys, "--lang", "en", "simulate", "national-day", "--memory", "--schedules", "300",
        "--hours", "12",
    )
    assert code == 0, err
    assert row(out, "Broadcasts / devices / communes") == "322 / 39,852 / 3,321"
    assert int(row(out, "Dispatches").replace(",", "")) > 0
    delivered, _failed = row(out, "Delivered / failed").replace(",", "").split(" / ")
    assert int(delivered) > 0
    assert int(row(out, "Preemptions").replace(",", "")) > 0  # the 10:00 emergency cut in


def test_simulate_refuses_a_used_store(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The simulation wants an empty store and says so, with exit code 2."""
    db = tmp_path / "used.sqlite"
    db.write_bytes(b"")
    code, _, err = run(capsys, "simulate", "national-day", "--db", str(db))
    assert code == 2
    assert "empty store" in err or "kho dữ liệu trống" in err


def test_checkpoint_writes_both_checkpoints_and_the_next_start_uses_them(
    capsys: pytest.CaptureFixture[str], history: tuple[Path, str], tmp_path: Path
) -> None:
    """`tcs checkpoint` writes the indexes' and the KPIs' checkpoints and says where; a store
    that keeps none (in memory here) is told how to turn them on, exit code 2."""
    db = tmp_path / "tcs.sqlite"
    shutil.copy(history[0], db)
    code, out, err = run(capsys, "--lang", "en", "--db", str(db), "checkpoint")
    assert code == 0, err
    assert "Wrote checkpoint source-system at event" in out
    assert "Wrote checkpoint kpi-60s at event" in out
    assert SourceSystem(Settings.sqlite(db)).loaded_checkpoint is not None
    config = tmp_path / "tcs.toml"
    config.write_text('[persistence]\nkind = "popo"\n')
    code, _, err = run(capsys, "--lang", "en", "--config", str(config), "checkpoint")
    assert code == 2 and "checkpoints are off" in err
