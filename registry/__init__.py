"""The registry of a node: storage (memory, SQLite), the change journal,
write operations with Handle-style authorisation, batches and node set-up."""
