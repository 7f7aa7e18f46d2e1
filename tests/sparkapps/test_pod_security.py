"""The Pod Security Standards checker (tests/sparkapps/pod_security.py) can fail.

Every rule is shown rejecting a pod that breaks it, at the level the standard
puts it, and a pod that meets "restricted" passes both levels.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.sparkapps.pod_security import Level, RenderedPod, pod_violations, pods_of

Pod = dict[str, Any]


def restricted_pod() -> Pod:
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 185,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "main",
                "ports": [{"containerPort": 8815}],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "tls", "secret": {"secretName": "tls"}},
        ],
    }


def main(pod: Pod) -> dict[str, Any]:
    container: dict[str, Any] = pod["containers"][0]["securityContext"]
    return container


BASELINE_BREAKS: dict[str, Callable[[Pod], None]] = {
    "hostPath": lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/mnt"}}),
    "hostNetwork": lambda p: p.update(hostNetwork=True),
    "hostPID": lambda p: p.update(hostPID=True),
    "hostIPC": lambda p: p.update(hostIPC=True),
    "privileged": lambda p: main(p).update(privileged=True),
    "capability": lambda p: main(p)["capabilities"].update(add=["SYS_ADMIN"]),
    "NET_RAW": lambda p: main(p)["capabilities"].update(add=["NET_RAW"]),
    "hostPort": lambda p: p["containers"][0]["ports"][0].update(hostPort=8815),
    "procMount": lambda p: main(p).update(procMount="Unmasked"),
    "seccomp Unconfined": lambda p: main(p).update(seccompProfile={"type": "Unconfined"}),
    "AppArmor": lambda p: p["securityContext"].update(appArmorProfile={"type": "Unconfined"}),
    "SELinux type": lambda p: main(p).update(seLinuxOptions={"type": "spc_t"}),
    "SELinux user": lambda p: main(p).update(seLinuxOptions={"user": "root"}),
    "sysctl": lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax"}]),
    "hostProcess": lambda p: main(p).update(windowsOptions={"hostProcess": True}),
    "sidecar": lambda p: p["containers"].append(
        {"name": "s", "securityContext": {"privileged": True}}
    ),
    "init container": lambda p: p.setdefault("initContainers", []).append(
        {"name": "i", "securityContext": {"privileged": True}}
    ),
}

RESTRICTED_BREAKS: dict[str, Callable[[Pod], None]] = {
    "nfs volume": lambda p: p["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}),
    "runAsNonRoot unset": lambda p: p["securityContext"].pop("runAsNonRoot"),
    "runAsNonRoot false": lambda p: main(p).update(runAsNonRoot=False),
    "runAsUser 0": lambda p: main(p).update(runAsUser=0),
    "pod runAsUser 0": lambda p: p["securityContext"].update(runAsUser=0),
    "privilege escalation unset": lambda p: main(p).pop("allowPrivilegeEscalation"),
    "privilege escalation": lambda p: main(p).update(allowPrivilegeEscalation=True),
    "seccomp unset": lambda p: p["securityContext"].pop("seccompProfile"),
    "capabilities kept": lambda p: main(p).pop("capabilities"),
    "capability added": lambda p: main(p)["capabilities"].update(add=["CHOWN"]),
}


@pytest.mark.parametrize("level", list(Level))
def test_a_pod_that_meets_restricted_passes_both_levels(level: Level) -> None:
    assert pod_violations({}, restricted_pod(), level) == []


@pytest.mark.parametrize("name", sorted(BASELINE_BREAKS))
def test_baseline_rules_reject_a_bad_pod_at_both_levels(name: str) -> None:
    pod = restricted_pod()
    BASELINE_BREAKS[name](pod)
    for level in Level:
        violations = pod_violations({}, pod, level)
        assert violations, f"{name} passed {level.value}"
        assert {v.level for v in violations} >= {Level.BASELINE}


@pytest.mark.parametrize("name", sorted(RESTRICTED_BREAKS))
def test_restricted_rules_reject_what_baseline_allows(name: str) -> None:
    pod = restricted_pod()
    RESTRICTED_BREAKS[name](pod)
    assert pod_violations({}, pod, Level.BASELINE) == []
    violations = pod_violations({}, pod, Level.RESTRICTED)
    assert violations and {v.level for v in violations} == {Level.RESTRICTED}


def test_unconfined_apparmor_annotations_break_baseline() -> None:
    key = "container.apparmor.security.beta.kubernetes.io/main"
    metadata = {"annotations": {key: "unconfined"}}
    (violation,) = pod_violations(metadata, restricted_pod(), Level.BASELINE)
    assert "AppArmor" in str(violation)
    metadata["annotations"][key] = "runtime/default"
    assert pod_violations(metadata, restricted_pod(), Level.BASELINE) == []


def test_a_violation_names_the_path_and_the_level() -> None:
    pod = restricted_pod()
    BASELINE_BREAKS["hostPath"](pod)
    violation = pod_violations({}, pod, Level.RESTRICTED)[0]
    assert str(violation) == "spec.volumes[2].hostPath: hostPath volumes are forbidden (baseline)"


def test_every_pod_of_workload_kinds_is_found() -> None:
    template = {"metadata": {"labels": {"a": "b"}}, "spec": restricted_pod()}
    deployment = {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": template}}
    cronjob = {
        "kind": "CronJob",
        "metadata": {"name": "c"},
        "spec": {"jobTemplate": {"spec": {"template": template}}},
    }
    pod = {"kind": "Pod", "metadata": {"name": "p"}, "spec": restricted_pod()}
    service = {"kind": "Service", "metadata": {"name": "s"}, "spec": {}}
    found = [p.source for obj in (deployment, cronjob, pod, service) for p in pods_of(obj)]
    assert found == ["Deployment/d", "CronJob/c", "Pod/p"]


def spark_app(app: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "SparkApplication", "metadata": {"name": "a"}, "spec": app}


def only_pod(obj: dict[str, Any], role: str) -> RenderedPod:
    (pod,) = [p for p in pods_of(obj) if p.source.endswith(role)]
    return pod


def test_a_spark_pod_is_its_template_with_the_operator_fields_laid_over() -> None:
    secure = restricted_pod()
    app = {
        "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "unused", "hostPath": {"path": "/"}}],
        "driver": {
            "podSecurityContext": secure["securityContext"],
            "securityContext": main(secure),
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        },
        "executor": {"template": {"spec": copy.deepcopy(secure)}},
    }
    driver = only_pod(spark_app(app), "driver")
    assert driver.spec["volumes"] == [{"name": "tmp", "emptyDir": {}}]  # only what it mounts
    for role in ("driver", "executor"):
        pod = only_pod(spark_app(app), role)
        assert pod_violations(pod.metadata, pod.spec, Level.RESTRICTED) == []
    app["driver"].pop("podSecurityContext")
    driver = only_pod(spark_app(app), "driver")
    assert pod_violations(driver.metadata, driver.spec, Level.RESTRICTED)


def test_spark_pods_without_a_security_context_fail_restricted_but_pass_baseline() -> None:
    pod = only_pod(spark_app({"driver": {}, "executor": {}}), "executor")
    assert pod.spec["containers"][0]["name"] == "spark-kubernetes-executor"
    assert pod_violations(pod.metadata, pod.spec, Level.BASELINE) == []
    assert pod_violations(pod.metadata, pod.spec, Level.RESTRICTED)


def test_a_host_path_in_spark_conf_or_host_network_breaks_baseline() -> None:
    conf = {"spark.kubernetes.executor.volumes.hostPath.cache.mount.path": "/cache"}
    executor = only_pod(spark_app({"sparkConf": conf}), "executor")
    (violation,) = pod_violations(executor.metadata, executor.spec, Level.BASELINE)
    assert violation.path == "spec.volumes[0].hostPath"
    driver = only_pod(spark_app({"sparkConf": conf}), "driver")
    assert pod_violations(driver.metadata, driver.spec, Level.BASELINE) == []
    host = only_pod(spark_app({"driver": {"hostNetwork": True}}), "driver")
    assert [v.path for v in pod_violations(host.metadata, host.spec, Level.BASELINE)] == [
        "spec.hostNetwork"
    ]


def test_scheduled_applications_yield_their_templates_pods() -> None:
    scheduled = {
        "kind": "ScheduledSparkApplication",
        "metadata": {"name": "n"},
        "spec": {"template": {"executor": {"sidecars": [{"name": "s"}]}}},
    }
    pods = pods_of(scheduled)
    assert [p.source for p in pods] == [
        "ScheduledSparkApplication/n.driver",
        "ScheduledSparkApplication/n.executor",
    ]
    assert [c["name"] for c in pods[1].spec["containers"]] == ["spark-kubernetes-executor", "s"]
