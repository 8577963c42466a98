"""Alerts: a failed backup nobody noticed is the disaster a vault exists to prevent.

- ``model``: the frozen ``Alert`` record, its ``AlertKind`` and ``DeliveryState``, its event-derived id.
- ``store``: ``AlertStore``, the outbox in the state table (one row per alert, ETag-guarded writes).
- ``events``: the events that raise alerts (a job ends Failed or CompletedWithWarnings, a point is
  marked Corrupted, a validation drifts from Success to Failed) and ``raise_alert`` (record once, log
  once as the ``PgVaultAlert`` custom event).
- ``missed``: scheduled slots that passed, plus ``PGVAULT_MISSED_BACKUP_GRACE``, without a backup.
- ``webhook``: the JSON document POSTed to ``PGVAULT_ALERT_WEBHOOK_URL`` and the one POST.
- ``service``: ``AlertService``, what the alert timers run (deliveries with backoff; the checks) and the
  alerts list.
"""
