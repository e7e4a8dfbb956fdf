"""Use cases and the unit of work that commits state and events together."""
