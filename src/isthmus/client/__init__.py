"""HTTP/1.1 (h11) and TCP-tunnel client used by ``isthmus curl``, the echo server's ``--call`` and tests.

Async API: ``request``, ``HttpClient``, ``run_load``, ``LoadGenerator``; synchronous wrappers in
``isthmus.client.sync``; mesh lookup (``find_source``, ``resolve``) in ``isthmus.client.mesh``.
"""

from __future__ import annotations

from isthmus.client.http import (
    DEFAULT_TIMEOUT,
    HttpClient,
    Response,
    Target,
    UrlError,
    parse_header,
    parse_url,
    proxy_from_environment,
    request,
)
from isthmus.client.load import LoadGenerator, LoadResult, run_load

__all__ = [
    "DEFAULT_TIMEOUT",
    "HttpClient",
    "LoadGenerator",
    "LoadResult",
    "Response",
    "Target",
    "UrlError",
    "parse_header",
    "parse_url",
    "proxy_from_environment",
    "request",
    "run_load",
]
