"""The profile service: a `profiles` table kept from user lifecycle events."""
