"""The HTTP API: schemas, dependencies, error mapping and routers."""
