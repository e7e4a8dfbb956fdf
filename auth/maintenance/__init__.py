"""Housekeeping of the auth database: pruning what has expired, erasing deleted users."""
