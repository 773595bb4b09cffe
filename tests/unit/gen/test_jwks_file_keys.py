"""`file://` jwksUri: the control plane's JWKS resolver reads the file into `Snapshot.jwks`; the generator
inlines what the snapshot holds and touches no file (DESIGN §1: generators are pure functions of
(snapshot, proxy)). The resolver's side (reading, polling, pushes) is in tests/unit/mesh/test_jwks_resolver.py.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import pathlib
from pathlib import Path
from typing import Any

import pytest
from gen_helpers import generate, sidecar, snapshot

from isthmus.config.jwks_resolver import read_jwks_file
from isthmus.model.jwks import JwksEntry
from isthmus.xds.gen import authz, naming

ISSUER = "https://issuer.example"
KEYS = json.dumps(
    {
        "keys": [
            {
                "kty": "EC",
                "kid": "file",
                "crv": "P-256",
                "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
                "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU",
            }
        ]
    }
)


def request_authn(uri: str, name: str = "ra") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: {name}, namespace: default}}
spec:
  jwtRules: [{{issuer: "{ISSUER}", jwksUri: "{uri}"}}]
"""


def inlined(snap: Any) -> str:
    ext = generate(snap, sidecar(), naming.EXTENSION_CONFIG_TYPE, {naming.JWT_EXTENSION})
    (provider,) = ext[naming.JWT_EXTENSION]["typed_config"]["providers"].values()
    return provider["local_jwks"]["inline_string"]


def refuse_file_io(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, every way code could read a file fails the test (and is recorded). (Raised as
    AssertionError, not OSError, so no `except OSError` in the code under test can swallow it.)"""
    calls: list[str] = []

    def refuse(what: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(f"{what}{args[:1]!r}")
            raise AssertionError(f"file I/O during generation: {what}{args[:1]!r}")

        return call

    for target, name in (
        (builtins, "open"),
        (io, "open"),
        (os, "open"),
        (pathlib.Path, "open"),
        (pathlib.Path, "read_text"),
        (pathlib.Path, "read_bytes"),
    ):
        monkeypatch.setattr(target, name, refuse(f"{getattr(target, '__name__', target)}.{name}"))
    return calls


def test_generator_reads_no_file_for_file_jwks_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Generation with a readable file:// key set and a missing one does no file I/O: the keys and the
    error come from the snapshot, which the resolver's loader filled before generation started."""
    path = tmp_path / "jwks.json"
    path.write_text(KEYS)
    uri, missing = f"file://{path}", f"file://{tmp_path}/missing.json"
    # Warm up: imports a generator makes lazily on its first run read their modules (not this test's
    # concern; the import system reads through io.open_code, which stays as it is anyway).
    inlined(snapshot(request_authn(f"file://{tmp_path}/warm-up.json")))
    snaps = (snapshot(request_authn(uri)), snapshot(request_authn(missing)))
    assert snaps[0].jwks == {(ISSUER, uri): JwksEntry(keys=KEYS, uri=uri)}
    calls = refuse_file_io(monkeypatch)
    results = [inlined(s) for s in snaps]
    # Every other resource type too (listeners reference jwt_authn; nothing else should read a file).
    for type_url in (naming.LISTENER_TYPE, naming.CLUSTER_TYPE, naming.ROUTE_TYPE):
        generate(
            snaps[1],
            sidecar(),
            type_url,
            None if type_url != naming.ROUTE_TYPE else {naming.HTTP_PROXY_ROUTE},
        )
    monkeypatch.undo()
    assert calls == []
    assert results == [KEYS, authz.PUBLIC_ONLY_JWKS]
    assert f"RequestAuthentication default/ra jwksUri {missing}" in snaps[1].generation_errors


def test_the_io_guard_catches_a_generator_that_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard above is not vacuous: the generator as it was before the resolver read files (its
    `_jwks` reading the file with Path.read_text inside `except OSError`) is caught, whether or not the
    generator's own error handling swallows the AssertionError."""
    path = tmp_path / "jwks.json"
    path.write_text(KEYS)
    snap = snapshot(request_authn(f"file://{path}"))

    def reading_jwks(snapshot: Any, cfg: Any, rule: Any) -> str:
        try:
            return Path(rule.jwks_uri[len("file://") :]).read_text()
        except OSError:
            return authz.PUBLIC_ONLY_JWKS

    monkeypatch.setattr(authz, "_jwks", reading_jwks)
    calls = refuse_file_io(monkeypatch)
    with contextlib.suppress(Exception):
        inlined(snap)
    monkeypatch.undo()
    assert calls and "read_text" in calls[0], calls


def test_file_keys_are_what_the_snapshot_holds_not_what_the_file_holds(tmp_path: Path) -> None:
    """The generator inlines the snapshot's key set even when the file has changed since: a change of
    the file reaches proxies through the resolver (a new snapshot and a push), never behind its back."""
    path = tmp_path / "jwks.json"
    path.write_text(KEYS)
    uri = f"file://{path}"
    snap = snapshot(request_authn(uri))
    path.write_text('{"keys": []}')
    assert inlined(snap) == KEYS
    path.unlink()
    assert inlined(snapshot(request_authn(uri))) == authz.PUBLIC_ONLY_JWKS


def test_missing_file_rejects_the_issuers_tokens_and_says_why(tmp_path: Path) -> None:
    """A file that cannot be read: the fake key set (every token of the issuer is 401, requests without
    one pass) and, in generationErrors, the RequestAuthentication, the URI and the read error, in the
    words used for a key set that cannot be fetched."""
    uri = f"file://{tmp_path}/nope/jwks.json"
    snap = snapshot(request_authn(uri))
    assert inlined(snap) == authz.PUBLIC_ONLY_JWKS
    assert snap.generation_errors == {
        f"RequestAuthentication default/ra jwksUri {uri}": (
            f"fetching its keys failed: open {tmp_path}/nope/jwks.json: No such file or directory; until a "
            f"fetch succeeds, tokens of issuer {ISSUER} are rejected (401) and requests without a token "
            "pass (istiod's fake JWKS)"
        )
    }


def test_read_jwks_file(tmp_path: Path) -> None:
    """The one loader of local key sets: the text (bytes that are not UTF-8 replaced, as for a fetched
    body; the generator judges whether Envoy can load it), or a stable error (a directory, a missing
    file)."""
    path = tmp_path / "jwks.json"
    path.write_text(KEYS)
    assert read_jwks_file(f"file://{path}") == JwksEntry(keys=KEYS, uri=f"file://{path}")
    path.write_bytes(b'{"keys": "\xff"}')
    assert read_jwks_file(f"file://{path}").keys == '{"keys": "\ufffd"}'
    entry = read_jwks_file(f"file://{tmp_path}")
    assert entry.keys is None and entry.error == f"open {tmp_path}: Is a directory"
    # The scheme in any case (admission lowercases it as Go's url.Parse does).
    path.write_text(KEYS)
    assert read_jwks_file(f"FILE://{path}").keys == KEYS


def test_unloadable_file_keys_are_replaced_as_inline_ones(tmp_path: Path) -> None:
    """A file whose key set Envoy would refuse (no usable key): the fake key set, and the reason, as for
    inline keys (the generator's check of what the snapshot holds)."""
    path = tmp_path / "jwks.json"
    path.write_text('{"keys": []}')
    snap = snapshot(request_authn(f"file://{path}"))
    assert inlined(snap) == authz.PUBLIC_ONLY_JWKS
    (error,) = snap.generation_errors.values()
    assert "Envoy cannot load its key set" in error
