"""Kafka: URL parsing, topic admin, publisher, group reader, history, dead letters, status.

The client library (aiokafka) is imported by the modules that use it, not here, so that
parsing a Kafka URL does not load it.
"""
