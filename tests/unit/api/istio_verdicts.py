"""Istio's verdict on one resource, the check every ported validation case makes."""

from __future__ import annotations

from isthmus.api.loader import load_text_report


def assert_verdict(
    name: str,
    text: str,
    valid: bool,
    fragment: str | None = None,
    warning: bool | str | None = None,
    *,
    fragment_in_path: bool = False,
) -> None:
    """`text` is valid (no Error) or not, as Istio judges it; an Error contains `fragment` (in its
    message, or with `fragment_in_path` in its field path too: fields the CRD schema marks required are
    reported at the field's path, as the API server does); `warning` True/False: some / no warning, a
    string: a warning containing it, None: not checked (Istio's test does not look)."""
    msgs = load_text_report(text, "t.yaml").messages
    errors = [m for m in msgs if m.level == "Error"]
    warnings = [m for m in msgs if m.level == "Warning"]
    shown = "\n".join(f"{m.level} {m.field}: {m.message}" for m in msgs) or "(none)"
    assert (not errors) == valid, f"{name}: want valid={valid}; got:\n{shown}"
    if fragment:
        assert any(
            fragment in m.message or (fragment_in_path and fragment in (m.field or "")) for m in errors
        ), f"{name}: no error with {fragment!r}; got:\n{shown}"
    if isinstance(warning, str):
        assert any(warning in m.message for m in warnings), f"{name}: no warning {warning!r}; got:\n{shown}"
    elif warning is not None:
        assert bool(warnings) == warning, f"{name}: want warning={warning}; got:\n{shown}"
