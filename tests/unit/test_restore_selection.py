"""A partial restore's names against a backup's table list: resolved, or refused naming the field."""

from __future__ import annotations

import pytest

from shared.errors import UserError
from shared.pg.restore import RestoreOptions
from shared.restore.selection import resolve_selection

TABLES = {"public.orders", "sales.orders", "sales.invoices", "audit.log", 'Odd "S".Ta ble', "a.b.c"}


def _refused(options: RestoreOptions) -> UserError:
    with pytest.raises(UserError) as refused:
        resolve_selection(options, TABLES, "rp1")
    assert refused.value.code.value == "InvalidRequest" and refused.value.http_status == 400
    return refused.value


def test_a_unique_bare_table_is_qualified_with_its_schema() -> None:
    assert resolve_selection(RestoreOptions(tables=("invoices",)), TABLES, "rp1").tables == ("sales.invoices",)
    assert resolve_selection(RestoreOptions(tables=("Ta ble",)), TABLES, "rp1").tables == ('Odd "S".Ta ble',)


def test_a_bare_table_in_several_schemas_is_refused_listing_them() -> None:
    error = _refused(RestoreOptions(tables=("orders",)))
    assert error.target == "restoreOptions.tables[0]"
    assert "several schemas" in error.message and "public.orders" in error.message and "sales.orders" in error.message


def test_the_selected_schemas_decide_between_same_named_tables() -> None:
    options = RestoreOptions(schemas=("sales",), tables=("orders",))
    assert resolve_selection(options, TABLES, "rp1").tables == ("sales.orders",)


def test_a_table_or_schema_not_in_the_backup_is_refused_with_a_hint() -> None:
    error = _refused(RestoreOptions(tables=("sales.invoice",)))
    assert error.target == "restoreOptions.tables[0]" and "did you mean sales.invoices?" in error.message
    error = _refused(RestoreOptions(schemas=("sales", "audti")))
    assert error.target == "restoreOptions.schemas[1]" and "did you mean audit?" in error.message


def test_bare_tables_resolving_to_several_schemas_are_refused_as_pg_restore_cannot_select_them() -> None:
    error = _refused(RestoreOptions(tables=("invoices", "log")))
    assert error.target == "restoreOptions.tables" and "one request per schema" in error.message


def test_qualified_names_in_the_backup_pass_unchanged() -> None:
    options = RestoreOptions(schemas=("sales",), tables=("sales.invoices",))
    assert resolve_selection(options, TABLES, "rp1") == options
    assert resolve_selection(RestoreOptions(tables=("a.b.c",)), TABLES, "rp1").tables == ("a.b.c",)
