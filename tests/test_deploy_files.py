"""The deployment files hang together: compose services, Kubernetes manifests, the Grafana dashboard and the
Prometheus rules refer only to things that exist (services, ports, settings, metric series in the code).
No Docker engine or cluster here, so these are structural checks."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.settings import PROJECT_ROOT, Settings
from worker import ROLES

DEPLOY = PROJECT_ROOT / "deploy"
SETTINGS = {name.upper() for name in Settings.model_fields}
METRIC = re.compile(r"\bchatnation_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metrics_in_code() -> set[str]:
    names: set[str] = set()
    for path in (PROJECT_ROOT / "engine").rglob("*.py"):
        names.update(re.findall(r"[\"'](chatnation_[a-z0-9_]+)[\"']", path.read_text()))
    return names


def series_base(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def unknown_metrics(exprs: list[str]) -> set[str]:
    known = metrics_in_code()
    used = {m for e in exprs for m in METRIC.findall(e)}
    return {m for m in used if m not in known and series_base(m) not in known}


# ----------------------------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text())


def ours(service: dict[str, Any]) -> bool:
    return "build" in service


def test_compose_services_have_an_image_and_health_checks(compose) -> None:  # type: ignore[no-untyped-def]
    services = compose["services"]
    assert {
        "postgres",
        "rabbitmq",
        "migrate",
        "gateway",
        "inbound",
        "relay",
        "sender",
        "whatsapp-sim",
        "mpesa-sim",
        "prometheus",
        "grafana",
    } <= set(services)
    assert services["postgres"]["image"] == "pgvector/pgvector:pg16"
    # the version `make compat` tests (scripts/rabbitmq_compat.sh's forky)
    assert services["rabbitmq"]["image"] == "rabbitmq:4.3-management"
    assert services["inbound"]["deploy"]["replicas"] == 2
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if name != "migrate":  # a one-shot job: its exit status is its health
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert services["migrate"]["restart"] == "no"


def test_compose_dependencies_exist_and_wait_for_health(compose) -> None:  # type: ignore[no-untyped-def]
    services = compose["services"]
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], (
                    f"{name} waits for {target}, which has no health check"
                )
            if rule["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no"


def console_scripts() -> set[str]:
    import tomllib

    return set(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"])


def check_command(command: list[str]) -> None:
    """A command of the image: one of the package's console scripts (a worker with a real role), or a module."""
    assert command[0] in console_scripts() or command[:2] == ["python", "-m"], command
    if command[0] == "chatnation-worker":
        assert command[command.index("--role") + 1] in ROLES
    if command[0] == "chatnation":
        assert command[1] in {"migrate"}, command


def test_compose_app_services_use_real_settings_and_commands(compose) -> None:  # type: ignore[no-untyped-def]
    for name, service in compose["services"].items():
        if not ours(service):
            continue
        unknown = set(service.get("environment") or {}) - SETTINGS
        assert not unknown, f"{name} sets variables engine/settings.py does not read: {unknown}"
        check_command(service["command"])


def test_compose_mounts_exist(compose) -> None:  # type: ignore[no-untyped-def]
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (PROJECT_ROOT / source).exists(), f"{name} mounts missing {source}"


def test_dockerfile_installs_the_locked_dependencies_and_the_wheel() -> None:
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "pip install --require-hashes -r /tmp/requirements.lock" in text
    assert re.search(r"pip wheel --no-deps --wheel-dir /dist \.", text)
    assert "PYTHONPATH" not in text  # the image runs the installed package, not a copy of the sources
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in shlex.split(copied):
            assert (PROJECT_ROOT / path).exists(), path
    check_command(json.loads(re.findall(r"^CMD (.+)$", text, re.M)[-1]))


def test_dockerignore_keeps_local_state_and_build_output_out_of_the_context() -> None:
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".data", ".git", "build", "*.egg-info", "**/__pycache__"} <= set(ignored)
    copied = {
        p
        for line in re.findall(r"^COPY (?!--from)(.+) \S+$", (PROJECT_ROOT / "Dockerfile").read_text(), re.M)
        for p in shlex.split(line)
    }
    assert not copied & set(ignored), "the Dockerfile copies something .dockerignore leaves out"


# -------------------------------------------------------------------------------------------- kubernetes


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def name_of(doc: dict[str, Any]) -> str:
    return str(doc["metadata"].get("name") or doc["metadata"]["generateName"])


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {name_of(d): d for d in manifests if d["kind"] == kind}


NOT_APPLIED = {"kustomization.yaml", "secret.example.yaml", "migrate-job.yaml"}  # see kustomization.yaml


def test_k8s_manifests_are_objects_in_the_namespace(manifests) -> None:  # type: ignore[no-untyped-def]
    kinds = {d["kind"] for d in manifests}
    assert {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "ScaledObject",
        "PodDisruptionBudget",
    } <= kinds
    for doc in manifests:
        assert doc["apiVersion"] and doc["kind"] and name_of(doc)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "chatnation", name_of(doc)
    listed = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        p.name for p in (DEPLOY / "k8s").glob("*.yaml") if p.name not in NOT_APPLIED
    )


def test_k8s_apply_never_overwrites_the_secret_nor_the_replicas_keda_sets_and_can_be_repeated() -> None:
    listed = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"]
    applied = [d for name in listed for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]
    assert not [d for d in applied if d["kind"] == "Secret"], "the example Secret would replace the real one"
    scaled = {d["spec"]["scaleTargetRef"]["name"] for d in applied if d["kind"] == "ScaledObject"}
    for deployment in (d for d in applied if d["kind"] == "Deployment"):
        if deployment["metadata"]["name"] in scaled:
            assert "replicas" not in deployment["spec"], "each apply would reset the count KEDA chose"
    assert not [d for d in applied if d["kind"] == "Job"], "a Job's pod template cannot be applied again"
    [job] = yaml.safe_load_all((DEPLOY / "k8s" / "migrate-job.yaml").read_text())
    assert job["kind"] == "Job" and "name" not in job["metadata"] and job["metadata"]["generateName"]
    check_command(job["spec"]["template"]["spec"]["containers"][0]["command"])


def test_k8s_deployments_probe_named_ports_and_read_existing_config(manifests) -> None:  # type: ignore[no-untyped-def]
    configmaps, secrets = by_kind(manifests, "ConfigMap"), by_kind(manifests, "Secret")
    deployments = by_kind(manifests, "Deployment")
    assert {"chatnation-gateway", "chatnation-inbound", "chatnation-relay", "chatnation-sender"} <= set(
        deployments
    )
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        for container in spec["template"]["spec"]["containers"]:
            check_command(container["command"])
            ports = {p["name"] for p in container["ports"]}
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["port"] in ports, f"{name} {probe}"
            for source in container["envFrom"]:
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps
                else:
                    assert source["secretRef"]["name"] in secrets
    for doc in [*configmaps.values(), *secrets.values()]:
        keys = set(doc.get("data") or {}) | set(doc.get("stringData") or {})
        assert keys <= SETTINGS, f"{doc['metadata']['name']}: not settings: {keys - SETTINGS}"


def test_k8s_scaling_and_disruption_budgets_target_real_deployments(manifests) -> None:  # type: ignore[no-untyped-def]
    deployments = by_kind(manifests, "Deployment")
    config = by_kind(manifests, "ConfigMap")["chatnation-config"]["data"]
    [scaled] = by_kind(manifests, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == "chatnation-inbound"
    assert scaled["spec"]["maxReplicaCount"] <= int(config["INBOUND_SHARDS"])  # more would only stand by
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "rabbitmq"
    assert re.fullmatch(trigger["metadata"]["queueName"], f"{config['BROKER_PREFIX']}.inbound.007")
    auth = by_kind(manifests, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    secret = by_kind(manifests, "Secret")[auth["spec"]["secretTargetRef"][0]["name"]]
    assert auth["spec"]["secretTargetRef"][0]["key"] in secret["stringData"]
    for pdb in by_kind(manifests, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(
            selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
            for d in deployments.values()
        ), pdb["metadata"]["name"]


# ----------------------------------------------------------------------------------- grafana, prometheus


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "chatnation.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_shows_the_engine_series_and_only_existing_ones() -> None:
    exprs = dashboard_exprs()
    assert not unknown_metrics(exprs)
    used = {series_base(m) for e in exprs for m in METRIC.findall(e)}
    assert {
        "chatnation_queue_messages",
        "chatnation_queue_consumers",
        "chatnation_worker_processing_seconds",
        "chatnation_worker_events_total",
        "chatnation_sender_results_total",
        "chatnation_gateway_requests_total",
        "chatnation_gateway_publish_seconds",
        "chatnation_wallet_below_threshold",
    } <= used
    provisioned = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/chatnation.yml").read_text())
    assert provisioned["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [r for group in rules["groups"] for r in group["rules"]]


def test_prometheus_rules_parse_and_cover_the_alerts() -> None:
    rules = alert_rules()
    for rule in rules:
        assert (
            rule["alert"] and rule["expr"] and rule["labels"]["severity"] and rule["annotations"]["summary"]
        )
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
    assert not unknown_metrics([r["expr"] for r in rules])
    assert {
        "ChatnationQueueGrowing",
        "ChatnationMessagesParked",
        "ChatnationSenderErrorRate",
        "ChatnationWalletLow",
    } <= {r["alert"] for r in rules}
    growing = next(r for r in rules if r["alert"] == "ChatnationQueueGrowing")
    assert growing["for"] == "5m"
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert [Path(f).name for f in config["rule_files"]] == ["alerts.yml"]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"gateway", "workers"} <= jobs


def test_the_metric_check_catches_a_misspelt_series() -> None:
    assert unknown_metrics(["rate(chatnation_worker_event_total[5m])"]) == {"chatnation_worker_event_total"}
    assert not unknown_metrics(
        ["histogram_quantile(0.5, rate(chatnation_worker_processing_seconds_bucket[5m]))"]
    )
