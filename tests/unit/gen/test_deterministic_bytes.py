"""Generated resources serialize to the same bytes in every process: a delta xDS resource's version is its
digest, so a proxy reconnecting to a restarted (or another) control plane is sent only what changed.
Protobuf map fields (Struct metadata, typed_extension_protocol_options, JSON log formats) are written
in a per-process order unless serialized deterministically."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    sys.path.insert(0, {here!r})
    from gen_helpers import sidecar, snapshot
    from isthmus.xds.gen import naming
    from isthmus.xds.gen.generator import MeshGenerator

    mesh = '''
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {{name: mesh}}
    spec: {{accessLogFile: /dev/stdout, accessLogEncoding: JSON}}
    '''
    snap = snapshot(mesh)
    gen = MeshGenerator()
    proxy = sidecar()
    out = hashlib.sha256()
    cds = gen.generate(snap, proxy, naming.CLUSTER_TYPE, None)
    eds = frozenset(n for n in cds if n.startswith("outbound|"))
    for type_url, watched in ((naming.CLUSTER_TYPE, None), (naming.ENDPOINT_TYPE, eds),
                              (naming.LISTENER_TYPE, None), (naming.ROUTE_TYPE, None)):
        for name, res in sorted(gen.generate(snap, proxy, type_url, watched).items()):
            out.update(name.encode() + res.SerializeToString())
    print(out.hexdigest())
    """
)


def test_generated_bytes_are_the_same_in_every_process() -> None:
    script = _SCRIPT.format(here=str(Path(__file__).parent))
    digests = {
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
        ).stdout.strip()
        for _ in range(3)
    }
    assert len(digests) == 1, digests
