"""`isthmus analyze`: formats, thresholds, exit codes, inputs (DESIGN §4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from isthmus.cli.main import cli

TESTDATA = Path(__file__).parent / "testdata"
BOOKINFO = Path(__file__).resolve().parents[3] / "examples" / "bookinfo"

BAD_HOST = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews2
"""

UNNAMED_PORT = """\
apiVersion: v1
kind: Service
metadata: {name: metrics, namespace: monitoring}
spec:
  selector: {app: metrics}
  ports: [{port: 9100}]
"""


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["analyze", *args], input=input)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_text_output_and_failure_exit(tmp_path):
    f = write(tmp_path, "vs.yaml", BAD_HOST)
    result = invoke(str(f))
    assert result.exit_code == 79
    assert (
        f'Error [IST0101] (VirtualService default/reviews {f}:10) Referenced host not found: "reviews2"'
        in (result.output)
    )
    assert "Analyzers found issues" in result.output


def test_clean_input_exits_zero(tmp_path):
    result = invoke(str(BOOKINFO))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("\u2714 No validation issues found")


def test_json_shape(tmp_path):
    f = write(tmp_path, "vs.yaml", BAD_HOST)
    result = invoke("-o", "json", str(f))
    assert result.exit_code == 79
    (entry,) = json.loads(result.stdout)
    assert entry == {
        "code": "IST0101",
        "name": "ReferencedResourceNotFound",
        "level": "Error",
        "resource": "VirtualService default/reviews",
        "origin": f"{f}:10",
        "message": 'Referenced host not found: "reviews2"',
    }


def test_yaml_output(tmp_path):
    f = write(tmp_path, "svc.yaml", UNNAMED_PORT)
    result = invoke("-o", "yaml", str(f))
    assert result.exit_code == 0  # Info is below the default failure threshold
    (entry,) = yaml.safe_load(result.stdout)
    assert entry["code"] == "IST0118" and entry["level"] == "Info"
    assert entry["resource"] == "Service monitoring/metrics"


def test_empty_json_is_an_empty_list(tmp_path):
    result = invoke("-o", "json", str(BOOKINFO))
    assert result.exit_code == 0 and json.loads(result.stdout) == []


@pytest.mark.parametrize(("threshold", "code"), [("Error", 0), ("Warning", 0), ("Info", 79), ("info", 79)])
def test_failure_threshold(tmp_path, threshold, code):
    f = write(tmp_path, "svc.yaml", UNNAMED_PORT)
    assert invoke("--failure-threshold", threshold, str(f)).exit_code == code


def test_output_threshold_hides_less_severe(tmp_path):
    f = write(tmp_path, "svc.yaml", UNNAMED_PORT)
    result = invoke("--output-threshold", "Warning", "-o", "json", str(f))
    assert json.loads(result.stdout) == []
    text = invoke("--output-threshold", "Warning", str(f))
    assert "No validation issues" in text.output


def test_stdin(tmp_path):
    result = invoke("-o", "json", "-", input=BAD_HOST)
    assert result.exit_code == 79
    assert json.loads(result.stdout)[0]["origin"] == "<stdin>:10"


def test_kubernetes_list_and_default_namespace():
    result = invoke("-o", "json", str(TESTDATA / "analyze-list-type.yaml"))
    resources = {m["resource"] for m in json.loads(result.stdout) if m["code"] == "IST0145"}
    assert resources == {"Gateway default/alpha", "Gateway default/alpha-l", "Gateway default/beta-l"}


def test_directories_and_recursion(tmp_path):
    write(tmp_path, "top.yaml", UNNAMED_PORT)
    write(tmp_path, "nested/vs.yaml", BAD_HOST)
    write(tmp_path, "notes.txt", "not config")
    flat = invoke("-o", "json", str(tmp_path))
    assert {m["code"] for m in json.loads(flat.stdout)} == {"IST0118"} and flat.exit_code == 0
    deep = invoke("-o", "json", "-R", str(tmp_path))
    assert {m["code"] for m in json.loads(deep.stdout)} == {"IST0118", "IST0101"} and deep.exit_code == 79


def test_several_paths_and_redefinition(tmp_path):
    a = write(tmp_path, "a.yaml", BAD_HOST)
    b = write(tmp_path, "b.yaml", BAD_HOST.replace("reviews2", "reviews3"))
    result = invoke("-o", "json", str(a), str(b))
    found = {(m["code"], m["origin"], m["message"]) for m in json.loads(result.stdout)}
    # b.yaml's definition wins; the redefinition is noted.
    assert found == {
        ("IST0101", f"{b}:10", 'Referenced host not found: "reviews3"'),
        (
            "IST0133",
            f"{b}:1",
            f"Schema validation warning: defined more than once (also at {a}:1); the last definition wins",
        ),
    }


def test_unmodelled_kinds_are_skipped_with_info(tmp_path):
    f = write(tmp_path, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n")
    result = invoke("-o", "json", str(f))
    assert result.exit_code == 0
    (entry,) = json.loads(result.stdout)
    assert entry["code"] == "ISM0006" and entry["level"] == "Info"


def test_schema_errors_are_ist0106(tmp_path):
    f = write(
        tmp_path,
        "dr.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: r}\nspec: {host: reviews, subsets: [{name: v1}, {name: v1}]}\n",
    )
    result = invoke("-o", "json", str(f))
    assert result.exit_code == 79
    assert "IST0106" in {m["code"] for m in json.loads(result.stdout)}


@pytest.mark.parametrize(
    "text",
    ["a: [\n", "just a string\n", "apiVersion: v1\nmetadata: {name: x}\n"],
    ids=["yaml syntax", "not a mapping", "no kind"],
)
def test_unparseable_input_exits_65(tmp_path, text):
    f = write(tmp_path, "bad.yaml", text)
    result = invoke(str(f))
    assert result.exit_code == 65, result.output
    assert "cannot be parsed" in result.output


def test_unreadable_file_exits_65(tmp_path):
    f = tmp_path / "bin.yaml"
    f.write_bytes(b"\xff\xfe\x00binary")
    assert invoke(str(f)).exit_code == 65


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--bogus", "x"],
        ["-o", "xml", "x.yaml"],
        ["--failure-threshold", "Fatal", "x.yaml"],
        ["/no/such/path"],
    ],
    ids=["no path", "unknown option", "bad format", "bad level", "missing path"],
)
def test_bad_usage_exits_64(args):
    assert invoke(*args).exit_code == 64


def test_file_with_another_extension_is_skipped(tmp_path):
    """istioctl analyze (gatherFiles; tests/integration/pilot analyze_test.go TestInvalidFileError): a
    file named with an extension it does not read is skipped with a note, not parsed."""
    f = write(tmp_path, "invalid.md", "# not config: {{ nor YAML\n")
    result = invoke(str(f))
    assert result.exit_code == 0, result.output
    assert f"Skipping file {f}, recognized file extensions are: [.json .yaml .yml]" in result.stderr
    assert json.loads(invoke("-o", "json", str(f)).stdout) == []
