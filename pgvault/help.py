"""Examples and exit codes under every command's ``--help`` (argparse epilogs).

The examples live here, one place, and :func:`add_examples` puts them on the parsers once the
command tree is built; a unit test checks that every command has some.
"""

from __future__ import annotations

import argparse

EXIT_CODES = """exit codes:
  0  done (with --wait: the job Completed or CompletedWithWarnings)
  1  the job Failed or was Cancelled: error code and recommended action on stderr
  2  bad usage or input (flags, unreadable or invalid files), or the API answered 400: code, Target and fix on stderr
  3  the API refused otherwise (401, 404, 409, 5xx after retries) or could not be reached: code on stderr
  4  --wait timed out; the job is still running"""

EXAMPLES: dict[tuple[str, str], str] = {
    ("policy", "simulate"): """
  pgvault policy simulate -f policy.json --from 2025-01-01 --to 2028-01-01 --monthly
  pgvault policy simulate --name weekly --from 2026-01-01 --to 2026-04-01 -o json""",
    ("policy", "create"): """
  pgvault policy create --name weekly --file tests/policy-examples/weekly-mon-wed-fri-with-archive.json
  cat policy.json | pgvault policy create --name weekly --file -""",
    ("policy", "show"): """
  pgvault policy show --name weekly                      # schedule, next backups, every retention rule
  pgvault policy show --name weekly --time-zone "Pacific Standard Time"
  pgvault policy show --name weekly -o json              # the API's policy""",
    ("policy", "list"): """
  pgvault policy list -o table
  pgvault policy list -o json | jq -r '.value[].name'""",
    ("policy", "delete"): """
  pgvault policy delete --name weekly                    # exit 3 (Conflict) while an instance uses it""",
    ("instance", "configure"): """
  pgvault instance configure --name orders --server db1.postgres.database.azure.com --database orders \\
      --secret-uri https://kv1.vault.azure.net/secrets/orders-backup --policy weekly --wait
  pgvault instance configure --file instances.json       # {"instances": [...]}; safe to send again:
                                                         # entries configured alike are Skipped""",
    ("instance", "list"): """
  pgvault instance list -o table
  pgvault instance list -o json | jq -r '.value[] | select(.backupReadiness.status == "Failed") | .name'""",
    ("instance", "show"): """
  pgvault instance show --name orders -o table""",
    ("instance", "validate"): """
  pgvault instance validate --name orders --wait""",
    ("instance", "validate-for-backup"): """
  pgvault instance validate-for-backup --server db1.postgres.database.azure.com --database orders \\
      --secret-uri https://kv1.vault.azure.net/secrets/orders-backup --policy weekly --wait
  # Failed with UserErrorMissingDBPermissions? The job's grant script, then validate again:
  pgvault job grant-script <jobId> --format sh > grant.sh && PGUSER=admin sh grant.sh""",
    ("job", "grant-script"): """
  pgvault job grant-script <jobId> --format sql > grant.sql   # the job of an instance validate-for-backup""",
    ("instance", "grant-script"): """
  pgvault instance grant-script --name orders --format sh > grant.sh && PGUSER=admin sh grant.sh""",
    ("instance", "stop-protection"): """
  pgvault instance stop-protection --name orders --retain-data forever
  pgvault instance stop-protection --name orders --retain-data asPerPolicy""",
    ("instance", "resume-protection"): """
  pgvault instance resume-protection --name orders""",
    ("instance", "delete"): """
  pgvault instance delete --name orders                  # asks first on a terminal
  pgvault instance delete --name orders --yes            # in a script: SoftDeleted, purged later""",
    ("instance", "undelete"): """
  pgvault instance undelete --name orders                # back as ProtectionStopped with every point
  pgvault instance resume-protection --name orders       # then backups again""",
    ("instance", "role-assignment-template"): """
  pgvault instance role-assignment-template --name orders > roles.json
  az deployment group create -g my-rg --template-file roles.json""",
    ("server", "list-databases"): """
  pgvault server list-databases --secret-uri https://kv1.vault.azure.net/secrets/db1-backup
  pgvault server list-databases --secret-uri env:PGVAULT_SECRET_DB1 --server 127.0.0.1 --port 5432 -o json""",
    ("server", "protect"): """
  pgvault server protect --name db1 --server db1.postgres.database.azure.com \
      --secret-uri https://kv1.vault.azure.net/secrets/db1-backup --policy weekly --exclude 'scratch_*'
  pgvault server protect --name db1 ... --include 'shop_*' --include orders   # only these names (fnmatch globs)""",
    ("server", "list"): """
  pgvault server list -o table""",
    ("server", "show"): """
  pgvault server show --name db1 -o table                # each database: Protected, Dropped, Skipped, Failed""",
    ("server", "discover"): """
  pgvault server discover --name db1                     # what the discovery timer does, now""",
    ("server", "unprotect"): """
  pgvault server unprotect --name db1                    # instances stop (asPerPolicy) and keep their data
  pgvault server unprotect --name db1 --retain-data forever""",
    ("backup", "now"): """
  pgvault backup now --instance orders --wait
  pgvault backup now --instance orders --rule BackupWeekly --tag Monthly --wait -o json | jq -r .recoveryPointId""",
    ("job", "list"): """
  pgvault job list --status Failed --days 30 -o table
  pgvault job list --instance orders --operation Backup --max 20""",
    ("alert", "list"): """
  pgvault alert list -o table                            # kind, instance, job, code, delivery state
  pgvault alert list --days 30 -o json""",
    ("job", "show"): """
  pgvault job show 20261201T101500-1a2b3c -o table       # steps, bytes, rate, duration, error and what to do""",
    ("job", "watch"): """
  pgvault job watch 20261201T101500-1a2b3c --timeout 600""",
    ("job", "cancel"): """
  pgvault job cancel 20261201T101500-1a2b3c --wait       # exit 0 once it ended Cancelled""",
    ("recovery-point", "list"): """
  pgvault recovery-point list --instance orders -o table""",
    ("recovery-point", "show"): """
  pgvault recovery-point show --instance orders --id <recoveryPointId> -o json""",
    ("restore", "database"): """
  pgvault restore database --instance orders --recovery-point <id> --target-database orders_restored \\
      --target-secret-uri https://kv1.vault.azure.net/secrets/restore-target --wait
  pgvault restore database ... --schema sales --table sales.orders     # a partial restore
  pgvault restore database ... --rehydration-priority High             # an ArchiveStore point""",
    ("restore", "files"): """
  pgvault restore files --instance orders --recovery-point <id> \\
      --container-url https://acct1.blob.core.windows.net/restores --file-prefix orders/2026-12-01 --wait""",
    ("restore", "verify"): """
  pgvault restore verify --instance orders --recovery-point <id> \\
      --target-secret-uri https://kv1.vault.azure.net/secrets/restore-target --wait""",
}


class ExamplesFormatter(argparse.HelpFormatter):
    """Wraps descriptions as argparse does, but prints the examples epilog as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return text
        return super()._fill_text(text, width, indent)


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def add_examples(parser: argparse.ArgumentParser) -> None:
    """Give every ``<group> <command>`` parser its examples and the exit codes as epilog."""
    for group, group_parser in _commands(parser).items():
        for command, command_parser in _commands(group_parser).items():
            examples = EXAMPLES.get((group, command))
            if examples is None:
                continue
            command_parser.epilog = f"examples:{examples}\n\n{EXIT_CODES}"
            command_parser.formatter_class = ExamplesFormatter
