"""Azure Storage limits that pgvault's code depends on, each with its source."""

from __future__ import annotations

# https://learn.microsoft.com/azure/storage/blobs/scalability-targets#scale-targets-for-blob-storage
MAX_BLOCKS_PER_BLOB = 50_000
MAX_BLOCK_BYTES = 4000 * 1024 * 1024  # 4,000 MiB per block (service version 2019-12-12 and later)

# https://learn.microsoft.com/azure/storage/queues/scalability-targets
MAX_QUEUE_MESSAGE_BYTES = 64 * 1024  # after base64 encoding

# https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions
MAX_TABLE_BATCH_ENTITIES = 100
# https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model
MAX_TABLE_PROPERTY_STRING_CHARS = 32 * 1024  # 64 KiB of UTF-16
MAX_TABLE_ENTITY_BYTES = 1024 * 1024
