"""pgvault's command-line client. ``python -m pgvault --help`` lists the commands.

Most commands talk to the HTTP API (``PGVAULT_URL``, ``PGVAULT_KEY``); ``policy simulate`` runs
offline on a policy file.
"""

from __future__ import annotations
