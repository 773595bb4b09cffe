"""The ISTIO_MUTUAL UpstreamTlsContext that clusters carry is assembled from bytes (sds's template
segments with the peer identities and SNI inserted, for speed); it must be exactly what serializing the
message would give, for any mix of identities, ALPN and SNI."""

from __future__ import annotations

import pytest
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from isthmus.security import sds

IDS = (
    (),
    ("spiffe://cluster.local/ns/default/sa/reviews",),
    tuple(f"spiffe://cluster.local/ns/ns-{i}/sa/{'x' * (i * 40)}" for i in range(1, 5)),
)


@pytest.mark.parametrize("ids", IDS, ids=["no identities", "one", "long ones"])
@pytest.mark.parametrize("alpn", [("istio",), ("h2",), ("http/1.1",)])
@pytest.mark.parametrize("sni", ["", "outbound_.9080_._.reviews.default.svc.cluster.local"])
def test_assembled_bytes_are_the_message_serialized(
    ids: tuple[str, ...], alpn: tuple[str, ...], sni: str
) -> None:
    assembled = sds.istio_mutual_upstream_tls_context_bytes(ids, sni=sni, alpn_protocols=alpn)
    message = sds.istio_mutual_upstream_tls_context(ids, sni=sni, alpn_protocols=alpn)
    assert assembled == message.SerializeToString(deterministic=True)
    parsed = tls_pb2.UpstreamTlsContext.FromString(assembled)
    sans = parsed.common_tls_context.combined_validation_context.default_validation_context
    assert [m.matcher.exact for m in sans.match_typed_subject_alt_names] == list(ids)
    assert (parsed.sni, list(parsed.common_tls_context.alpn_protocols)) == (sni, list(alpn))
