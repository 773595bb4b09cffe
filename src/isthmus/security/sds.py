"""SDS secret names and the Envoy config that refers to them, as istiod and istio-agent name them.

Secret names served by the node agent (`isthmus.agent.sds.SdsAgent`):

- ``default``: the workload certificate (``tls_certificate``: chain + private key);
- ``ROOTCA``: the mesh's trust anchors (``validation_context.trusted_ca``);
- ``file-cert:<cert path>~<key path>`` and ``file-root:<path>``: files on the proxy's disk (DestinationRule
  ``tls.clientCertificate``/``caCertificates``, Gateway ``serverCertificate``...), as istio-agent serves
  them (``pkg/security`` ``SdsCertificateConfig``); ``file-root:system`` is the OS trust store;
- ``kubernetes://<name>`` (and ``kubernetes://<name>-cacert``): Gateway/DestinationRule ``credentialName``
  secrets, which istiod serves over ADS in Istio; here the runner hands them to the agent (the names
  istiod's SecretGen would answer: `isthmus.security.credentials`).

Every reference from a listener or a cluster goes to the static cluster ``sds-grpc`` (a unix socket in
the pod's workdir, added by `isthmus.agent.bootstrap.build_bootstrap(sds_socket=...)`), with
``initial_fetch_timeout: 0s`` (wait for the secret) exactly as istiod generates it
(``pilot/pkg/model/authentication.go`` ``ConstructSdsSecretConfig``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from isthmus.security.identity import DEFAULT_TRUST_DOMAIN, trust_domain_prefix
from isthmus.xds.gen.protos import field_tag, length_delimited, wire_segments

SECRET_TYPE_URL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
SDS_CLUSTER = "sds-grpc"  # same value as isthmus.agent.bootstrap.SDS_CLUSTER

WORKLOAD_CERT = "default"  # istio: security.WorkloadKeyCertResourceName
ROOT_CA = "ROOTCA"  # istio: security.RootCertReqResourceName
FILE_CERT_PREFIX = "file-cert:"
FILE_ROOT_PREFIX = "file-root:"
FILE_ROOT_SYSTEM = "file-root:system"
KUBERNETES_PREFIX = "kubernetes://"
CACERT_SUFFIX = "-cacert"
RESOURCE_SEPARATOR = "~"


@dataclass(frozen=True)
class FileSecret:
    """A ``file-cert:``/``file-root:`` secret name, parsed."""

    name: str
    cert_path: str = ""
    key_path: str = ""
    root_path: str = ""

    @property
    def is_root(self) -> bool:
        return bool(self.root_path)


def file_cert_name(cert_path: str, key_path: str) -> str:
    return f"{FILE_CERT_PREFIX}{cert_path}{RESOURCE_SEPARATOR}{key_path}"


def file_root_name(path: str) -> str:
    return f"{FILE_ROOT_PREFIX}{path}"


def parse_file_secret(name: str) -> FileSecret | None:
    """The paths of a ``file-cert:`` / ``file-root:`` name; None for any other name (or a malformed one)."""
    if name.startswith(FILE_CERT_PREFIX):
        cert, sep, key = name[len(FILE_CERT_PREFIX) :].partition(RESOURCE_SEPARATOR)
        if not sep or not cert or not key:
            return None
        return FileSecret(name, cert_path=cert, key_path=key)
    if name.startswith(FILE_ROOT_PREFIX):
        path = name[len(FILE_ROOT_PREFIX) :]
        return FileSecret(name, root_path=path) if path else None
    return None


# credentialName types istiod keeps as written (credentials.ToResourceName); any other name is a Secret's.
CONFIGMAP_PREFIX = "configmap://"
BUILTIN_PREFIX = "builtin://"
KUBERNETES_GATEWAY_PREFIX = "kubernetes-gateway://"  # Gateway API's credential names
_TYPED_CREDENTIAL_PREFIXES = (KUBERNETES_PREFIX, CONFIGMAP_PREFIX, KUBERNETES_GATEWAY_PREFIX)


def kubernetes_secret_name(credential_name: str) -> str:
    """The SDS name of a ``credentialName``: ``kubernetes://<name>`` unless it names its type already
    (``configmap://ns/name`` stays a ConfigMap's, as istiod's ToResourceName)."""
    if credential_name.startswith(BUILTIN_PREFIX):
        return WORKLOAD_CERT  # the proxy's own workload certificate, not a Secret (ToResourceName)
    if credential_name.startswith(_TYPED_CREDENTIAL_PREFIXES):
        return credential_name
    return f"{KUBERNETES_PREFIX}{credential_name}"


# -- Envoy config referring to the agent's secrets ----------------------------------------------------


@functools.lru_cache(maxsize=16)
def _sds_config_source(cluster: str) -> config_source_pb2.ConfigSource:
    return _build_sds_config_source(cluster)


def sds_config_source(cluster: str = SDS_CLUSTER) -> config_source_pb2.ConfigSource:
    """A copy (callers may modify it) of the cached source: thousands of clusters refer to it."""
    out = config_source_pb2.ConfigSource()
    out.CopyFrom(_sds_config_source(cluster))
    return out


def _build_sds_config_source(cluster: str = SDS_CLUSTER) -> config_source_pb2.ConfigSource:
    """istiod's SDS ConfigSource: gRPC (not ADS) to the `cluster`, wait for the first answer."""
    return config_source_pb2.ConfigSource(
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC,
            transport_api_version=config_source_pb2.V3,
            set_node_on_first_message_only=True,
            grpc_services=[
                grpc_service_pb2.GrpcService(
                    envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster)
                )
            ],
        ),
        initial_fetch_timeout=duration_pb2.Duration(seconds=0),
        resource_api_version=config_source_pb2.V3,
    )


@functools.lru_cache(maxsize=16)
def _credential_sds_config_source(cluster: str) -> config_source_pb2.ConfigSource:
    """istiod's SDSAdsConfig for `credentialName` secrets: no `initial_fetch_timeout` (Envoy's 15 s
    default), since the Secret may not exist: a missing one must not block the whole listener (every
    other host on the port) or cluster forever; its own filter chain just fails its handshakes."""
    out = _build_sds_config_source(cluster)
    out.ClearField("initial_fetch_timeout")
    return out


def sds_secret_config(name: str, cluster: str = SDS_CLUSTER) -> secret_pb2.SdsSecretConfig:
    """The workload's and file secrets wait for their first answer; credentials (`kubernetes://`,
    `configmap://`) do not (istiod's ConstructSdsSecretConfig vs ConstructSdsSecretConfigForCredential)."""
    if name.startswith(_TYPED_CREDENTIAL_PREFIXES):
        source = config_source_pb2.ConfigSource()
        source.CopyFrom(_credential_sds_config_source(cluster))
        return secret_pb2.SdsSecretConfig(name=name, sds_config=source)
    return secret_pb2.SdsSecretConfig(name=name, sds_config=sds_config_source(cluster))


def uri_san_matchers(
    *, exact: Sequence[str] = (), prefix: Sequence[str] = ()
) -> list[common_pb2.SubjectAltNameMatcher]:
    """``match_typed_subject_alt_names`` entries of type URI (exact SPIFFE ids or prefixes)."""
    uri = common_pb2.SubjectAltNameMatcher.URI
    out = [
        common_pb2.SubjectAltNameMatcher(san_type=uri, matcher=string_pb2.StringMatcher(exact=s))
        for s in exact
    ]
    out += [
        common_pb2.SubjectAltNameMatcher(san_type=uri, matcher=string_pb2.StringMatcher(prefix=p))
        for p in prefix
    ]
    return out


def istio_mutual_common_tls_context(
    *,
    peer_identities: Sequence[str] = (),
    peer_prefixes: Sequence[str] = (),
    alpn_protocols: Sequence[str] = (),
    cert: str = WORKLOAD_CERT,
    root: str = ROOT_CA,
    cluster: str = SDS_CLUSTER,
) -> tls_pb2.CommonTlsContext:
    """The CommonTlsContext of Istio mTLS: TLS 1.2-1.3, SDS `cert` + `root`, and the peer's SPIFFE ids
    (exact, for clients: the destination's service accounts) or prefixes (for servers:
    ``spiffe://<trust domain>/``) as URI SAN matchers."""
    out = tls_pb2.CommonTlsContext()
    out.CopyFrom(_common_tls_template(tuple(alpn_protocols), cert, root, cluster))
    matchers = uri_san_matchers(exact=peer_identities, prefix=peer_prefixes)
    if matchers:
        out.combined_validation_context.default_validation_context.match_typed_subject_alt_names.extend(
            matchers
        )
    return out


@functools.lru_cache(maxsize=64)
def _common_tls_template(
    alpn_protocols: tuple[str, ...], cert: str, root: str, cluster: str
) -> tls_pb2.CommonTlsContext:
    """All of istio_mutual_common_tls_context but the SAN matchers (an empty default validation
    context). Shared and never modified: callers copy it."""
    return tls_pb2.CommonTlsContext(
        tls_params=common_pb2.TlsParameters(
            tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_2,
            tls_maximum_protocol_version=common_pb2.TlsParameters.TLSv1_3,
        ),
        tls_certificate_sds_secret_configs=[sds_secret_config(cert, cluster)],
        combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
            default_validation_context=common_pb2.CertificateValidationContext(),
            validation_context_sds_secret_config=sds_secret_config(root, cluster),
        ),
        alpn_protocols=list(alpn_protocols),
    )


def istio_mutual_upstream_tls_context(
    peer_identities: Sequence[str],
    *,
    sni: str = "",
    alpn_protocols: Sequence[str] = ("istio",),
    cluster: str = SDS_CLUSTER,
) -> tls_pb2.UpstreamTlsContext:
    """ISTIO_MUTUAL on a client (cluster): verify the server's SPIFFE id among `peer_identities`.

    ALPN defaults to istiod's ``["istio"]`` for proxies without the metadata-exchange filter (plain
    Envoy has no ``istio-peer-exchange``); add ``"h2"`` for HTTP/2 clusters as istiod does."""
    return tls_pb2.UpstreamTlsContext(
        common_tls_context=_upstream_common_tls_context(
            tuple(peer_identities), tuple(alpn_protocols), cluster
        ),
        sni=sni,
    )


def istio_mutual_upstream_tls_context_bytes(
    peer_identities: Sequence[str],
    *,
    sni: str = "",
    alpn_protocols: Sequence[str] = ("istio",),
    cluster: str = SDS_CLUSTER,
) -> bytes:
    """istio_mutual_upstream_tls_context(...).SerializeToString(), assembled from the shared common
    context's bytes and the SNI (the one per-cluster part): for Any.value on every outbound cluster."""
    common = _upstream_common_tls_bytes(tuple(peer_identities), tuple(alpn_protocols), cluster)
    if not sni:
        return common
    return common + length_delimited(_T_SNI, sni.encode())


# UpstreamTlsContext: common_tls_context (1) then sni (2), in field-number order as upb writes them.
_T_COMMON = field_tag(tls_pb2.UpstreamTlsContext, "common_tls_context")
_T_SNI = field_tag(tls_pb2.UpstreamTlsContext, "sni")


@functools.lru_cache(maxsize=8192)
def _upstream_common_tls_bytes(
    peer_identities: tuple[str, ...], alpn_protocols: tuple[str, ...], cluster: str
) -> bytes:
    """The common_tls_context field: _upstream_common_tls_context's bytes, assembled from the template's
    around its SAN matchers (once per service, and most services have their own identities: building
    the message to serialize it cost more than the rest of a cluster's TLS)."""
    before, after, combined_tail = _common_tls_template_segments(
        alpn_protocols, WORKLOAD_CERT, ROOT_CA, cluster
    )
    sans = b"".join(
        length_delimited(_T_TYPED_SAN, _URI_SAN + length_delimited(_T_SAN_MATCHER, _exact(peer)))
        for peer in peer_identities
    )
    combined = length_delimited(_T_DEFAULT_VALIDATION, sans) + combined_tail
    return length_delimited(_T_COMMON, before + length_delimited(_T_COMBINED, combined) + after)


def _exact(text: str) -> bytes:
    return length_delimited(_T_EXACT, text.encode())


@functools.lru_cache(maxsize=64)
def _common_tls_template_segments(
    alpn_protocols: tuple[str, ...], cert: str, root: str, cluster: str
) -> tuple[bytes, bytes, bytes]:
    """The template's bytes before and after its combined_validation_context, and that field's bytes
    after its (empty) default_validation_context, where istio_mutual_common_tls_context puts the SANs."""
    template = _common_tls_template(alpn_protocols, cert, root, cluster)
    combined = tls_pb2.CommonTlsContext.CombinedCertificateValidationContext()
    combined.CopyFrom(template.combined_validation_context)
    combined.ClearField("default_validation_context")
    rest = tls_pb2.CommonTlsContext()
    rest.CopyFrom(template)
    rest.ClearField("combined_validation_context")
    before, after = wire_segments(rest, _T_COMBINED_NUMBER)
    (tail,) = wire_segments(combined)
    return before, after, tail


# CommonTlsContext.combined_validation_context > default_validation_context > match_typed_subject_alt_names,
# each a SubjectAltNameMatcher of type URI (san_type, field 1, first) with an exact StringMatcher.
_T_COMBINED_NUMBER = tls_pb2.CommonTlsContext.DESCRIPTOR.fields_by_name["combined_validation_context"].number
_T_COMBINED = field_tag(tls_pb2.CommonTlsContext, "combined_validation_context")
_T_DEFAULT_VALIDATION = field_tag(
    tls_pb2.CommonTlsContext.CombinedCertificateValidationContext, "default_validation_context"
)
_T_TYPED_SAN = field_tag(common_pb2.CertificateValidationContext, "match_typed_subject_alt_names")
_URI_SAN = common_pb2.SubjectAltNameMatcher(san_type=common_pb2.SubjectAltNameMatcher.URI).SerializeToString()
_T_SAN_MATCHER = field_tag(common_pb2.SubjectAltNameMatcher, "matcher")
_T_EXACT = field_tag(string_pb2.StringMatcher, "exact")


@functools.lru_cache(maxsize=8192)
def _upstream_common_tls_context(
    peer_identities: tuple[str, ...], alpn_protocols: tuple[str, ...], cluster: str
) -> tls_pb2.CommonTlsContext:
    """Shared, never modified (callers copy it): every cluster of a service, in every scope, has the same
    one; only the SNI differs per cluster."""
    return istio_mutual_common_tls_context(
        peer_identities=peer_identities, alpn_protocols=alpn_protocols, cluster=cluster
    )


def istio_mutual_downstream_tls_context(
    *,
    trust_domains: Sequence[str] = (DEFAULT_TRUST_DOMAIN,),
    alpn_protocols: Sequence[str] = ("h2", "http/1.1"),
    cluster: str = SDS_CLUSTER,
) -> tls_pb2.DownstreamTlsContext:
    """Inbound mTLS (STRICT/PERMISSIVE chains): require a client certificate from the mesh's trust
    domain(s), i.e. a URI SAN with prefix ``spiffe://<trust domain>/``."""
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=istio_mutual_common_tls_context(
            peer_prefixes=[trust_domain_prefix(td) for td in trust_domains],
            alpn_protocols=alpn_protocols,
            cluster=cluster,
        ),
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
    )
