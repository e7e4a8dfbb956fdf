"""Redis/Valkey Streams: publisher, group reader, history, dead letters, status, the wire field."""
