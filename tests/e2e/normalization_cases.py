"""Istio's TestNormalization table (tests/integration/security/normalization_test.go), shared by the e2e
test that sends it through a real mesh (test_istio_normalization_cases.py) and the unit test of the
route tester's path normalization (tests/unit/gen/test_istio_normalization_parity.py)."""

from __future__ import annotations

from urllib.parse import unquote

BAD_REQUEST = "400"

Expect = tuple[str, str]  # (path sent, path the app sees, or "400")

# Paths every mode sends (Istio's None/Base/MergeSlashes/DecodeAndMergeSlashes groups share them).
_COMMON_INPUTS = (
    "/",
    "/app#foo",
    "/app/",
    "/app/../admin",
    "/app",
    "/app//",
    "/app/%2f",
    "/app%2f/",
    "/xyz%30..//abc",
    "/app/%2E./admin",
    "/app\\admin",
    "/app/\\/\\/\\admin",
    "/%2Fapp%5cadmin%5Cabc",
    "/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\\abc",
    "/app//../admin",
    "/app//../../admin",
)


def _mode(outputs: tuple[str, ...], extra: tuple[Expect, ...] = ()) -> tuple[Expect, ...]:
    return (*zip(_COMMON_INPUTS, outputs, strict=True), *extra)


# Isthmus's addition: without normalize_path Envoy 1.40 leaves `..;` alone too (the fix lives in
# normalize_path, whatever istio/istio#61483 says of NONE), so the DENY policy is bypassed as for `..`.
NONE = _mode(tuple(p.partition("#")[0] for p in _COMMON_INPUTS), extra=(("/..;/admin", "/..;/admin"),))
BASE = _mode(
    (
        "/",
        "/app",
        "/app/",
        "/admin",
        "/app",
        "/app//",
        "/app/%2f",
        "/app%2f/",
        "/xyz0..//abc",
        "/admin",
        "/app/admin",
        "/app//////admin",
        "/%2Fapp%5cadmin%5Cabc",
        "/%5Capp%2f%5c%2F..%2fadmin%5c/abc",
        "/app/admin",
        "/admin",
    )
)
MERGE_SLASHES = _mode(
    (
        "/",
        "/app",
        "/app/",
        "/admin",
        "/app",
        "/app/",
        "/app/%2f",
        "/app%2f/",
        "/xyz0../abc",
        "/admin",
        "/app/admin",
        "/app/admin",
        "/%2Fapp%5cadmin%5Cabc",
        "/%5Capp%2f%5c%2F..%2fadmin%5c/abc",
        "/app/admin",
        "/admin",
    )
)
DECODE_AND_MERGE_SLASHES = _mode(
    (
        "/",
        "/app",
        "/app/",
        "/admin",
        "/app",
        "/app/",
        "/app/",
        "/app/",
        "/xyz0../abc",
        "/admin",
        "/app/admin",
        "/app/admin",
        "/app/admin/abc",
        "/app/admin/abc",
        "/app/admin",
        "/admin",
    ),
    extra=(("/%c0%2e%c0%2e/admin", "/%c0.%c0./admin"), ("/%c0%2fadmin", "/%c0/admin")),
)
# Look-alikes of traversal and encodings that no mode may touch (double encoding, overlong UTF-8,
# `0x2e` spelled out, path parameters, case)...
_NOT_NORMALIZED = (
    "/0x2e0x2e/admin",
    "/0x2e0x2e0x2fadmin",
    "/0x2e0x2e0x5cadmin",
    "/0x2f0x2fadmin",
    "/0x5c0x5cadmin",
    "/%25c0%25ae%25c1%259cadmin",
    "/%25c0%25ae%25c0%25ae/admin",
    "/%25c0%25afadmin",
    "/%25c1%259cadmin",
    "/%252e%252e/admin",
    "/%252e%252e%252fadmin",
    "/%c1%9cadmin",
    "/%c0%ae%c0%ae/admin",
    "/%c0%afadmin",
    "/.../admin",
    "/..../admin",
    "/..;/admin",
    "/;/admin",
    "/admin;a=b",
    "/admin;a=b/xyz",
    "/admin,a=b/xyz",
    "/Admin",
    "/ADMIN",
)
# ...but one: Envoy's path-parameter fix (CVE-2026-73551) makes normalize_path read a `..;` segment (`..`
# with a path parameter) as `..`; Istio's table was updated for it (istio/istio#61478): `/admin`.
_ENVOY_DOT_DOT_PARAM = {"/..;/admin": "/admin"}
NOT_NORMALIZED = tuple((p, _ENVOY_DOT_DOT_PARAM.get(p, p)) for p in _NOT_NORMALIZED)


def _decoded_by_envoy(byte: int) -> bool:
    """Istio's supportedPercentEncode: RFC 3986 unreserved characters (which normalize_path decodes)
    and the slashes DECODE_AND_MERGE_SLASHES unescapes; every other escape is kept as sent."""
    c = chr(byte)
    return c.isascii() and (c.isalnum() or c in "-._~/\\")


def _percent_encoded() -> tuple[Expect, ...]:
    """`/admin%01` .. `/admin%ff` (lowercase hex, as Istio sends them); %00 is the Invalid case."""
    out = []
    for byte in range(1, 0x100):
        sent = f"/admin%{byte:02x}"
        seen = unquote(sent).replace("\\", "/") if _decoded_by_envoy(byte) else sent
        out.append((sent, seen))
    return tuple(out)


CASES: dict[str, tuple[str, tuple[Expect, ...]]] = {
    "None": ("NONE", NONE),
    "Base": ("BASE", BASE),
    "MergeSlashes": ("MERGE_SLASHES", MERGE_SLASHES),
    "DecodeAndMergeSlashes": ("DECODE_AND_MERGE_SLASHES", DECODE_AND_MERGE_SLASHES),
    "NotNormalized": ("DECODE_AND_MERGE_SLASHES", NOT_NORMALIZED),
    "PercentEncoded": ("DECODE_AND_MERGE_SLASHES", _percent_encoded()),
    "Invalid": ("DECODE_AND_MERGE_SLASHES", (("/admin%00", BAD_REQUEST),)),
}
