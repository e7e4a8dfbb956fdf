"""The user model, its rules and its errors: no I/O here."""
