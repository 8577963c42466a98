"""ADO.NET connection strings, as Npgsql reads them."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared.errors import ErrorCode, UserError
from shared.pg.connstring import check_server, parse_connection_string, parse_pairs, system_root_certificates

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
        ("VerifyCA;Root Certificate=/etc/ca.pem", "verify-ca"),
        ("Verify Full", "verify-full"),
        (None, "prefer"),
    ],
)
def test_ssl_modes_map_to_libpq(ssl: str | None, expected: str) -> None:
    text = "User Id=u;Password=p" + (f";Ssl Mode={ssl}" if ssl else "")
    assert parse_connection_string(text).sslmode == expected


def test_libpq_parameters_take_the_database_from_the_instance_and_refuse_cleartext_passwords() -> None:
    p = parse_connection_string(AZURE + "Timeout=30;Application Name=nightly")
    kw = p.libpq_kwargs(host="DB1.Postgres.Database.Azure.com.", port=5432, dbname="billing")
    assert kw["host"] == "DB1.Postgres.Database.Azure.com." and kw["port"] == 5432 and kw["dbname"] == "billing"
    assert kw["connect_timeout"] == 30 and kw["application_name"] == "nightly" and kw["sslmode"] == "require"
    # Require encrypts but verifies nobody: the cleartext password method is refused (libpq 16+).
    assert kw["require_auth"] == "!password" and "sslrootcert" not in kw
    env = p.child_env(host="db1.postgres.database.azure.com", port=5432, dbname="d", refuses_cleartext=True)
    assert env["PGPASSWORD"] == "s3cr3t" and env["PGSSLMODE"] == "require" and env["PGCONNECT_TIMEOUT"] == "30"
    assert env["PGREQUIREAUTH"] == "!password"


def test_a_verified_server_may_ask_for_the_password_and_verify_full_uses_the_system_store() -> None:
    p = parse_connection_string(AZURE.replace("Ssl Mode=Require", "Ssl Mode=VerifyFull"))
    kw = p.libpq_kwargs(host="db1.postgres.database.azure.com", port=5432, dbname="d")
    assert "require_auth" not in kw and kw["sslmode"] == "verify-full"
    assert kw["sslrootcert"] == system_root_certificates()
    own = parse_connection_string(AZURE.replace("Ssl Mode=Require", "Ssl Mode=VerifyCA;Root Certificate=/ca/x.pem"))
    env = own.child_env(host="db1.postgres.database.azure.com", port=5432, dbname="d", refuses_cleartext=False)
    assert env["PGSSLROOTCERT"] == "/ca/x.pem" and env["PGSSLMODE"] == "verify-ca" and "PGREQUIREAUTH" not in env


def test_verify_ca_without_a_root_certificate_is_refused() -> None:
    with pytest.raises(UserError) as err:
        parse_connection_string("User Id=u;Password=p;Ssl Mode=VerifyCA")
    assert "Root Certificate" in err.value.message and "VerifyFull" in err.value.message


def test_tools_whose_libpq_cannot_refuse_cleartext_get_a_password_only_when_safe() -> None:
    remote = parse_connection_string("Server=db.example.com;User Id=u;Password=p;Ssl Mode=Require")
    with pytest.raises(UserError) as err:
        remote.child_env(host="db.example.com", port=5432, dbname="d", refuses_cleartext=False)
    assert err.value.code is ErrorCode.PG_DUMP_VERSION_TOO_OLD and "libpq" in err.value.message
    verified = parse_connection_string("Server=db.example.com;User Id=u;Password=p;Ssl Mode=VerifyFull")
    assert verified.child_env(host="db.example.com", port=5432, dbname="d", refuses_cleartext=False)["PGPASSWORD"]
    local = parse_connection_string("Server=127.0.0.1;User Id=u;Password=p;Ssl Mode=Disable")
    assert local.child_env(host="127.0.0.1", port=5432, dbname="d", refuses_cleartext=False)["PGPASSWORD"] == "p"


# --- a secret's password goes only to its own server (docs/rules.md C3) -------------------------


@pytest.mark.parametrize(
    ("secret", "host", "port"),
    [
        ("Server=db1.example.com;Port=5432", "db1.example.com", 5432),
        ("Server=DB1.Example.COM.", "db1.example.com", 5432),  # case, trailing dot, default port
        ("Server=db1.example.com", "db1.example.com.", None),
        ("Host=10.0.0.7;Port=6432", "10.0.0.7", 6432),
        ("Host=[::1];Port=6432", "0:0:0::1", 6432),
    ],
)
def test_a_secret_may_be_used_for_its_own_server(secret: str, host: str, port: int | None) -> None:
    check_server(parse_connection_string(f"{secret};User Id=u;Password=p"), host, port)


@pytest.mark.parametrize(
    ("secret", "host", "port"),
    [
        ("Server=db1.example.com;Port=5432", "evil.example.com", 5432),
        ("Server=db1.example.com;Port=5432", "db1.example.com", 5433),
        ("Server=db1.example.com", "db1.example.com", 6432),  # no Port in the secret: 5432
        ("Server=db1.example.com;Port=6432", "db1.example.com", None),
        ("Server=db1.example.com", "db1.example.com.evil.net", 5432),
    ],
)
def test_a_secret_naming_a_server_is_refused_for_any_other(secret: str, host: str, port: int | None) -> None:
    params = parse_connection_string(f"{secret};User Id=u;Password=hunter2")
    with pytest.raises(UserError) as err:
        check_server(params, host, port, allowed_servers=("*",), target="body.server")
    assert err.value.code is ErrorCode.INVALID_REQUEST and err.value.http_status == 400
    assert err.value.target == "body.server"
    message = err.value.message
    assert f"{host}:{port or 5432}" in message and f"db1.example.com:{params.port or 5432}" in message
    assert "hunter2" not in message and "User Id" not in message
    # libpq parameters are never handed out for the other server either.
    with pytest.raises(UserError):
        params.libpq_kwargs(host=host, port=port or 5432, dbname="d", allowed_servers=("*",))


def test_a_secret_without_a_server_is_usable_only_where_allowed() -> None:
    params = parse_connection_string("User Id=u;Password=p;Ssl Mode=Require")
    azure = ("*.postgres.database.azure.com",)
    check_server(params, "db1.postgres.database.azure.com", 5432, allowed_servers=azure)
    check_server(params, "DB1.Postgres.Database.Azure.Com.", 6432, allowed_servers=azure)
    for host, allowed in [
        ("db1.postgres.database.azure.com", ()),  # empty: nowhere
        ("127.0.0.1", azure),
        ("postgres.database.azure.com.evil.net", azure),
        ("evil.net,db1.postgres.database.azure.com", azure),  # a list of hosts is not one host
        ("/tmp", ("*",)),  # nor is a socket folder
    ]:
        with pytest.raises(UserError) as err:
            params.libpq_kwargs(host=host, port=5432, dbname="d", allowed_servers=allowed)
        assert err.value.code is ErrorCode.INVALID_REQUEST, host


def test_a_secret_whose_server_is_a_list_of_hosts_is_refused() -> None:
    params = parse_connection_string("Server=a.example.com,b.example.com;User Id=u;Password=p")
    with pytest.raises(UserError) as err:
        check_server(params, "a.example.com", 5432)
    assert "a.example.com,b" not in err.value.message


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("User Id=u;Password='unterminated", "closing"),
        ("User Id=u;Password", "no '='"),
        ("User Id=u;Password='x' trailing", "after the quoted value"),
        ("User Id=u;Password=p;Colour=blue", "character 22"),
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


# --- messages never hold a value, nor a fragment of one ------------------------------------------

# Values are written in Greek letters, which no message of the parser uses: a Greek letter in a
# message came from the input's values (or from a "key" that is really a piece of a value).
greek = st.text(alphabet=st.characters(min_codepoint=0x3B1, max_codepoint=0x3C9), min_size=1, max_size=8)
structure = st.sampled_from([";", "=", "'", '"', " ", "==", "''", ";;"])
known_keys = st.sampled_from(["Server", "Port", "User Id", "Password", "Ssl Mode", "Timeout", "Root Certificate"])


@settings(max_examples=600, deadline=None)
@given(pieces=st.lists(st.one_of(greek, structure, known_keys), min_size=1, max_size=14))
def test_no_error_message_holds_any_part_of_a_value(pieces: list[str]) -> None:
    text = "".join(pieces)
    try:
        parse_connection_string(text)
    except UserError as err:
        leaked = [c for c in err.message if 0x3B1 <= ord(c) <= 0x3C9]
        assert not leaked, (text, err.message)


@pytest.mark.parametrize(
    "text",
    [
        "User Id=u;Password=αβ;γδ=ε",  # an unquoted ';' in a password: the rest reads as a key
        "User Id=u;Password=αβ;γδ",  # ... without '='
        "User Id=u;Password='αβ",  # unterminated quote
        "User Id=u;Password='αβ' γδ",  # text after the closing quote
        "User Id=u;αβ γδ='x",  # unterminated quote after an unknown key
        "User Id=u;Password=p;Port=αβ",
        "User Id=u;Password=p;Ssl Mode=αβ",
        "User Id=u;Password=p;Timeout=αβ",
        "User Id=u;Password=p;Trust Server Certificate=αβ",
    ],
)
def test_malformed_strings_name_positions_and_known_keys_only(text: str) -> None:
    with pytest.raises(UserError) as err:
        parse_connection_string(text)
    assert not any(0x3B1 <= ord(c) <= 0x3C9 for c in err.value.message), err.value.message
