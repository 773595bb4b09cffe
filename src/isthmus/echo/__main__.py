"""``python -m isthmus.echo [OPTIONS]``: the same as ``isthmus echo``."""

from __future__ import annotations

from isthmus.cli.echo_cmd import echo_command

if __name__ == "__main__":
    echo_command(prog_name="isthmus echo")
