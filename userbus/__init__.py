"""The userbus command: wires auth, producers and consumers together."""
