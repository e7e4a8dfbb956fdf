"""The transactional outbox relay: publishes committed events to the broker, in order."""
