"""``isthmus echo``: the echo test server (see ``isthmus.echo``)."""

from __future__ import annotations

import click

from isthmus.echo.behaviour import BadParameter, parse_delay, parse_duration


class _Duration(click.ParamType):
    name = "duration"

    def __init__(self, max_delay: bool = False) -> None:
        self.max_delay = max_delay

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_delay(str(value)) if self.max_delay else parse_duration(str(value))
        except BadParameter as e:
            self.fail(str(e), param, ctx)


@click.command(
    "echo",
    context_settings={"help_option_names": ["-h", "--help"]},
    help="""Run the echo test server: HTTP/1.1 and h2c on every port of $ISTHMUS_PORTS (else --port,
$PORT or 8080). Every response is JSON describing the request and this instance.

Query parameters (fortio-style): status=CODE[:PERCENT][,...], delay=DURATION[:PERCENT][,...],
size=BYTES[:PERCENT], header=NAME:VALUE (repeatable), close=1; /stream?interval=100ms&count=N writes
N JSON lines. Own endpoints: /.echo/count, /.echo/requests, /.echo/healthz, /.echo/reset
(?fail-first=N[&fail-status=CODE] also re-arms the first-N failures).""",
)
@click.option(
    "--port", "-p", type=int, help="HTTP port when $ISTHMUS_PORTS is not set (default $PORT, else 8080)."
)
@click.option(
    "--host",
    default=None,
    help="Address to bind (default $ISTHMUS_LISTEN_HOST, else 127.0.0.1).",
)
@click.option(
    "--tcp",
    "tcp",
    type=int,
    multiple=True,
    metavar="PORT",
    help="Serve a line echo on this target port instead of HTTP (repeatable).",
)
@click.option(
    "--tcp-prefix", help="Prefix of TCP echo answers (default: the version label, else the instance)."
)
@click.option("--fail-status", type=int, metavar="CODE", help="Status of injected failures (default 503).")
@click.option(
    "--fail-rate",
    type=click.FloatRange(0.0, 100.0),
    metavar="R",
    help="Fail this fraction of requests (0..1; a value above 1 is a percentage, as fortio's 50 for 50%).",
)
@click.option(
    "--fail-first", type=click.IntRange(min=0), metavar="N", help="Fail the first N requests, then none."
)
@click.option(
    "--delay", type=_Duration(max_delay=True), default=0.0, help="Delay every response (e.g. 200ms)."
)
@click.option(
    "--response-header",
    "response_headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="Add this header to every response (repeatable).",
)
@click.option(
    "--call",
    "calls",
    multiple=True,
    metavar="URL",
    help="Also call URL (through $HTTP_PROXY) for each request, forwarding tracing headers (repeatable).",
)
@click.option("--call-timeout", type=_Duration(), default=15.0, help="Timeout of each --call (default 15s).")
@click.option("--quiet/--verbose", "-q/-v", default=True, help="Per-request access log with --verbose.")
def echo_command(
    port: int | None,
    host: str | None,
    tcp: tuple[int, ...],
    tcp_prefix: str | None,
    fail_status: int | None,
    fail_rate: float | None,
    fail_first: int | None,
    delay: float,
    response_headers: tuple[str, ...],
    calls: tuple[str, ...],
    call_timeout: float,
    quiet: bool,
) -> None:
    from isthmus.echo.config import build_config
    from isthmus.echo.server import run

    if fail_rate is not None and fail_rate > 1.0:
        fail_rate /= 100.0  # a percentage (fortio's status=503:50 spelling of rates)
    try:
        config = build_config(
            port=port,
            host=host,
            tcp=tcp,
            tcp_prefix=tcp_prefix,
            fail_status=fail_status,
            fail_rate=fail_rate,
            fail_first=fail_first,
            delay=delay,
            response_headers=response_headers,
            calls=calls,
            call_timeout=call_timeout,
            verbose=not quiet,
        )
    except BadParameter as e:
        raise click.UsageError(str(e)) from e
    try:
        run(config)
    except OSError as e:
        raise click.ClickException(str(e)) from e
