"""The echo test server (``isthmus echo``): HTTP/1.1 + h2c JSON echo, fortio-style knobs, TCP line echo.

From Python: ``EchoServer(build_config(...))`` (in-process, ``await server.serve()``), or
``python -m isthmus.echo [OPTIONS]`` / ``isthmus echo [OPTIONS]`` as a process.
"""

from __future__ import annotations

from isthmus.echo.config import EchoConfig, PortBinding, build_config

__all__ = ["EchoConfig", "PortBinding", "build_config"]
