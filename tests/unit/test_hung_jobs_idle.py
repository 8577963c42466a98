"""The hung-jobs sweep on an idle vault: it reads, and writes nothing once its marker is in place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.hung_jobs import HungJobs
from shared.storage.memory import MemoryTables

NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)


def test_sweeps_of_an_idle_vault_write_nothing_after_the_first() -> None:
    state = MemoryTables().table("state")
    HungJobs(state).sweep(NOW)
    before = sorted((e.partition_key, e.row_key, e.etag) for e in state.query("PartitionKey ne ''"))
    assert before, "the first sweep records where the next one starts"
    for minutes in (5, 10, 15):
        report = HungJobs(state).sweep(NOW + timedelta(minutes=minutes))
        assert not (report.requeued or report.failed)
    assert sorted((e.partition_key, e.row_key, e.etag) for e in state.query("PartitionKey ne ''")) == before
