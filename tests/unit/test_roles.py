"""The roles a point stores: their script, their checksum, and what a restore may create of them."""

from __future__ import annotations

import hashlib
import json

import pytest

from shared.errors import ErrorCode, UserError
from shared.pg.privileges import quote_ident
from shared.pg.roles import Capabilities, Membership, Role, Roles, plan
from shared.restore.request import parse_options
from shared.wire import restore as wire

ROLES = Roles(
    (
        Role("app_owner", login=True, connection_limit=5),
        Role('odd "reader"', inherit=False),
        Role("ops", superuser=True, replication=True, bypass_rls=True, create_db=True,
             valid_until="2030-01-01 00:00:00+00"),
    ),
    (Membership('odd "reader"', "app_owner"), Membership("ops", "app_owner", admin_option=True)),
)


def test_the_script_creates_only_missing_roles_quotes_every_name_and_holds_no_password() -> None:
    text = ROLES.to_sql("point p1")
    assert (
        'DO $roles$BEGIN CREATE ROLE "app_owner" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION '
        "NOBYPASSRLS CONNECTION LIMIT 5; EXCEPTION WHEN duplicate_object THEN" in text
    )
    assert 'CREATE ROLE "odd ""reader""" WITH NOSUPERUSER NOINHERIT' in text
    # A name holding the dollar quote gets another one.
    assert "$roles1$" in Roles((Role("a$roles$b"),)).to_sql()
    assert "VALID UNTIL '2030-01-01 00:00:00+00'" in text
    assert 'GRANT "odd ""reader""" TO "app_owner";' in text
    assert 'GRANT "ops" TO "app_owner" WITH ADMIN OPTION;' in text
    assert "PASSWORD" not in text.upper().replace("NO PASSWORDS", "")
    # What the comment says stays a comment, whatever it holds.
    assert "\n-- of x; DROP ROLE y\n" in Roles().to_sql("of x;\nDROP ROLE y")


def test_the_stored_form_is_read_back_only_when_it_matches_its_checksum() -> None:
    body = ROLES.to_bytes()
    sha = hashlib.sha256(body).hexdigest()
    assert Roles.from_stored(json.loads(body), sha) == ROLES
    tampered = json.loads(body)
    tampered["roles"][0]["superuser"] = True
    with pytest.raises(ValueError, match="SHA-256"):
        Roles.from_stored(tampered, sha)


def test_a_superuser_creates_every_missing_role_with_all_its_attributes() -> None:
    made = plan(ROLES, ["app_owner"], Capabilities(superuser=True, create_role=True, create_db=True))
    assert made.create == ('odd "reader"', "ops") and made.existing == ("app_owner",)
    assert made.skipped_attributes == {} and made.granted_to_target_user == ()
    assert any(s.startswith('CREATE ROLE "ops" WITH SUPERUSER') and "REPLICATION" in s for s in made.statements)
    # Memberships touching a created role are granted; none between roles that both existed.
    assert 'GRANT "ops" TO "app_owner" WITH ADMIN OPTION' in made.statements


def test_a_createrole_user_leaves_out_what_it_may_not_give_and_says_so() -> None:
    made = plan(ROLES, [], Capabilities(superuser=False, create_role=True, create_db=False))
    assert made.create == ("app_owner", 'odd "reader"', "ops")
    assert made.skipped_attributes == {"ops": ["SUPERUSER", "CREATEDB", "REPLICATION", "BYPASSRLS"]}
    ops = next(s for s in made.statements if s.startswith('CREATE ROLE "ops"'))
    assert "NOSUPERUSER" in ops and "NOREPLICATION" in ops and "NOBYPASSRLS" in ops and "NOCREATEDB" in ops
    # It becomes a member of what it created, so that it may give those roles their objects and grants.
    assert made.granted_to_target_user == made.create
    assert made.statements[-3:] == tuple(f"GRANT {quote_ident(n)} TO CURRENT_USER" for n in made.create)


def test_a_user_without_createrole_creates_nothing_and_names_what_is_missing() -> None:
    made = plan(ROLES, ["ops"], Capabilities(superuser=False, create_role=False, create_db=True))
    assert made.statements == () and made.not_created == ("app_owner", 'odd "reader"')


def test_create_missing_keeps_owners_and_grants_and_refuses_no_owner_true() -> None:
    options, _ = parse_options(wire.RestoreOptions(roles="CreateMissing"))
    assert (options.no_owner, options.no_acl, options.roles) == (False, False, "CreateMissing")
    assert "--no-owner" not in options.args()
    options, _ = parse_options(wire.RestoreOptions(roles="CreateMissing", noAcl=True))
    assert options.no_acl is True
    with pytest.raises(UserError) as err:
        parse_options(wire.RestoreOptions(roles="CreateMissing", noOwner=True))
    assert err.value.code is ErrorCode.INVALID_REQUEST and err.value.target == "restoreOptions.noOwner"
    default, _ = parse_options(wire.RestoreOptions())
    assert (default.no_owner, default.roles) == (True, "MapToTargetUser")
