"""Simulation: the contract's shape, a 3-year run checked independently, 10-year determinism, the CLI."""

from __future__ import annotations

import calendar
import copy
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pgvault.__main__ import main
from shared.policy import parse_policy, simulate
from tests.examples import EXAMPLES
from tests.moments import utc

ARCHIVE_FILE = EXAMPLES / "weekly-mon-wed-fri-with-archive.json"
UTC = dt.UTC
ISO_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# --- an independent model of weekly-mon-wed-fri-with-archive.json (no engine helpers) ------------


def add_months(instant: dt.datetime, months: int) -> dt.datetime:
    month0 = instant.month - 1 + months
    year, month = instant.year + month0 // 12, month0 % 12 + 1
    return instant.replace(year=year, month=month, day=min(instant.day, calendar.monthrange(year, month)[1]))


def expected_points(start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, str, dt.datetime, dt.datetime]]:
    """(time, tag, vault end, archive end or vault end) for Mon/Wed/Fri 22:00 UTC from 2025-01-06."""
    points: list[tuple[dt.datetime, str, dt.datetime, dt.datetime]] = []
    seen_years: set[int] = set()
    seen_months: set[tuple[int, int]] = set()
    seen_weeks: set[dt.date] = set()
    day = max(start.date(), dt.date(2025, 1, 6))
    while True:
        time = dt.datetime(day.year, day.month, day.day, 22, tzinfo=UTC)
        if time >= end:
            return points
        if day.weekday() in (0, 2, 4) and time >= start:
            sunday = day - dt.timedelta(days=(day.weekday() + 1) % 7)
            if day.year not in seen_years:
                tag, vault_end = "Yearly", add_months(time, 12)
                archive_end = add_months(vault_end, 120)
            elif (day.year, day.month) not in seen_months:
                tag, vault_end = "Monthly", add_months(time, 6)
                archive_end = add_months(vault_end, 24)
            elif sunday not in seen_weeks:
                tag, vault_end = "Weekly", time + dt.timedelta(weeks=12)
                archive_end = vault_end
            else:
                tag, vault_end = "Default", add_months(time, 3)
                archive_end = vault_end
            seen_years.add(day.year)
            seen_months.add((day.year, day.month))
            seen_weeks.add(sunday)
            points.append((time, tag, vault_end, archive_end))
        day += dt.timedelta(days=1)


def count_alive(points: list[tuple[dt.datetime, str, dt.datetime, dt.datetime]], at: dt.datetime) -> dict[str, int]:
    vault = sum(1 for t, _, v, _a in points if t <= at < v)
    archive = sum(1 for t, _, v, a in points if t <= at and v <= at < a)
    return {"VaultStore": vault, "ArchiveStore": archive}


def test_three_years_of_mon_wed_fri_with_archive_match_an_independent_count() -> None:
    start, end = utc(2025, 1, 1), utc(2028, 1, 1)
    result = simulate(parse_policy(load(ARCHIVE_FILE)), start, end)
    expected = expected_points(start, end)
    assert [(b.time, b.tag) for b in result.backups] == [(t, tag) for t, tag, _, _ in expected]
    assert [(b.lifecycle.vault_expiry, b.lifecycle.deletion) for b in result.backups] == [
        (v, a) for _, _, v, a in expected
    ]
    summary = result.summary()
    assert summary["livePoints"] == count_alive(expected, end)
    assert summary["backupsPerTag"] == {
        tag: sum(1 for _, t, _, _ in expected if t == tag) for tag in ("Default", "Weekly", "Monthly", "Yearly")
    }
    assert summary["backupsPerTag"]["Yearly"] == 3
    assert summary["backupsPerTag"]["Monthly"] == 33
    # At the end of every month, the points per datastore agree too.
    months = result.monthly_counts()
    assert len(months) == 36
    for month in months:
        assert {"VaultStore": month.vault_store, "ArchiveStore": month.archive_store} == count_alive(
            expected, month.at
        ), month.month
    assert summary["livePoints"]["ArchiveStore"] == count_alive(expected, end)["ArchiveStore"] > 0


def test_ten_year_simulation_is_deterministic() -> None:
    start, end = utc(2025, 1, 1), utc(2035, 1, 1)
    first = simulate(parse_policy(load(ARCHIVE_FILE)), start, end).to_dict()
    second = simulate(parse_policy(load(ARCHIVE_FILE)), start, end).to_dict()
    assert first == second
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert first["summary"]["backups"] == len(first["backups"]) > 1500
    assert first["summary"]["backupsPerTag"]["Yearly"] == 10


def test_to_dict_has_exactly_the_contract_shape() -> None:
    result = simulate(parse_policy(load(ARCHIVE_FILE)), utc(2025, 1, 1), utc(2026, 1, 1)).to_dict()
    assert set(result) == {"backups", "summary"}
    first, second = result["backups"][0], result["backups"][1]
    assert first["time"] == "2025-01-06T22:00:00Z" and first["tag"] == "Yearly"
    assert first["archiveMove"] == first["vaultExpiry"] == "2026-01-06T22:00:00Z"
    assert first["deletion"] == "2036-01-06T22:00:00Z"
    assert set(second) == {"time", "tag", "vaultExpiry", "deletion"}  # archiveMove only when archived
    for backup in result["backups"]:
        assert {"time", "tag", "vaultExpiry", "deletion"} <= set(backup)
        for key in ("time", "vaultExpiry", "deletion", "archiveMove"):
            assert key not in backup or ISO_Z.fullmatch(backup[key])
    summary = result["summary"]
    assert set(summary["livePoints"]) == {"VaultStore", "ArchiveStore"}
    assert sum(summary["backupsPerTag"].values()) == summary["backups"] == len(result["backups"])


def test_simulation_starting_mid_year_treats_its_first_backup_as_first_of_year() -> None:
    result = simulate(parse_policy(load(ARCHIVE_FILE)), utc(2025, 6, 1), utc(2025, 6, 10))
    assert [b.tag for b in result.backups] == ["Yearly", "Default", "Default", "Weekly"]


def test_empty_range_gives_no_backups() -> None:
    result = simulate(parse_policy(load(ARCHIVE_FILE)), utc(2025, 1, 1), utc(2025, 1, 1))
    assert result.to_dict()["backups"] == []
    assert result.summary()["livePoints"] == {"VaultStore": 0, "ArchiveStore": 0}


def test_immediate_copy_counts_in_both_stores() -> None:
    doc = copy.deepcopy(load(ARCHIVE_FILE))
    doc["properties"]["policyRules"][3]["lifecycles"][0]["targetDataStoreCopySettings"][0]["copyAfter"] = {
        "objectType": "ImmediateCopyOption"
    }
    result = simulate(parse_policy(doc), utc(2025, 1, 1), utc(2025, 3, 1))
    assert result.summary()["livePoints"]["ArchiveStore"] == 1  # the February monthly point
    feb = next(b for b in result.to_dict()["backups"] if b["tag"] == "Monthly")
    assert feb["archiveMove"] == feb["time"] and feb["copyOption"] == "ImmediateCopyOption"


# --- the command line ----------------------------------------------------------------------------


def test_cli_table_lists_backups_and_live_points(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["policy", "simulate", "--file", str(ARCHIVE_FILE), "--from", "2025-01-01", "--to", "2025-02-01"])
    out = capsys.readouterr().out
    assert code == 0
    assert "2025-01-06 22:00Z" in out and "Yearly" in out
    assert "Points alive at 2025-02-01T00:00:00Z: VaultStore 12, ArchiveStore 0" in out
    assert "end of each month" not in out  # a short range has no monthly table


def test_cli_long_range_adds_monthly_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["policy", "simulate", "-f", str(ARCHIVE_FILE), "--from", "2025-01-01", "--to", "2026-01-01"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Points alive at the end of each month (UTC):" in out
    assert re.search(r"^2025-12\s+14\s+43\s+5$", out, re.MULTILINE)


def test_cli_json_is_the_simulation_dict(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["policy", "simulate", "--file", str(ARCHIVE_FILE), "--from", "2025-01-01", "--to", "2025-03-01"]
    assert main([*argv, "--output", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    expected = simulate(parse_policy(load(ARCHIVE_FILE)), utc(2025, 1, 1), utc(2025, 3, 1)).to_dict()
    assert body == expected
    assert main([*argv, "--output", "json", "--monthly"]) == 0
    monthly = json.loads(capsys.readouterr().out)["monthly"]
    assert [m["month"] for m in monthly] == ["2025-01", "2025-02"]


def test_cli_invalid_policy_exits_2_with_the_field_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    bad = EXAMPLES / "invalid" / "vault-retention-below-7-days.json"
    code = main(["policy", "simulate", "--file", str(bad), "--from", "2025-01-01", "--to", "2025-02-01"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert "InvalidPolicy" in captured.err
    assert "policyRules[1].lifecycles[0].deleteAfter.duration" in captured.err and "P7D" in captured.err


def test_cli_unreadable_or_non_json_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.json"
    assert main(["policy", "simulate", "--file", str(missing), "--from", "2025-01-01", "--to", "2025-02-01"]) == 2
    assert "cannot read policy file" in capsys.readouterr().err
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json", encoding="utf-8")
    assert main(["policy", "simulate", "--file", str(garbage), "--from", "2025-01-01", "--to", "2025-02-01"]) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_cli_range_must_go_forward_and_dates_must_parse(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "simulate", "--file", str(ARCHIVE_FILE), "--from", "2025-02-01", "--to", "2025-01-01"]) == 2
    assert "must be after --from" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["policy", "simulate", "--file", str(ARCHIVE_FILE), "--from", "soon", "--to", "2025-01-01"])
    assert exit_info.value.code == 2
    assert "'soon' is not a date" in capsys.readouterr().err


def test_cli_help_says_simulate_is_offline(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["policy", "--help"])
    assert "offline" in capsys.readouterr().out
