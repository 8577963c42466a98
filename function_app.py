"""The Functions app: create it and register the blueprints. Nothing else happens here."""

from __future__ import annotations

import azure.functions as func

from functions.backups import bp as backups
from functions.dashboard import bp as dashboard
from functions.health import bp as health
from functions.instances import bp as instances
from functions.jobs import bp as jobs
from functions.openapi import bp as openapi
from functions.policies import bp as policies
from functions.restore import bp as restore
from functions.retention import bp as retention
from functions.servers import bp as servers
from functions.workers import bp as workers
from shared.settings import load_settings

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(health)
app.register_functions(policies)
app.register_functions(instances)
app.register_functions(jobs)
app.register_functions(openapi)
app.register_functions(backups)
app.register_functions(workers)
app.register_functions(dashboard)
app.register_functions(retention)
app.register_functions(restore)
app.register_functions(servers)

# devhost calls this once before serving, so every missing or invalid setting is named at start.
startup_check = load_settings
