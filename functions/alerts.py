"""Alerts: the list (``GET /api/alerts``), the delivery timer and the check timer."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import CONTINUATION_PARAM, CONTINUATION_PARAMS, api, json_response, next_link
from shared.alerts.store import DEFAULT_PAGE_SIZE, MAX_LIST_DAYS, MAX_PAGE_SIZE
from shared.request_body import whole_number
from shared.vault import current_vault
from shared.wire.alerts import AlertList

log = logging.getLogger(__name__)
bp = func.Blueprint()

DELIVERY_SCHEDULE = "5,20,35,50 * * * * *"
"""Every 15 s: a raised alert reaches the webhook well within a minute (one table query per run)."""
CHECK_SCHEDULE = "20 */5 * * * *"
"""Every 5 minutes: missed backups (O(instances) per run) and the net under the jobs' alert hook."""


@bp.route(route="alerts", methods=["GET"])
@api
def list_alerts(req: func.HttpRequest) -> func.HttpResponse:
    """Alerts of the last ``days`` days (default 7), newest first, with their delivery state; ``top`` per page
    (default 100) and a ``nextLink`` while more remain."""
    days = whole_number(req.params.get("days", "7"), "days", 1, MAX_LIST_DAYS)
    top = whole_number(req.params.get("top", str(DEFAULT_PAGE_SIZE)), "top", 1, MAX_PAGE_SIZE)
    token, target = None, CONTINUATION_PARAM
    for name in CONTINUATION_PARAMS:
        if req.params.get(name):
            token, target = req.params[name], name
    vault = current_vault()
    alerts, nxt = vault.alerts().page(vault.clock(), days, top=top, token=token, target=target)
    more = {} if nxt is None else {"nextLink": next_link(req, nxt)}
    return json_response(AlertList(value=[a.to_wire() for a in alerts], **more))


@bp.timer_trigger(arg_name="timer", schedule=DELIVERY_SCHEDULE, run_on_startup=False)
def alert_delivery(timer: func.TimerRequest) -> None:
    """Post the alerts due for delivery to the webhook (first tries and retries with backoff)."""
    vault = current_vault()
    report = vault.alerts().deliver(vault.clock())
    if any(report.to_dict().values()):
        log.info("alert delivery: %s", report.to_dict())


@bp.timer_trigger(arg_name="timer", schedule=CHECK_SCHEDULE, run_on_startup=False)
def alert_checks(timer: func.TimerRequest) -> None:
    """Raise the alerts of missed scheduled backups, and of ended jobs whose alert was not recorded."""
    vault = current_vault()
    counts = vault.alerts().check(vault.clock())
    if any(counts.values()):
        log.info("alert checks raised: %s", counts)
