"""Multi-part points on paper: how tables are split into parts, how parts' blobs are named."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.pg.parts import (
    TableSize,
    data_part_args,
    quote_pattern,
    restore_command_lines,
    schema_part_args,
    split_by_size,
)
from shared.pg.restore import RestoreOptions
from shared.restore.rehydration import copy_name_for
from shared.retention import archive_copy_name
from shared.storage.layout import DUMP_SUFFIX, dump_of, part_blob_name, part_digests_name

sizes = st.lists(st.integers(min_value=0, max_value=10**12), max_size=60)


@given(sizes, st.integers(min_value=1, max_value=16))
def test_every_table_lands_in_exactly_one_part_and_the_parts_finish_together(weights: list[int], bins: int) -> None:
    tables = [TableSize("s", f"t{i}", w) for i, w in enumerate(weights)]
    groups = split_by_size(tables, bins)
    assert len(groups) <= bins and all(groups)
    placed = [t for g in groups for t in g]
    assert sorted(placed, key=lambda t: t.name) == sorted(tables, key=lambda t: t.name)
    if tables:
        # Largest first into the lightest part: no part exceeds the average by more than one table.
        heaviest = max(sum(t.bytes for t in g) for g in groups)
        assert heaviest <= sum(weights) / bins + max(weights)
        assert len(groups) == min(bins, len(tables))


def test_two_big_tables_and_many_small_ones_split_into_equal_parts() -> None:
    tables = [TableSize("public", "big1", 100), TableSize("public", "big2", 100)]
    tables += [TableSize("public", f"small{i}", 10) for i in range(10)]
    groups = split_by_size(tables, 3)
    assert sorted(sum(t.bytes for t in g) for g in groups) == [100, 100, 100]


@settings(max_examples=40)
@given(st.text(st.characters(codec="ascii"), min_size=1, max_size=20), st.integers(min_value=1, max_value=999))
def test_a_parts_blob_follows_the_points_blob_through_archive_and_rehydrated_copies(rp: str, index: int) -> None:
    blob = f"orders/{rp}.token{DUMP_SUFFIX}"
    part = part_blob_name(blob, index)
    assert part != blob and part.endswith(DUMP_SUFFIX) and part.startswith(f"orders/{rp}.token")
    assert part_blob_name(archive_copy_name(blob), index) == archive_copy_name(part)
    assert part_blob_name(copy_name_for(blob), index) == copy_name_for(part)
    assert part_blob_name(copy_name_for(archive_copy_name(blob)), index) == copy_name_for(archive_copy_name(part))
    assert len({part_blob_name(blob, i) for i in range(1, 6)}) == 5


@given(st.text(st.characters(codec="ascii"), min_size=1, max_size=20), st.integers(min_value=1, max_value=999))
def test_a_parts_digests_sidecar_belongs_to_its_parts_blob_for_the_orphan_sweep(rp: str, index: int) -> None:
    part = part_blob_name(f"orders/{rp}.token{DUMP_SUFFIX}", index)
    assert dump_of(part_digests_name(part)) == part and part_digests_name(part) != part


def test_table_patterns_are_quoted_so_pg_dump_matches_the_name_literally() -> None:
    assert quote_pattern('Odd "Schema"', "Ta*ble?") == '"Odd ""Schema"""."Ta*ble?"'
    tables = [TableSize("public", "a.b", 1), TableSize("x", 'q"', 2)]
    assert data_part_args(tables) == ["--data-only", '--table="public"."a.b"', '--table="x"."q"""']
    assert schema_part_args(tables) == ['--exclude-table-data="public"."a.b"', '--exclude-table-data="x"."q"""']


def test_the_commands_of_a_multi_part_point_as_files_restore_pre_data_then_data_then_post_data() -> None:
    lines = restore_command_lines("s.dump", ["s.part001.dump"], RestoreOptions(), 4)
    base = 'pg_restore --no-owner --no-acl --dbname "$PGDATABASE"'
    assert lines == [
        f"{base} --section=pre-data s.dump",
        f"{base} --section=data s.dump",
        f"{base} s.part001.dump",
        f"{base} --section=post-data --jobs=4 s.dump",
    ]
    piped = restore_command_lines("s.dump.zst", ["s.part001.dump.zst"], RestoreOptions(), 4, zstd=True)
    assert piped[0] == f"zstd -dc s.dump.zst | {base} --section=pre-data"
    assert piped[-1] == f"zstd -dc s.dump.zst | {base} --section=post-data"  # --jobs needs a seekable file
