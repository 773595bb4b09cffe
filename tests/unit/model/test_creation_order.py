"""Creation order: istiod's "oldest wins", with ties (resources created together) broken by name, then
namespace (sortConfigByCreationTime), not by the order the documents were read."""

from __future__ import annotations

import textwrap
from pathlib import Path

from isthmus.api.loader import load_text
from isthmus.config.directory import DirectorySource
from isthmus.config.store import Store
from isthmus.model import authn

PA = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {ns}{extra}}}
spec: {{mtls: {{mode: {mode}}}}}
"""


def pa(name: str, mode: str, ns: str = "default", created: str = "") -> str:
    extra = f", creationTimestamp: '{created}'" if created else ""
    return PA.format(name=name, ns=ns, mode=mode, extra=extra)


def names(store: Store, kind: str = "PeerAuthentication") -> list[str]:
    return [f"{c.namespace}/{c.name}" for c in store.list(kind)]


def namespace_mode(store: Store) -> str:
    """The mTLS mode of namespace `default`'s workloads, from its namespace-wide policies."""
    return authn.namespace_mode(store.list("PeerAuthentication"), "default", "istio-system")


def test_one_apply_orders_by_name_then_namespace() -> None:
    store = Store()
    docs = [pa("zeta", "STRICT", "b"), pa("alpha", "DISABLE", "b"), pa("alpha", "PERMISSIVE", "a")]
    store.apply(load_text("---".join(docs), "pa.yaml"), "test")
    assert names(store) == ["a/alpha", "b/alpha", "b/zeta"]


def test_tie_break_picks_the_oldest_policy_by_name() -> None:
    # Two namespace-wide policies created together: istiod takes the one whose name sorts first.
    store = Store()
    store.apply(load_text("---".join([pa("zz", "STRICT"), pa("aa", "DISABLE")]), "pa.yaml"), "test")
    assert namespace_mode(store) == "DISABLE"


def test_later_apply_is_newer_whatever_its_name() -> None:
    store = Store()
    store.apply(load_text(pa("zz", "STRICT"), "a.yaml"), "test")
    store.apply(load_text(pa("aa", "DISABLE"), "b.yaml"), "test")
    assert names(store) == ["default/zz", "default/aa"]
    assert namespace_mode(store) == "STRICT"


def test_explicit_creation_timestamp_comes_first() -> None:
    store = Store()
    docs = [
        pa("aa", "DISABLE", created="2024-01-01T00:00:02Z"),
        pa("zz", "STRICT", created="2024-01-01T00:00:01Z"),
    ]
    store.apply(load_text("---".join(docs), "pa.yaml"), "test")
    assert names(store) == ["default/zz", "default/aa"]


def test_update_keeps_creation_order() -> None:
    store = Store()
    store.apply(load_text(pa("zz", "STRICT"), "a.yaml"), "test")
    store.apply(load_text(pa("aa", "DISABLE"), "b.yaml"), "test")
    store.apply(load_text(pa("zz", "PERMISSIVE"), "a.yaml"), "test")
    assert names(store) == ["default/zz", "default/aa"]


def test_initial_directory_load_is_one_creation_time(tmp_path: Path) -> None:
    # Like `kubectl apply -f DIR`: files read at start are created together, so name order decides,
    # not the file names.
    (tmp_path / "1-first.yaml").write_text(textwrap.dedent(pa("zz", "STRICT")))
    (tmp_path / "2-second.yaml").write_text(textwrap.dedent(pa("aa", "DISABLE")))
    store = Store()
    DirectorySource(tmp_path, store).load_all()
    assert names(store) == ["default/aa", "default/zz"]
    assert namespace_mode(store) == "DISABLE"


def test_file_changed_after_start_is_newer(tmp_path: Path) -> None:
    (tmp_path / "1-first.yaml").write_text(textwrap.dedent(pa("zz", "STRICT")))
    store = Store()
    source = DirectorySource(tmp_path, store)
    source.load_all()
    later = tmp_path / "0-later.yaml"
    later.write_text(textwrap.dedent(pa("aa", "DISABLE")))
    source.load_file(later)
    assert names(store) == ["default/zz", "default/aa"]
