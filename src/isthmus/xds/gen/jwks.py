"""Would Envoy load this key set? Envoy's `Jwks::createFrom(..., JWKS)` (source/common/jwt/jwks.cc), in Python.

Envoy's jwt_authn filter parses a provider's `local_jwks` when the filter config is loaded, and rejects
the whole update (a NACK of the ECDS resource, so every RequestAuthentication on the proxy stops
applying) unless the set holds at least one usable key. istiod's validation (`jwk.Parse`) is looser: it
accepts `{"keys": []}`, a single JWK without the `keys` wrapper, keys of unknown types, RSA keys with an
exponent other than 3 or 65537, EC points off their curve, and so on; istiod inlines such a set as it
is and the proxy NACKs. The generator uses `local_jwks_problem` to catch those sets before Envoy does.

The checks follow jwks.cc key type by key type (the same status messages): a key that fails is
skipped, and the set is usable when one key is left. Certificates (the x509 form: an object of PEM
certificates by kid) are parsed with `cryptography`, as are EC points (on-curve check).
"""

from __future__ import annotations

import binascii
import functools
import json
import re
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

_X509_PREFIX = "-----BEGIN CERTIFICATE-----\n"
_X509_SUFFIX = "\n-----END CERTIFICATE-----\n"
_WEB_SAFE = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")
_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_EC_ALGS = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_RSA_MAX_MODULUS_BITS = 16384  # BoringSSL's kMaxModulusBits (RSA_check_key)
_ED25519_KEY_LEN = 32


def _web_safe_b64(s: str) -> bytes | None:
    """absl::WebSafeBase64Unescape: the URL-safe alphabet, padding optional, whitespace skipped; None if
    not decodable."""
    s = "".join(s.split())
    if not _WEB_SAFE.match(s):
        return None
    body = s.rstrip("=")
    if len(body) % 4 == 1:
        return None
    try:
        return binascii.a2b_base64((body + "=" * (-len(body) % 4)).replace("-", "+").replace("_", "/"))
    except binascii.Error:
        return None


def _string(key: dict[str, Any], name: str) -> tuple[str | None, str | None]:
    """StructUtils::GetString: (value, None), or (None, "missing"/"wrong type")."""
    if name not in key:
        return None, "missing"
    value = key[name]
    return (value, None) if isinstance(value, str) else (None, "wrong type")


def _big_int(s: str) -> int | None:
    raw = _web_safe_b64(s)
    return None if raw is None else int.from_bytes(raw, "big")


def _rsa_problem(key: dict[str, Any], alg: str) -> str | None:
    if alg and not alg.startswith(("RS", "PS")):
        return "[alg] is not started with [RS] or [PS] for an RSA key"
    n_str, n_err = _string(key, "n")
    e_str, e_err = _string(key, "e")
    if n_err or e_err or n_str is None or e_str is None:
        return f"RSA key [n] or [e] is {n_err or e_err}"
    n, e = _big_int(n_str), _big_int(e_str)
    # createRsaFromJwk: decodable, e of 3 or 65537 only, then RSA_check_key (odd modulus above e, not
    # larger than BoringSSL allows).
    if n is None or e is None or e not in (3, 65537) or n <= e or n % 2 == 0:
        return "Jwks RSA [n] or [e] field is missing or has a parse error"
    if n.bit_length() > _RSA_MAX_MODULUS_BITS:
        return "Jwks RSA [n] or [e] field is missing or has a parse error"
    return None


def _ec_problem(key: dict[str, Any], alg: str) -> str | None:
    if alg and not alg.startswith("ES"):
        return "[alg] is not started with [ES] for an EC key"
    crv, crv_err = _string(key, "crv")
    if crv_err == "wrong type":
        return "[crv] field is not a string for an EC key"
    crv = crv or ""
    if alg and crv and _EC_ALGS.get(alg) != crv:
        return "[crv] field is not compatible with [alg] for an EC key"
    if not alg and not crv:
        crv = "P-256"
    curve_name = _EC_ALGS.get(alg) or crv
    curve = _CURVES.get(curve_name)
    if curve is None:
        return "[alg] or [crv] is not supported for an EC key"
    x_str, x_err = _string(key, "x")
    y_str, y_err = _string(key, "y")
    if x_err or y_err or x_str is None or y_str is None:
        return f"EC key [x] or [y] is {x_err or y_err}"
    x, y = _big_int(x_str), _big_int(y_str)
    if x is None or y is None:
        return "Jwks EC [x] or [y] field is an invalid Base64."
    try:  # EC_KEY_set_public_key_affine_coordinates: the point must be on the curve
        ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    except ValueError:
        return "Jwks EC [x] and [y] fields have a parse error."
    return None


def _oct_problem(key: dict[str, Any], alg: str) -> str | None:
    if alg and alg not in ("HS256", "HS384", "HS512"):
        return "[alg] is not [HS256], [HS384] or [HS512] for an HMAC key"
    k, err = _string(key, "k")
    if err or k is None:
        return f"HMAC key [k] is {err}"
    if not _web_safe_b64(k):
        return "Jwks Oct key is an invalid Base64"
    return None


def _okp_problem(key: dict[str, Any], alg: str) -> str | None:
    if alg and alg != "EdDSA":
        return "[alg] is not [EdDSA] for an OKP key"
    crv, err = _string(key, "crv")
    if err:
        return f"OKP key [crv] is {err}"
    if crv != "Ed25519":
        return "[crv] is not supported for an OKP key"
    x, err = _string(key, "x")
    if err or x is None:
        return f"OKP key [x] is {err}"
    raw = _web_safe_b64(x)
    if raw is None:
        return "Jwks OKP [x] field is an invalid Base64."
    if len(raw) != _ED25519_KEY_LEN:
        return "Jwks OKP [x] field is wrong length."
    return None


def _key_problem(key: dict[str, Any]) -> str | None:
    """extractJwk: why Envoy would skip this key (None: it is usable)."""
    kty, err = _string(key, "kty")
    if err:
        return f"[kty] is {err} in [keys]"
    alg = key.get("alg") if isinstance(key.get("alg"), str) else ""
    checks = {"RSA": _rsa_problem, "EC": _ec_problem, "oct": _oct_problem, "OKP": _okp_problem}
    check = checks.get(str(kty))
    if check is None:
        return "[kty] is not supported in [keys]"
    return check(key, str(alg))


def _x509_problem(certs: dict[str, Any]) -> str | None:
    """createFromX509: every certificate must parse and hold an RSA key."""
    for pem in certs.values():
        try:
            cert = x509.load_pem_x509_certificate(str(pem).encode())
            public = cert.public_key()
        except ValueError:
            return "Jwks x509 certificate parse error"
        if not isinstance(public, rsa.RSAPublicKey):
            return "Jwks x509 certificate does not hold an RSA public key"
    return None


@functools.lru_cache(maxsize=256)
def local_jwks_problem(text: str) -> str | None:
    """Why Envoy would reject `text` as a jwt_authn provider's `local_jwks`; None when it loads it.
    Cached: the same key sets come back in every snapshot, and checking EC points is not free."""
    try:
        data = json.loads(text)
    except ValueError:
        return "Jwks is an invalid JSON"
    if not isinstance(data, dict):
        return "Jwks is an invalid JSON"
    if "keys" not in data:
        if data and all(
            k and isinstance(v, str) and v.startswith(_X509_PREFIX) and v.endswith(_X509_SUFFIX)
            for k, v in data.items()
        ):
            return _x509_problem(data)
        return "Jwks does not have [keys] field"
    keys = data["keys"]
    if not isinstance(keys, list):
        return "[keys] in Jwks is not an array"
    problems = [_key_problem(k) for k in keys if isinstance(k, dict)]
    if any(problem is None for problem in problems):
        return None
    first = next((problem for problem in problems if problem), None)
    return "Jwks doesn't have any valid public key" + (f" ({first})" if first else "")
