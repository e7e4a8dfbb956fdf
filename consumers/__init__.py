"""The subscriber toolkit: projections applied exactly once in effect, with replay."""
