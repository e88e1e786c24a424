"""An embedded S3 server for the examples: moto's, on a free port of 127.0.0.1.

Needs `pip install "moto[server]"` (the `demo` extra). Fake credentials are set only where
the environment has none, so a real store's credentials are never overridden.
"""

from __future__ import annotations

import logging
import os

from moto.server import ThreadedMotoServer


def start_embedded_s3() -> tuple[ThreadedMotoServer, str]:
    """Starts the server and returns it (call `.stop()` when done) and its endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "embedded")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"
