"""The watched config directory: every top-level *.yaml / *.yml file is a source of resources.

Each file is applied on its own terms: a file that fails to parse or validate is refused as a whole
(its last good resources stay in force) and its errors are kept for `status`; other files go ahead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from isthmus.config.ingest import Ingested, ingest_text
from isthmus.config.store import Store

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml")


def source_name(path: Path) -> str:
    return f"file:{path}"


def config_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in SUFFIXES)


class DirectorySource:
    def __init__(
        self,
        directory: Path,
        store: Store,
        on_errors: Callable[[Path, Ingested], None] | None = None,
    ) -> None:
        self.directory = directory.resolve()
        self.store = store
        self.on_errors = on_errors
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()

    def load_file(self, path: Path) -> Ingested:
        source = source_name(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            self.store.replace_source(source, [])
            self.store.source_errors.pop(source, None)
            return Ingested()
        result = ingest_text(text, str(path))
        if result.ok:
            self.store.source_errors.pop(source, None)
            self.store.replace_source(source, result.resources)
        else:
            self.store.source_errors[source] = result.errors
            if self.on_errors is not None:
                self.on_errors(path, result)
        for w in result.warnings:
            log.warning("%s", w)
        return result

    def load_all(self) -> list[tuple[Path, Ingested]]:
        """Initial load: all files, resources of valid files applied together in one store change."""
        results = []
        good = []
        for path in config_files(self.directory):
            result = ingest_text(path.read_text(), str(path))
            results.append((path, result))
            if result.ok:
                good.append((path, result))
            else:
                self.store.source_errors[source_name(path)] = result.errors
        # One creation time for the whole initial load, as `kubectl apply -f DIR` gives (Kubernetes'
        # timestamps have one-second resolution): resources then take istiod's tie-break, name then
        # namespace, whatever file or document they are in.
        now = datetime.now(UTC)
        for path, result in good:
            self.store.replace_source(source_name(path), result.resources, now)
        return results

    async def watch(self) -> None:
        from watchfiles import Change, awatch

        async for changes in awatch(
            self.directory, stop_event=self._stop, debounce=50, step=20, recursive=False
        ):
            paths = {
                Path(p) for change, p in changes if change in (Change.added, Change.modified, Change.deleted)
            }
            for path in sorted(paths):
                if path.suffix not in SUFFIXES or path.parent.resolve() != self.directory:
                    continue
                result = self.load_file(path)
                if result.ok:
                    log.info("config: applied %s (%d resources)", path.name, len(result.resources))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.watch(), name="config-dir-watch")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 2)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
