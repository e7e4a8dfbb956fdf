"""Infrastructure shared by the services: brokers, mail, settings basics (imports events/ only)."""
