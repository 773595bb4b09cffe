"""Check that generator changes keep the output byte-identical (for optimizations of xds/gen).

    .venv/bin/python bench/gen_check.py dump /tmp/before.json    # before the change
    .venv/bin/python bench/gen_check.py dump /tmp/after.json     # after
    .venv/bin/python bench/gen_check.py compare /tmp/before.json /tmp/after.json [Cluster,ClusterLoadAssignment]

`dump` records a digest of every resource MeshGenerator.generate returns (1) while the unit tests run
(tests/unit, in this process: every fixture and proxy the tests generate for) and (2) for every client
proxy of bench/generate.py's synthetic mesh (full scope and Sidecar scopes, all four xDS types). Each
resource is recorded as its serialized size and a digest of its canonical form (every field, packed
Anys unpacked); `compare` lists any difference.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from google.protobuf.json_format import MessageToDict

from isthmus.xds.gen import generator as generator_mod


def _digest(a: Any) -> str:
    """Size + digest of the canonical JSON (packed Anys unpacked, keys sorted). Raw serialized bytes can't
    be compared across processes: upb orders map entries (Struct fields, typed_extension_protocol_options)
    by a per-process hash seed, and a packed Any keeps its payload's bytes as they were when packed."""
    canon = json.dumps(MessageToDict(a, preserving_proto_field_name=True), sort_keys=True)
    return f"{a.ByteSize()}:{hashlib.sha256(canon.encode()).hexdigest()[:24]}"


class Recorder:
    def __init__(self) -> None:
        self.out: dict[str, set[str]] = {}
        self.context = "setup"
        self.seq = 0

    def install(self) -> None:
        original = generator_mod.MeshGenerator.generate
        rec = self

        def generate(self: Any, snapshot: Any, proxy: Any, type_url: str, watched: Any) -> Any:
            res = original(self, snapshot, proxy, type_url, watched)
            rec.seq += 1
            short = type_url.rsplit(".", 1)[-1]
            for name in sorted(res):
                # Keyed without the call's sequence number: some server tests call a timing-dependent
                # number of times; what each (test, proxy, type, name) was ever generated as must match.
                key = f"{rec.context}|{snapshot.version}|{proxy.id}|{short}|{name}"
                rec.out.setdefault(key, set()).add(_digest(res[name]))
            return res

        generator_mod.MeshGenerator.generate = generate  # type: ignore[method-assign]

    # pytest plugin hook
    def pytest_runtest_setup(self, item: Any) -> None:
        self.context = item.nodeid
        self.seq = 0


def dump(path: str, *pytest_args: str) -> None:
    import generate as bench_gen
    import pytest

    from isthmus.model.snapshot import Snapshot
    from isthmus.xds.gen.generator import MeshGenerator

    rec = Recorder()
    rec.install()
    rc = pytest.main(["-q", "-x", "-p", "no:cacheprovider", "tests/unit", *pytest_args], plugins=[rec])
    if rc != 0:
        sys.exit(f"unit tests failed (rc={rc})")
    rec.context, rec.seq = "synthetic", 0
    configs = bench_gen.store_configs(bench_gen.mesh_yaml(1000))
    snap = Snapshot.build(1, configs, bench_gen.mesh_pods(1000, 5))
    gen = MeshGenerator()
    for ns in bench_gen.CLIENT_NAMESPACES:
        for j in range(2):
            bench_gen.run_proxy(gen, snap, bench_gen.client_proxy(ns, j))
    Path(path).write_text(json.dumps({k: sorted(v) for k, v in rec.out.items()}, sort_keys=True))
    print(f"{len(rec.out)} resources recorded -> {path}")


def _type(key: str) -> str:
    """The resource type of a key (names and test ids may contain '|' too: pick the known type names)."""
    m = re.search(
        r"\|(Cluster|ClusterLoadAssignment|Listener|RouteConfiguration|TypedExtensionConfig)\|", key
    )
    return m.group(1) if m else "?"


def compare(a: str, b: str, types: str = "") -> None:
    """With `types` (e.g. Cluster,ClusterLoadAssignment), only resources of those types: other engineers'
    concurrent changes (listeners, new tests) show up in the rest."""
    before, after = json.loads(Path(a).read_text()), json.loads(Path(b).read_text())
    if types:
        keep = set(types.split(","))
        before = {k: v for k, v in before.items() if _type(k) in keep}
        after = {k: v for k, v in after.items() if _type(k) in keep}
    missing = sorted(set(before) - set(after))
    added = sorted(set(after) - set(before))
    wire = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    by_type: dict[str, int] = {}
    for k in wire:
        by_type[_type(k)] = by_type.get(_type(k), 0) + 1
    for label, keys in (("missing", missing), ("added", added), ("differs", wire)):
        for k in keys[:20]:
            print(f"{label}: {k}")
    print(
        f"{len(before)} resources before, {len(after)} after: {len(missing)} missing, {len(added)} added, "
        f"{len(wire)} different {by_type or ''}"
    )
    sys.exit(1 if missing or added or wire else 0)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "dump":
        dump(*sys.argv[2:])  # extra arguments go to pytest (e.g. --ignore=...)
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "compare":
        compare(*sys.argv[2:])
    else:
        sys.exit(__doc__)
