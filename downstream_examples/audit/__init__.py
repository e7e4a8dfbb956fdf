"""The audit service: an append-only log of every user lifecycle event, readable per user."""
