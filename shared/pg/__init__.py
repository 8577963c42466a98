"""PostgreSQL: connection strings, connections, privileges and the client tools."""
