"""Adapters over Azure Storage: the state table, blob containers and queues.

Each adapter is small, typed, and works the same on Azurite (connection string) and on Azure
(identity-based connection with ``DefaultAzureCredential``).
"""
