"""The auth service: owns accounts and passwords and records every change as an event."""
