"""The wire models: requests refused naming the dotted path, answers in one time format, nothing undeclared."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from shared.errors import ErrorCode, UserError
from shared.jobs import Job, JobStatus, Operation, Step
from shared.wire import iso_z
from shared.wire.check import parse
from shared.wire.instances import ConfigureManyRequest, InstanceSpec
from shared.wire.jobs import JobStep
from shared.wire.restore import RestoreOptions, RestoreRequest

T0 = datetime(2026, 12, 1, 23, 59, tzinfo=UTC)


def _refused(model: type, doc: object, **kw: str) -> UserError:
    with pytest.raises(UserError) as refused:
        parse(model, doc, **kw)
    assert refused.value.code is ErrorCode.INVALID_REQUEST
    assert refused.value.message.startswith(str(refused.value.target))
    return refused.value


def test_one_time_format_utc_with_z_whatever_the_zone_given() -> None:
    assert iso_z(T0) == "2026-12-01T23:59:00Z"
    assert iso_z(T0.astimezone(timezone(timedelta(hours=-5)))) == "2026-12-01T23:59:00Z"
    assert iso_z(datetime(2026, 12, 1, 23, 59)) == "2026-12-01T23:59:00Z"  # naive: taken as UTC
    assert iso_z(T0.replace(microsecond=5)) == "2026-12-01T23:59:00.000005Z"


def test_a_jobs_steps_answer_their_times_in_the_one_format() -> None:
    # Steps as stored before the one format (isoformat with +00:00) answer with Z as well.
    stored = {"name": "Dump", "status": "Completed", "startTime": T0.isoformat(), "endTime": T0.isoformat()}
    step = Step.from_dict(stored)
    job = Job("0" * 12 + "-" + "0" * 20, Operation.BACKUP, "orders", JobStatus.COMPLETED, T0, steps=(step,))
    answered = job.to_dict()["steps"][0]
    assert (answered["startTime"], answered["endTime"]) == ("2026-12-01T23:59:00Z", "2026-12-01T23:59:00Z")
    assert job.to_dict()["createdTime"] == "2026-12-01T23:59:00Z"


def test_an_answer_cannot_carry_a_field_its_model_does_not_declare() -> None:
    with pytest.raises(ValidationError, match="extra"):
        JobStep.model_validate({"name": "Dump", "progress": 0.5})


def test_a_wrong_type_deep_in_a_list_is_named_by_its_dotted_path() -> None:
    entry = {"server": "db1", "database": "a", "secretUri": "env:PGVAULT_SECRET_A", "policyName": "p"}
    error = _refused(ConfigureManyRequest, {"instances": [entry, {**entry, "port": 10**30}]})
    assert error.target == "instances[1].port"
    assert "at most 65535" in error.message
    assert _refused(InstanceSpec, {**entry, "port": "x"}, root="instances[3]").target == "instances[3].port"


def test_a_missing_field_and_a_missing_discriminator_are_named() -> None:
    assert _refused(InstanceSpec, {"server": "db1"}).target == "database"
    body = {"recoveryPointId": "rp1", "restoreTargetInfo": {"datasourceInfo": {"resourceName": "x"}}}
    assert _refused(RestoreRequest, body).target == "restoreTargetInfo.objectType"
    body["restoreTargetInfo"]["objectType"] = "ItemLevelRestoreTargetInfo"
    error = _refused(RestoreRequest, body)
    assert error.target == "restoreTargetInfo.objectType" and "RestoreFilesTargetInfo" in error.message


def test_a_field_inside_the_chosen_target_is_named_without_the_union_tag() -> None:
    body = {
        "recoveryPointId": "rp1",
        "restoreTargetInfo": {"objectType": "RestoreFilesTargetInfo", "targetDetails": {"url": 5, "filePrefix": "p"}},
    }
    assert _refused(RestoreRequest, body).target == "restoreTargetInfo.targetDetails.url"


def test_booleans_are_json_booleans_not_strings() -> None:
    error = _refused(RestoreOptions, {"noOwner": "false"}, root="restoreOptions")
    assert (error.target, error.message) == ("restoreOptions.noOwner", "restoreOptions.noOwner: must be true or false")


def test_unknown_fields_come_first_and_all_of_them() -> None:
    error = _refused(InstanceSpec, {"server": 5, "polcyName": "p", "prot": 1})
    assert error.target == "polcyName" and "did you mean policyName?" in error.message
    assert "prot (did you mean port?)" in error.message


def test_a_bad_name_is_refused_with_the_rule_for_names() -> None:
    entry = {"server": "db1", "database": "a", "secretUri": "env:PGVAULT_SECRET_A", "policyName": "weekly policy"}
    error = _refused(InstanceSpec, entry, root="instances[0]")
    assert error.target == "instances[0].policyName"
    assert "use 1-150 letters, digits, '-', '_' or '.'" in error.message
