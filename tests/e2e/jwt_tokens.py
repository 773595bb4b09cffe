"""Tokens with the claims of Istio's tests/common/jwt tokens, signed with a key made per run.

Istio's integration tests use tokens signed by a private key kept in Istio's repository and a JWKS
served from GitHub; here one RSA key per test run signs tokens with the same claims, and `jwks` (the
public half) is inlined into RequestAuthentication `jwks` (or written to a file for a `file://`
jwksUri), so no test reaches the network.
"""

from __future__ import annotations

import base64
import json
from typing import Any

# Istio's tokens: issued 2019-07-03 (1562182722), valid until 2119; the nested-claims ones were made in
# 2020 (1604008018); TokenExpired expired in 2019.
IAT = 1562182722
EXP = 4715782722
NESTED_IAT = 1604008018
NESTED_EXP = 3537391104
ISSUER_1 = {"iss": "test-issuer-1@istio.io", "sub": "sub-1"}
ISSUER_2 = {"iss": "test-issuer-2@istio.io", "sub": "sub-2"}
_NESTED_VALUES = {"key1": ["valueA", "valueB"]}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def payload_of(token: str) -> str:
    """The token's payload segment: what `outputPayloadToHeader` carries (Istio's `payload1`)."""
    return token.split(".")[1]


def istio_tokens() -> dict[str, str]:
    """Istio's tokens by their Go names, and `jwks`: the key set that verifies every one of them."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    nums = key.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "kid": "istio-test",
        "alg": "RS256",
        "n": b64url(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")),
        "e": b64url(nums.e.to_bytes(3, "big")),
    }

    def sign(claims: dict[str, Any]) -> str:
        header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "istio-test"}).encode())
        payload = b64url(json.dumps({"exp": EXP, "iat": IAT, **claims}).encode())
        signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{payload}.{b64url(signature)}"

    nested = {"iat": NESTED_IAT, "exp": NESTED_EXP, **ISSUER_1}
    return {
        "jwks": json.dumps({"keys": [jwk]}),
        "TokenIssuer1": sign({**ISSUER_1, "groups": ["group-1"]}),
        "TokenIssuer2": sign({**ISSUER_2, "groups": ["group-2"]}),
        "TokenExpired": sign({**ISSUER_1, "groups": ["group-1"], "iat": 1562182796, "exp": 1562182856}),
        "TokenIssuer2WithSpaceDelimitedScope": sign({**ISSUER_2, "permission": "read write"}),
        "TokenIssuer1WithNestedClaims1": sign(
            {**nested, "nested": {**_NESTED_VALUES, "nested-2": _NESTED_VALUES}}
        ),
        "TokenIssuer1WithNestedClaims2": sign(
            {**nested, "nested": {"key2": "valueC", "nested-2": {"key2": "valueC"}}}
        ),
        "TokenIssuer1WithAud": sign({**ISSUER_1, "aud": "foo"}),
        "TokenIssuer1WithAzp": sign({**ISSUER_1, "azp": "bar"}),
    }
