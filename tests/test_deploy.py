"""The container image and Kubernetes manifests under deploy/: valid against Kubernetes'
own schemas (offline), and naming only settings, routes and extras that exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from turnout.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
KUBERNETES = "1.30.0"
SETTINGS = {f"TURNOUT_{name.upper()}" for name in Settings.model_fields} | {"TURNOUT_LOG_LEVEL"}
"""Every TURNOUT_* variable turnout reads (the log level is read before settings are)."""


def documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents() if doc["kind"] == kind]


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_valid_for_kubernetes(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_manifests_name_only_settings_turnout_has() -> None:
    names = set()
    for doc in of_kind("ConfigMap") + of_kind("Secret"):
        names |= set(doc.get("data", {})) | set(doc.get("stringData", {}))
    for deployment in of_kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            names |= {e["name"] for e in container.get("env", [])}
    unknown = {n for n in names if n.startswith("TURNOUT_")} - SETTINGS
    assert not unknown, f"not turnout settings: {sorted(unknown)}"
    assert {"TURNOUT_DATABASE_URL", "TURNOUT_ADMIN_TOKEN", "TURNOUT_ARTIFACT_ROOT"} <= names


def test_nodes_are_probed_on_the_health_routes_and_drain_before_they_stop() -> None:
    (deployment,) = of_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8700, "grpc": 8701}
    (config,) = of_kind("ConfigMap")
    grace_ms = int(config["data"]["TURNOUT_SHUTDOWN_GRACE_MS"])
    assert pod["terminationGracePeriodSeconds"] * 1000 > grace_ms
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert of_kind("PodDisruptionBudget")
    # every node shares the log through the object store, beside the artifacts
    artifacts = config["data"]["TURNOUT_ARTIFACT_ROOT"]
    assert config["data"]["TURNOUT_LOG_DIR"] == f"{artifacts}/log"
    assert not of_kind("PersistentVolumeClaim")  # so no shared volume is needed


def test_the_image_installs_extras_the_package_declares_and_serves() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    extras = re.search(r"pip install [^\n]*'\.\[([a-z0-9,]+)\]'", dockerfile)
    assert extras is not None
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(extras.group(1).split(",")) <= set(declared)
    assert 'CMD ["turnout", "serve"]' in dockerfile
    assert "EXPOSE 8700 8701" in dockerfile
