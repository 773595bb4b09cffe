"""Access-log lines rendered from ALS entries: Istio's TEXT format, JSON encoding, custom formats."""

from __future__ import annotations

import json

from telemetry_helpers import REVIEWS_CLUSTER, http_entry, tcp_entry

from isthmus.telemetry import accesslog

EXPECTED = (
    '[2023-11-14T22:13:20.123Z] "GET /reviews/0 HTTP/1.1" 200 - via_upstream - "-" 0 178 7 5 "-" "curl/8.0" '
    '"6b4c5a2e-6a0f-4a1e-9b1e-0e1f2a3b4c5d" "reviews:9080" "127.1.0.3:9080" outbound|9080|v2|reviews.default.svc.cluster.local '
    "127.1.0.2:40000 127.1.0.2:15001 127.0.0.1:50000 - default\n"
)


def test_text_line_matches_istios_format() -> None:
    e = http_entry(response_headers={"x-envoy-upstream-service-time": "5"})
    assert accesslog.format_text(e, True) == EXPECTED


def test_original_path_wins_and_missing_values_are_dashes() -> None:
    e = http_entry(
        code=503,
        flags={"upstream_connection_failure": True},
        upstream=None,
        details="upstream_reset_before_response_started{connection_failure}",
    )
    e.request.original_path = "/before/rewrite"
    e.common_properties.upstream_transport_failure_reason = "delayed connect error: 111"
    line = accesslog.format_text(e, True)
    assert line.startswith(
        '[2023-11-14T22:13:20.123Z] "GET /before/rewrite HTTP/1.1" 503 UF upstream_reset_before_response_started{connection_failure} - "delayed connect error: 111" 0 178 7 - '
    )
    assert ' "-" outbound|9080|v2|' in line


def test_tcp_line() -> None:
    e = tcp_entry(sent=12, received=34)
    line = accesslog.format_text(e, False)
    assert line.startswith(
        '[2023-11-14T22:13:20.000Z] "- - -" 0 - - - "-" 34 12 - - "-" "-" "-" "-" "127.1.0.3:3306" outbound|3306||mysql'
    )


def test_json_encoding_uses_istios_keys_and_types() -> None:
    data = json.loads(accesslog.format_json(http_entry(), True))
    assert list(data) == list(accesslog.JSON_LOG_FORMAT)
    assert data["response_code"] == 200 and data["bytes_sent"] == 178 and data["duration"] == 7
    assert data["method"] == "GET" and data["upstream_cluster"] == REVIEWS_CLUSTER
    assert data["x_forwarded_for"] is None and data["upstream_service_time"] is None
    assert data["start_time"] == "2023-11-14T22:13:20.123Z"


def test_custom_formats() -> None:
    e = http_entry()
    assert (
        accesslog.format_entry(e, True, "TEXT", "%REQ(:METHOD)% %RESPONSE_CODE% %UNKNOWN_OP% %REQ(:PATH):4%")
        == "GET 200 - /rev\n"
    )
    custom = json.loads(
        accesslog.format_entry(
            e, True, "JSON", '{"m": "%REQ(:METHOD)%", "c": "%RESPONSE_CODE%", "x": "a %RESPONSE_CODE% b"}'
        )
    )
    assert custom == {"m": "GET", "c": 200, "x": "a 200 b"}
