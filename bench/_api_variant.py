"""The auth app under uvicorn (as run_api, less its GC tuning), or without ObservedRequests.

`--bare` takes the middleware out; it exists only here, to measure what it costs a request.
"""

import argparse
import asyncio

import uvicorn

from auth.api.middleware import ObservedRequests
from auth.main import create_app
from auth.settings import AuthSettings
from infra.observability.logs import configure_logging
from userbus.run import run_until_signal


def main() -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bare", action="store_true")
    args = parser.parse_args()
    settings = AuthSettings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    if args.bare:
        # The middleware stack is built at the first request, from this list.
        app.user_middleware = [m for m in app.user_middleware if m.cls is not ObservedRequests]

    async def serve(stop: asyncio.Event) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_config=None)
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        await stop.wait()
        server.should_exit = True
        await serving

    run_until_signal(serve)


if __name__ == "__main__":
    main()
