"""ADO.NET connection strings, as Npgsql reads them."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared.errors import UserError
from shared.pg.connstring import parse_connection_string, parse_pairs

AZURE = (
    "Server=db1.postgres.database.azure.com;Port=5432;Database=orders;User Id=backup;Password=s3cr3t;Ssl Mode=Require;"
)


def test_the_azure_backup_form() -> None:
    p = parse_connection_string(AZURE)
    assert (p.host, p.port, p.database, p.user, p.password, p.sslmode) == (
        "db1.postgres.database.azure.com",
        5432,
        "orders",
        "backup",
        "s3cr3t",
        "require",
    )


@pytest.mark.parametrize("host_key", ["Host", "Server", "Data Source", "address", "ADDR", "Network Address"])
@pytest.mark.parametrize("user_key", ["User Id", "USER ID", "UserId", "Username", "User Name", "UID", "user"])
@pytest.mark.parametrize("password_key", ["Password", "PWD", "psw"])
def test_key_synonyms_and_case(host_key: str, user_key: str, password_key: str) -> None:
    p = parse_connection_string(f"{host_key}=h;{user_key}=u;{password_key}=p")
    assert (p.host, p.user, p.password) == ("h", "u", "p")


@pytest.mark.parametrize(
    ("text", "password"),
    [
        ("User Id=u;Password='a;b=c'", "a;b=c"),
        ('User Id=u;Password="it\'s"', "it's"),
        ("User Id=u;Password='it''s'", "it's"),
        ('User Id=u;Password="say ""hi"""', 'say "hi"'),
        ("User Id=u;  Password  =  spaced out  ;", "spaced out"),
        ("User Id=u;Password=first;Password=second", "second"),
        ("User Id=u;;;Password=p;;", "p"),
        ("User Id=u;Password=a'b\"c", "a'b\"c"),
        ("User Id=u;Password='  keep  '", "  keep  "),
        ("User Id=u;Password=pässwörd✓", "pässwörd✓"),
    ],
)
def test_quoting_rules(text: str, password: str) -> None:
    assert parse_connection_string(text).password == password


def test_doubled_equals_in_a_key_is_a_literal_equals() -> None:
    assert parse_pairs("a==b=1") == {"a=b": "1"}


@pytest.mark.parametrize(
    ("ssl", "expected"),
    [
        ("Disable", "disable"),
        ("allow", "allow"),
        ("Prefer", "prefer"),
        ("Require", "require"),
        ("VerifyCA", "verify-ca"),
        ("Verify Full", "verify-full"),
        (None, "prefer"),
    ],
)
def test_ssl_modes_map_to_libpq(ssl: str | None, expected: str) -> None:
    text = "User Id=u;Password=p" + (f";Ssl Mode={ssl}" if ssl else "")
    assert parse_connection_string(text).sslmode == expected


def test_libpq_parameters_take_server_and_database_from_the_instance() -> None:
    p = parse_connection_string(AZURE + "Timeout=30;Application Name=nightly")
    kw = p.libpq_kwargs(host="other.example.com", port=6432, dbname="billing")
    assert kw["host"] == "other.example.com" and kw["port"] == 6432 and kw["dbname"] == "billing"
    assert kw["connect_timeout"] == 30 and kw["application_name"] == "nightly" and kw["sslmode"] == "require"
    env = p.child_env(host="h", port=1, dbname="d")
    assert env["PGPASSWORD"] == "s3cr3t" and env["PGSSLMODE"] == "require" and env["PGCONNECT_TIMEOUT"] == "30"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("User Id=u;Password='unterminated", "closing"),
        ("User Id=u;Password", "no '='"),
        ("User Id=u;Password='x' trailing", "after the quoted value"),
        ("User Id=u;Password=p;Colour=blue", "'colour'"),
        ("Password=p", "User Id"),
        ("User Id=u", "Password"),
        ("User Id=u;Password=p;Port=99999", "Port"),
        ("User Id=u;Password=p;Ssl Mode=Sometimes", "Ssl Mode"),
        ("User Id=u;Password=p;Ssl Mode=VerifyFull;Trust Server Certificate=true", "Trust Server Certificate"),
        ("=x;User Id=u;Password=p", "empty key"),
        ("", "empty"),
    ],
)
def test_malformed_strings_are_refused_naming_the_problem_not_the_password(text: str, names: str) -> None:
    with pytest.raises(UserError) as err:
        parse_connection_string(text)
    assert err.value.code.value == "UserErrorSecretValueInUnsupportedFormat"
    assert names in err.value.message
    assert "'x'" not in err.value.message and "unterminated" not in err.value.message


def test_repr_never_shows_the_password() -> None:
    p = parse_connection_string(AZURE)
    assert "s3cr3t" not in repr(p) and "s3cr3t" not in str(p)


def _quote(value: str) -> str:
    """Serialise a value as ADO.NET's DbConnectionStringBuilder does.

    It leaves a value bare only when it matches ``^[^"'=;\\s\\p{Cc}]*$`` (its
    ConnectionStringQuoteValueRegex); otherwise it quotes with " unless the value holds one.
    """
    import unicodedata

    if not any(c in "\"'=;" or c.isspace() or unicodedata.category(c) == "Cc" for c in value):
        return value
    if '"' not in value:
        return f'"{value}"'
    return "'" + value.replace("'", "''") + "'"


values = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)


@settings(max_examples=300, deadline=None)
@given(user=values.filter(lambda v: v.strip() != ""), password=values.filter(lambda v: v != ""), app=values)
def test_any_values_round_trip_through_adonet_quoting(user: str, password: str, app: str) -> None:
    text = f"User Id={_quote(user)};Password={_quote(password)};Application Name={_quote(app)}"
    p = parse_connection_string(text)
    # Unquoted values lose surrounding whitespace, as in ADO.NET; quoted ones keep it.
    assert p.user == user or p.user == user.strip()
    assert p.password == password
    assert (p.application_name or "") in (app, app.strip())


@settings(max_examples=400, deadline=None)
@given(
    text=st.text(max_size=80),
    # "§" starts no word of our messages: a password found in one came from the password, not from
    # the message's own words ("connec" is in "connection string") nor from the text around it.
    password=st.text(min_size=5, max_size=11).map(lambda s: "§" + s).filter(lambda s: s.strip() == s),
)
def test_any_input_is_parsed_or_refused_cleanly_without_leaking_the_password(text: str, password: str) -> None:
    assume(password not in text)
    candidate = f"{text};Password='{password.replace(chr(39), chr(39) * 2)}';{text}"
    try:
        parse_connection_string(candidate)
    except UserError as err:
        assert password not in err.message
