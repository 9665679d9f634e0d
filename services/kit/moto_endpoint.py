"""The embedded AWS server process: moto's WSGI app with DynamoDB requests serialised.

moto does not isolate concurrent DynamoDB transactions: a cancelled TransactWriteItems restores a
snapshot of the table taken before it began, erasing writes that other requests committed in
between. Real DynamoDB never does that, so the endpoint runs DynamoDB (and Streams) requests one at
a time. S3 and SQS stay concurrent, which SQS long polling needs.

Run as `python -m services.kit.moto_endpoint HOST PORT`; `embedded.start_endpoint` does.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.threaded_moto_server import MotoRequestHandler  # type: ignore[attr-defined]
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

_dynamodb_lock = threading.Lock()

StartResponse = Callable[..., Any]


def _serialised(app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB"):
            with _dynamodb_lock:
                # Consume the body inside the lock: the request is done only when its answer is built.
                return list(app(environ, start_response))
        return app(environ, start_response)

    return wsgi


def main(argv: list[str]) -> None:
    host, port = argv[0], int(argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, _serialised(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main(sys.argv[1:])
