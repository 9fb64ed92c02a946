"""The deployment files checked by the real tools: promtool (Debian's prometheus package, unpacked by
scripts/ensure_promtool.sh) checks the rules and runs their unit tests; kubernetes-validate checks the rendered
kustomization against the Kubernetes schemas; KEDA's objects are checked against KEDA's CRD schema (the
cloudcoil models generated from it); Docker Compose v2's `config` checks compose.yaml (the docker plugin, or the
docker-compose v2 binary scripts/ensure_compose.sh unpacks from Debian's package). A tool that cannot be had
here skips its test and says why."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.settings import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


@cache
def promtool() -> str:
    found = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts" / "ensure_promtool.sh")], capture_output=True, text=True
    ).stdout.strip()
    if not found:
        pytest.skip(
            "promtool: neither on PATH nor obtainable from Debian's prometheus package (apt-get download)"
        )
    return found


def run(*args: str | Path, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_alert_rules() -> None:
    done = run(promtool(), "check", "rules", DEPLOY / "prometheus" / "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alerts_fire_as_their_unit_tests_say() -> None:
    done = run(promtool(), "test", "rules", "alerts.test.yml", cwd=DEPLOY / "prometheus")
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_promtool_accepts_the_prometheus_configuration(tmp_path: Path) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["rule_files"] = [str(DEPLOY / "prometheus" / Path(f).name) for f in config["rule_files"]]
    if "+ds" in run(promtool(), "--version").stdout:  # the Debian build (version 2.42.0+ds)
        # Debian builds Prometheus without Kubernetes service discovery (it would need the Kubernetes client
        # libraries): its promtool refuses kubernetes_sd_configs, so that one job is checked by the other tests.
        config["scrape_configs"] = [j for j in config["scrape_configs"] if "kubernetes_sd_configs" not in j]
    local = tmp_path / "prometheus.yml"  # its rule files as mounted in the container, found here instead
    local.write_text(yaml.safe_dump(config))
    done = run(promtool(), "check", "config", local)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_broken_rule_is_caught(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: max(chatnation_queue_messages\n"
    )
    assert run(promtool(), "check", "rules", broken).returncode != 0


# -------------------------------------------------------------------------------------------- kubernetes


@cache
def rendered() -> tuple[dict[str, Any], ...]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: it renders the kustomization (kubectl kustomize)")
    done = run("kubectl", "kustomize", DEPLOY / "k8s")
    assert done.returncode == 0, done.stderr
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def test_the_rendered_kustomization_is_valid_kubernetes() -> None:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    checked = 0
    for doc in rendered():
        if doc["kind"] in KEDA_KINDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any unknown or wrong field
        checked += 1
    assert checked >= 8


def test_kubernetes_validate_catches_a_misspelt_field() -> None:
    import kubernetes_validate

    deployment = next(d for d in rendered() if d["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def unknown_keys(given: Any, parsed: Any, where: str = "") -> list[str]:
    """Keys of ``given`` that the schema model dropped (it ignores unknown fields instead of refusing them)."""
    if isinstance(given, dict) and isinstance(parsed, dict):
        found = [f"{where}.{k}" for k in given if k not in parsed]
        for key in given.keys() & parsed.keys():
            found += unknown_keys(given[key], parsed[key], f"{where}.{key}")
        return found
    if isinstance(given, list) and isinstance(parsed, list):
        return [k for g, p in zip(given, parsed, strict=True) for k in unknown_keys(g, p, where + "[]")]
    return []


def keda_check(doc: dict[str, Any]) -> list[str]:
    from cloudcoil.models.keda import v1alpha1

    model = {"ScaledObject": v1alpha1.ScaledObject, "TriggerAuthentication": v1alpha1.TriggerAuthentication}
    parsed = model[doc["kind"]].model_validate(doc)  # types, required fields, enums
    return unknown_keys(doc, parsed.model_dump(by_alias=True, exclude_unset=True, mode="json"))


def test_the_keda_objects_follow_kedas_schema() -> None:
    docs = [d for d in rendered() if d["kind"] in KEDA_KINDS]
    assert {d["kind"] for d in docs} == KEDA_KINDS
    for doc in docs:
        assert keda_check(doc) == [], doc["metadata"]["name"]


def test_the_keda_check_catches_a_misspelt_field() -> None:
    scaled = next(d for d in rendered() if d["kind"] == "ScaledObject")
    assert keda_check({**scaled, "spec": {**scaled["spec"], "minReplicas": 1}}) == [".spec.minReplicas"]


# ----------------------------------------------------------------------------------------------- compose


@cache
def compose() -> list[str]:
    found = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts" / "ensure_compose.sh")], capture_output=True, text=True
    ).stdout.split()
    if not found:
        pytest.skip(
            "Docker Compose v2: neither the docker plugin nor a docker-compose v2 from Debian's package here"
        )
    return found


def test_docker_compose_accepts_compose_yaml() -> None:
    done = run(*compose(), "-f", PROJECT_ROOT / "compose.yaml", "config", "--quiet")
    assert done.returncode == 0, done.stderr


def test_docker_compose_catches_a_broken_file(tmp_path: Path) -> None:
    broken = yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text())
    broken["services"]["gateway"]["depends_on"] = {"no-such-service": {"condition": "service_healthy"}}
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    done = run(*compose(), "-f", tmp_path / "compose.yaml", "config", "--quiet", cwd=tmp_path)
    assert done.returncode != 0 and "no-such-service" in done.stderr
