"""`isthmus analyze PATH...`: istioctl analyze, offline, on the model the control plane uses.

Inputs: files, directories (their ``*.yaml``, ``*.yml`` and ``*.json`` files; with ``-R`` also those of
subdirectories, as ``istioctl analyze -R``), and ``-`` for stdin. Multi-document YAML and ``kind: List``
are read; kinds Isthmus does not model are skipped with an Info note (ISM0006); namespace-less resources
go to ``default``. A file named with another extension is skipped with istioctl's note, as istioctl does. When a resource is defined twice, the last definition is analyzed (with a warning).

Output: ``text`` (istioctl's lines: ``Error [IST0101] (VirtualService default/reviews f.yaml:12) ...``),
``json`` or ``yaml`` (a list of ``{code, name, level, resource, origin, message}``). ``--output-threshold``
hides less severe messages; ``--failure-threshold`` decides the exit code.

Exit codes: 0 nothing at or above the failure threshold, 79 issues found, 65 unparseable input (nothing
is analyzed), 64 bad usage (unknown option or level, missing path).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

EXIT_ISSUES = 79
EXIT_PARSE = 65
EXIT_USAGE = 64
SUFFIXES = (".yaml", ".yml", ".json")
# istioctl's fileExtensions, printed as Go prints a []string.
_EXTENSIONS = "[.json .yaml .yml]"
DOCS = "https://istio.io/latest/docs/reference/config/analysis"
LEVEL_COLORS = {"Error": "red", "Warning": "yellow", "Info": "cyan"}


class _Command(click.Command):
    """Usage errors exit with 64 (EX_USAGE) instead of click's 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.exit_code = EXIT_USAGE
            raise


def _usage(message: str) -> click.UsageError:
    exc = click.UsageError(message)
    exc.exit_code = EXIT_USAGE
    return exc


class _ParseFailure(Exception):
    pass


def _files(path: Path, recursive: bool) -> list[Path]:
    if path.is_dir():
        found = path.rglob("*") if recursive else path.iterdir()
        return sorted(p for p in found if p.is_file() and p.suffix in SUFFIXES)
    return [path]


def _sources(paths: tuple[str, ...], recursive: bool) -> list[tuple[str, str]]:
    """(text, file name) of every input; a missing path is a usage error, an unreadable one a parse error."""
    out: list[tuple[str, str]] = []
    stdin_read = False
    for raw in paths:
        if raw == "-":
            if not stdin_read:
                out.append((sys.stdin.read(), "<stdin>"))
                stdin_read = True
            continue
        path = Path(raw)
        if not path.exists():
            raise _usage(f"{raw}: no such file or directory")
        if path.is_file() and path.suffix not in SUFFIXES:
            # istioctl's gatherFiles: a file named on the command line whose extension is not one it
            # reads is skipped with this note (on stderr), not parsed (tests/integration/pilot
            # analyze_test.go TestInvalidFileError, TestJsonOutput).
            click.echo(f"Skipping file {raw}, recognized file extensions are: {_EXTENSIONS}", err=True)
            continue
        for f in _files(path, recursive):
            try:
                out.append((f.read_text(encoding="utf-8"), str(f)))
            except (OSError, UnicodeDecodeError) as exc:
                raise _ParseFailure(f"{f}: cannot read: {exc}") from exc
    return out


def load_inputs(paths: tuple[str, ...], recursive: bool = False) -> Any:
    """The load report of every input (later definitions of a resource replace earlier ones)."""
    from isthmus.api.errors import ConfigError
    from isthmus.api.loader import LoadReport, load_text_report

    report = LoadReport()
    for text, name in _sources(paths, recursive):
        report.extend(load_text_report(text, name, lenient=True))
    last: dict[tuple[str, str, str], Any] = {}
    for res in report.resources:
        prev = last.get(res.key)
        if prev is not None and prev.origin.file != res.origin.file:
            report.messages.append(
                ConfigError(
                    file=res.origin.file,
                    line=res.origin.line,
                    kind=res.kind,
                    namespace=res.namespace or None,
                    name=res.name,
                    message=f"defined more than once (also at {prev.origin}); the last definition wins",
                    level="Warning",
                )
            )
        last[res.key] = res
    report.resources = list(last.values())
    return report


def _render(messages: list[Any], output: str) -> str:
    if output == "json":
        return json.dumps([m.to_dict() for m in messages], indent=2) + "\n"
    if output == "yaml":
        import yaml

        return yaml.safe_dump([m.to_dict() for m in messages], sort_keys=False, default_flow_style=False)
    return "".join(f"{_styled(m)}\n" for m in messages)


def _styled(msg: Any) -> str:
    text = str(msg)
    color = LEVEL_COLORS.get(msg.level)
    return click.style(msg.level, fg=color) + text[len(msg.level) :] if color else text


_LEVEL = click.Choice(["Error", "Warning", "Info"], case_sensitive=False)


@click.command("analyze", cls=_Command)
@click.argument("paths", nargs=-1, metavar="PATH...")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json", "yaml"]),
    default="text",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--failure-threshold",
    type=_LEVEL,
    default="Error",
    show_default=True,
    help="The severity level of messages that make the command fail (exit 79).",
)
@click.option(
    "--output-threshold",
    type=_LEVEL,
    default="Info",
    show_default=True,
    help="The severity level of messages that are printed.",
)
@click.option(
    "-R", "--recursive", is_flag=True, help="Also read the files of subdirectories of directory paths."
)
def analyze_command(
    paths: tuple[str, ...], output: str, failure_threshold: str, output_threshold: str, recursive: bool
) -> None:
    """Analyze Istio (and Kubernetes, Isthmus) configuration in files, directories or - (stdin).

    Reports istioctl's IST messages and Isthmus' own ISM ones, as the running mesh would see the
    configuration. Exit codes: 0 fine, 79 issues at or above --failure-threshold, 65 unparseable
    input, 64 bad usage.
    """
    if not paths:
        raise _usage("at least one PATH is required (a file, a directory, or - for stdin)")
    failure_threshold, output_threshold = failure_threshold.capitalize(), output_threshold.capitalize()
    from isthmus.analyze import analyze
    from isthmus.analyze.messages import level_at_least
    from isthmus.analyze.schema import is_parse_error

    try:
        report = load_inputs(paths, recursive)
    except _ParseFailure as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_PARSE)
    parse_errors = [e for e in report.messages if is_parse_error(e)]
    if parse_errors:
        for e in parse_errors:
            click.echo(f"Error: {e}", err=True)
        click.echo("Error: the input cannot be parsed; nothing was analyzed.", err=True)
        sys.exit(EXIT_PARSE)

    messages = analyze(report.resources, load_messages=report.messages)
    shown = [m for m in messages if level_at_least(m.level, output_threshold)]
    failing = [m for m in messages if level_at_least(m.level, failure_threshold)]
    target = ", ".join(paths)
    if output != "text" or shown:
        click.echo(_render(shown, output), nl=False)
    if failing:
        if output == "text":
            click.echo(f"Error: Analyzers found issues when analyzing {target}.", err=True)
            click.echo(f"See {DOCS} for more information about causes and resolutions.", err=True)
        sys.exit(EXIT_ISSUES)
    if output == "text" and not shown:
        click.echo(f"\u2714 No validation issues found when analyzing {target}.")
