"""Grant scripts: quoting of hostile names in SQL, sh and PowerShell."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import UserError
from shared.pg.grants import ScriptFormat, grant_script, grant_sql
from shared.pg.privileges import quote_ident, quote_literal


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1))
def test_quoted_identifiers_and_literals_round_trip(name: str) -> None:
    quoted = quote_ident(name)
    assert quoted.startswith('"') and quoted.endswith('"')
    assert quoted[1:-1].replace('""', '"') == name
    literal = quote_literal(name)
    assert literal[1:-1].replace("''", "'") == name


def test_a_user_name_holding_the_dollar_tag_gets_another_tag() -> None:
    text = grant_sql("db", "x$pgvault$y")
    do_line = next(line for line in text.splitlines() if line.startswith("DO "))
    tag = do_line.split()[1]
    assert tag != "$pgvault$" and "x$pgvault$y".find(tag) == -1
    assert text.rstrip().splitlines()[-4] == f"{tag};"


def test_sh_wrapper_quotes_hostile_values_for_the_shell() -> None:
    script = grant_script("d'b; rm -rf /", "u", "h$(x)`y`", 5432, ScriptFormat.SH)
    export = next(line for line in script.splitlines() if line.startswith("export "))
    assert shlex.split(export)[1:] == ["PGHOST=h$(x)`y`", "PGPORT=5432", "PGDATABASE=d'b; rm -rf /"]


def test_ps1_wrapper_doubles_single_quotes() -> None:
    script = grant_script("o'db", "u", "h", 5432, ScriptFormat.PS1)
    assert "$env:PGDATABASE = 'o''db'" in script
    assert "$sql | psql -v ON_ERROR_STOP=1" in script
    assert script.count("@'\n") == 1 and "\n'@\n" in script


@pytest.mark.parametrize("bad", ["line\nbreak", "tab\there", "bell\x07"])
def test_names_with_control_characters_are_refused(bad: str) -> None:
    with pytest.raises(UserError) as err:
        grant_script(bad, "u", "h", 5432, ScriptFormat.SQL)
    assert err.value.target == "database"
