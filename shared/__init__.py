"""pgvault's product code: models, policy engine, services and adapters.

Nothing in this package imports ``azure.functions``; the blueprints in ``functions/`` adapt
triggers to the services defined here.
"""
