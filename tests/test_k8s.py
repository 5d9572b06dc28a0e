"""deploy/k8s validates offline and runs the service as the code expects (no cluster here): every manifest
against the Kubernetes schemas kubernetes-validate bundles, the KEDA ScaledObjects against KEDA's own
CRD schema kept in deploy/k8s/schemas/, and the checks that matter: the commands `make run` starts, the
probes' paths, a grace period longer than the web drain, one worker Deployment per queue, KEDA reading
the queues' Redis lists (key prefix included), an HPA on CPU for the web, disruption budgets, secrets
from a Secret."""

from __future__ import annotations

import copy
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml

from contract.tasks import TASK_QUEUES
from scripts.stack import web_command, worker_command

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
KEDA_CRD = K8S / "schemas" / "keda.sh_scaledobjects.yaml"
KUBERNETES_VERSION = "1.33"  # the oldest Kubernetes these manifests are meant for
SECRET = "digits"  # the Secret every secret value comes from (docs/operations.md: kubectl create secret)
SECRET_VARIABLES = {"DJANGO_SECRET_KEY", "DATABASE_URL", "POSTGRES_PASSWORD"}


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [{**doc, "_file": path.name} for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def without_file(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_file"}


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests() if doc["kind"] == kind}


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    pod = workload["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def config() -> dict[str, str]:
    return of_kind("ConfigMap")["digits-config"]["data"]


def worker_deployments() -> dict[str, dict[str, Any]]:
    """Queue -> the Deployment whose workers consume it."""
    found = {}
    for deployment in of_kind("Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        if container["command"][:4] == ["celery", "-A", "digitsite", "worker"]:
            found[container["command"][container["command"].index("-Q") + 1]] = deployment
    return found


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No connection can be made: validation must need nothing but the files here and the installed packages."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access during validation: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_every_manifest_validates_against_the_kubernetes_schemas_offline(offline: None) -> None:
    docs = manifests()
    kinds = {doc["kind"] for doc in docs}
    assert {
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "StatefulSet",
        "Job",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ScaledObject",
    } <= kinds
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # not a Kubernetes kind: KEDA's schema, below
        # strict: an unknown field (a typo) fails, as `kubectl apply` (server-side field validation) would
        kubernetes_validate.validate(without_file(doc), KUBERNETES_VERSION, strict=True)
    # the kept KEDA CRD is itself a valid CustomResourceDefinition
    (crd,) = [d for d in yaml.safe_load_all(KEDA_CRD.read_text()) if d]
    kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)


def test_the_validator_catches_a_broken_manifest(offline: None) -> None:
    web = copy.deepcopy(without_file(of_kind("Deployment")["web"]))
    web["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, KUBERNETES_VERSION, strict=True)


def _strict(schema: Any) -> Any:
    """KEDA's openAPIV3Schema with unknown fields refused (the API server's strict field validation):
    every object that lists its properties and keeps no unknown fields gets additionalProperties false."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def keda_validator() -> jsonschema.Validator:
    (crd,) = [d for d in yaml.safe_load_all(KEDA_CRD.read_text()) if d]
    assert crd["spec"]["names"]["kind"] == "ScaledObject" and crd["spec"]["group"] == "keda.sh"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_scaled_objects_validate_against_kedas_crd_schema(offline: None) -> None:
    validator = keda_validator()
    scaled = of_kind("ScaledObject")
    assert scaled
    for doc in scaled.values():
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(without_file(doc))]
        assert errors == [], doc["metadata"]["name"]
    # and the schema is no formality: a typo and a missing trigger list are refused
    broken = copy.deepcopy(without_file(next(iter(scaled.values()))))
    broken["spec"]["minReplicas"] = broken["spec"].pop("minReplicaCount")
    assert not validator.is_valid(broken)
    del broken["spec"]["triggers"]
    assert not validator.is_valid(broken)


def test_keda_scales_each_worker_deployment_on_its_queues_redis_list_prefix_included() -> None:
    redis_url = urlparse(config()["REDIS_URL"])
    prefix = config()["REDIS_PREFIX"]
    assert prefix, "a prefix makes the check below meaningful (and lets deployments share a Redis)"
    workers = worker_deployments()
    scaled = of_kind("ScaledObject")
    targets = {doc["spec"]["scaleTargetRef"]["name"]: doc for doc in scaled.values()}
    assert set(targets) == {d["metadata"]["name"] for d in workers.values()}
    for queue, deployment in workers.items():
        (trigger,) = targets[deployment["metadata"]["name"]]["spec"]["triggers"]
        assert trigger["type"] == "redis"
        meta = trigger["metadata"]
        assert meta["listName"] == f"{prefix}{queue}"  # the Redis list Celery's messages wait in
        assert meta["address"] == f"{redis_url.hostname}:{redis_url.port}"  # the Redis the service uses
        assert meta["databaseIndex"] == (redis_url.path.lstrip("/") or "0")
        assert int(meta["listLength"]) > 0
        assert "replicas" not in deployment["spec"], "KEDA owns the count: a fixed one fights it on every apply"
        assert targets[deployment["metadata"]["name"]]["spec"]["minReplicaCount"] >= 1  # live path never at zero
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind("HorizontalPodAutoscaler").values()}
    assert not hpa_targets & set(targets), "KEDA makes the workers' HPAs; a second one would fight it"


def test_one_worker_deployment_per_queue_running_the_make_run_command() -> None:
    workers = worker_deployments()
    assert set(workers) == set(TASK_QUEUES.values())
    for queue, deployment in workers.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["celery", *worker_command(queue)[1:]]
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 10  # warm shutdown


def test_web_runs_the_web_server_behind_a_service_with_readiness_liveness_and_a_grace_period_beyond_the_drain() -> None:
    from django.urls import resolve

    from edge import serve

    web = of_kind("Deployment")["web"]
    pod = web["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == web_command("0.0.0.0", 8000)
    port = container["ports"][0]
    assert port["containerPort"] == 8000
    ready, alive = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (ready["path"], alive["path"]) == ("/healthz", "/livez")
    for probe in (ready, alive):
        assert probe["port"] in (port["name"], 8000)
        assert resolve(probe["path"]).url_name == probe["path"].lstrip("/")
        # Django answers 400 to a Host it does not allow; the kubelet sends the pod's IP unless told
        (host,) = [h["value"] for h in probe["httpHeaders"] if h["name"] == "Host"]
        assert host in config()["DJANGO_ALLOWED_HOSTS"].split(",")
    # SIGTERM comes after the preStop pause; the drain (WEB_DRAIN_S, edge/serve.py) must end before SIGKILL
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    drain_s = float(env.get("WEB_DRAIN_S") or config().get("WEB_DRAIN_S") or serve.DRAIN_S)
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    pause_s = float(pre_stop[1]) if pre_stop[0] == "sleep" else 0.0
    assert pod["terminationGracePeriodSeconds"] > pause_s + drain_s + 2  # + the close frames' wait
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (service,) = [s for s in of_kind("Service").values() if s["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]]
    assert service["spec"]["ports"][0]["targetPort"] in (port["name"], 8000)
    assert "replicas" not in web["spec"], "the HPA owns the count"


def test_migrations_run_once_in_a_job_that_web_pods_wait_for() -> None:
    job = of_kind("Job")["migrate"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "manage.py", "migrate", "--noinput"]
    (init,) = of_kind("Deployment")["web"]["spec"]["template"]["spec"]["initContainers"]
    assert "manage.py migrate --check" in " ".join(init["command"])


def test_the_web_has_a_cpu_autoscaler_and_requests_cpu_for_it() -> None:
    (hpa,) = of_kind("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] >= 2
    (container,) = of_kind("Deployment")["web"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"]  # utilization is measured against the request


def test_every_deployment_has_a_disruption_budget_that_keeps_one_pod() -> None:
    budgets = of_kind("PodDisruptionBudget").values()
    for name, deployment in of_kind("Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, name
        spec = matching[0]["spec"]
        assert spec.get("minAvailable", 0) >= 1 or spec.get("maxUnavailable") == 1, name


def test_redis_and_postgres_run_as_statefulsets_behind_their_services() -> None:
    services = of_kind("Service")
    sets = of_kind("StatefulSet")
    assert set(sets) == {"redis", "postgres"}
    for statefulset in sets.values():
        service = services[statefulset["spec"]["serviceName"]]
        assert service["spec"]["selector"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    assert "volumeClaimTemplates" in sets["postgres"]["spec"]  # the drawings outlive the pod
    redis_url = urlparse(config()["REDIS_URL"])
    assert redis_url.hostname == f"redis.{sets['redis']['metadata']['namespace']}.svc.cluster.local"


def test_secrets_come_from_the_secret_and_never_from_the_files() -> None:
    assert not of_kind("Secret"), "a Secret with its values in the repository"
    assert not SECRET_VARIABLES & set(config())
    workloads = [*of_kind("Deployment").values(), *of_kind("StatefulSet").values(), *of_kind("Job").values()]
    app = [c for w in workloads for c in containers(w) if c["image"].startswith("digitsite")]
    assert {c["image"] for c in app} == {"digitsite:latest"}  # one image for every app container
    for container in app:
        env = {e["name"]: e for e in container.get("env", [])}
        for name in ("DJANGO_SECRET_KEY", "DATABASE_URL"):
            assert env[name]["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": name}, container["name"]
    for workload in workloads:
        for container in containers(workload):
            for variable in container.get("env", []):
                if variable["name"] in SECRET_VARIABLES:
                    assert "value" not in variable and variable["valueFrom"]["secretKeyRef"]["name"] == SECRET
