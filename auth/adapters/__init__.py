"""Database adapters: table definitions and the user repository."""
