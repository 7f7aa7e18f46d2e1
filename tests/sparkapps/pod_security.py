"""Pod Security Standards ("baseline", "restricted") as a pure check of rendered pods.

:func:`pod_violations` applies the rules of
https://kubernetes.io/docs/concepts/security/pod-security-standards/ (Kubernetes
1.32) to one pod's metadata and spec, the way the Pod Security admission
controller does; :func:`pods_of` finds every pod an object would create: a
Pod, the template of a Deployment/StatefulSet/DaemonSet/ReplicaSet/Job/CronJob,
and the driver and executor pods of a (Scheduled)SparkApplication — its pod
template with the operator's fields laid over it (``podSecurityContext``,
``securityContext``, ``hostNetwork``, mounted ``volumes``, ``sidecars``,
``initContainers``) and the volumes Spark adds from
``spark.kubernetes.{driver,executor}.volumes.*`` in ``sparkConf``.
"""

from __future__ import annotations

import copy
import enum
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


class Level(enum.Enum):
    """A Pod Security Standards level; RESTRICTED includes every BASELINE rule."""

    BASELINE = "baseline"
    RESTRICTED = "restricted"


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (a dotted path in the pod), which rule, at which level."""

    level: Level
    path: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}: {self.rule} ({self.level.value})"


#: Capabilities "baseline" lets a container add (the container runtime's defaults, less NET_RAW).
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
RESTRICTED_VOLUME_SOURCES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in _CONTAINER_LISTS:
        for index, container in enumerate(spec.get(field) or []):
            yield f"spec.{field}[{index}]", container


def _security_contexts(
    spec: Mapping[str, Any],
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The pod's securityContext, then each container's (path, context)."""
    yield "spec.securityContext", spec.get("securityContext") or {}
    for path, container in _containers(spec):
        yield f"{path}.securityContext", container.get("securityContext") or {}


def _baseline(metadata: Mapping[str, Any], spec: Mapping[str, Any]) -> Iterator[Violation]:
    def v(path: str, rule: str) -> Violation:
        return Violation(Level.BASELINE, path, rule)

    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            yield v(f"spec.{field}", "host namespaces must not be shared")
    for index, volume in enumerate(spec.get("volumes") or []):
        if "hostPath" in volume:
            yield v(f"spec.volumes[{index}].hostPath", "hostPath volumes are forbidden")
    for path, context in _security_contexts(spec):
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            yield v(f"{path}.windowsOptions.hostProcess", "HostProcess pods are forbidden")
        apparmor = (context.get("appArmorProfile") or {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            yield v(f"{path}.appArmorProfile.type", f"AppArmor profile {apparmor!r}")
        selinux = context.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES:
            yield v(f"{path}.seLinuxOptions.type", f"SELinux type {selinux['type']!r}")
        for key in ("user", "role"):
            if selinux.get(key):
                yield v(f"{path}.seLinuxOptions.{key}", "custom SELinux user/role")
        seccomp = (context.get("seccompProfile") or {}).get("type")
        if seccomp == "Unconfined":
            yield v(f"{path}.seccompProfile.type", "seccomp must not be Unconfined")
    for index, sysctl in enumerate((spec.get("securityContext") or {}).get("sysctls") or []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield v(f"spec.securityContext.sysctls[{index}]", f"unsafe sysctl {sysctl.get('name')}")
    for path, container in _containers(spec):
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            yield v(f"{path}.securityContext.privileged", "privileged containers are forbidden")
        added = set((context.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            extra = ", ".join(sorted(added - BASELINE_CAPABILITIES))
            yield v(f"{path}.securityContext.capabilities.add", f"adds {extra}")
        if context.get("procMount", "Default") != "Default":
            yield v(f"{path}.securityContext.procMount", "procMount must be Default")
        for port_index, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                yield v(f"{path}.ports[{port_index}].hostPort", "host ports are forbidden")
    for key, value in (metadata.get("annotations") or {}).items():
        if key.startswith(_APPARMOR_ANNOTATION) and not (
            value == "runtime/default" or str(value).startswith("localhost/")
        ):
            yield v(f"metadata.annotations[{key}]", f"AppArmor profile {value!r}")


def _restricted(spec: Mapping[str, Any]) -> Iterator[Violation]:
    def v(path: str, rule: str) -> Violation:
        return Violation(Level.RESTRICTED, path, rule)

    for index, volume in enumerate(spec.get("volumes") or []):
        sources = set(volume) - {"name"}
        if not sources or not sources <= RESTRICTED_VOLUME_SOURCES:
            kinds = ", ".join(sorted(sources)) or "none"
            yield v(f"spec.volumes[{index}]", f"volume type {kinds} is not allowed")
    pod = spec.get("securityContext") or {}
    if pod.get("runAsUser") == 0:
        yield v("spec.securityContext.runAsUser", "must not run as uid 0")
    linux = (spec.get("os") or {}).get("name") != "windows"
    for path, container in _containers(spec):
        context = container.get("securityContext") or {}
        if context.get("runAsNonRoot") is False or (
            not pod.get("runAsNonRoot") and not context.get("runAsNonRoot")
        ):
            yield v(f"{path}.securityContext.runAsNonRoot", "must run as non-root")
        if context.get("runAsUser") == 0:
            yield v(f"{path}.securityContext.runAsUser", "must not run as uid 0")
        if not linux:
            continue
        if context.get("allowPrivilegeEscalation") is not False:
            yield v(f"{path}.securityContext.allowPrivilegeEscalation", "must be false")
        seccomp = (context.get("seccompProfile") or {}).get("type") or (
            pod.get("seccompProfile") or {}
        ).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield v(f"{path}.securityContext.seccompProfile", "RuntimeDefault or Localhost")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            yield v(f"{path}.securityContext.capabilities.drop", "must drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            yield v(f"{path}.securityContext.capabilities.add", "only NET_BIND_SERVICE")


def pod_violations(
    metadata: Mapping[str, Any], spec: Mapping[str, Any], level: Level
) -> list[Violation]:
    """Return every rule of ``level`` the pod (``metadata``, ``spec``) breaks."""
    found = list(_baseline(metadata, spec))
    if level is Level.RESTRICTED:
        found += list(_restricted(spec))
    return found


@dataclass(frozen=True)
class RenderedPod:
    """A pod an object would create: where it comes from, its metadata and spec."""

    source: str
    metadata: dict[str, Any]
    spec: dict[str, Any]


_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
_SPARK_CONF_VOLUME = re.compile(
    r"^spark\.kubernetes\.(driver|executor)\.volumes\.([A-Za-z]+)\.([^.]+)\."
)
_SPARK_CONF_SOURCES = {
    "hostPath": "hostPath",
    "emptyDir": "emptyDir",
    "persistentVolumeClaim": "persistentVolumeClaim",
    "nfs": "nfs",
}


def _spark_pod(app: Mapping[str, Any], role: str, source: str) -> RenderedPod:
    section = app.get(role) or {}
    template = copy.deepcopy(section.get("template") or {})
    metadata = template.get("metadata") or {}
    spec = template.get("spec") or {}
    containers = spec.setdefault("containers", [])
    if not containers:
        containers.append({"name": f"spark-kubernetes-{role}"})
    main = containers[0]
    if "podSecurityContext" in section:
        spec["securityContext"] = copy.deepcopy(section["podSecurityContext"])
    if "securityContext" in section:
        main["securityContext"] = copy.deepcopy(section["securityContext"])
    if section.get("hostNetwork"):
        spec["hostNetwork"] = True
    if section.get("annotations"):
        metadata.setdefault("annotations", {}).update(section["annotations"])
    volumes = {v["name"]: v for v in app.get("volumes") or []}
    for mount in section.get("volumeMounts") or []:
        main.setdefault("volumeMounts", []).append(mount)
        if mount["name"] in volumes:
            spec.setdefault("volumes", []).append(copy.deepcopy(volumes[mount["name"]]))
    spec.setdefault("initContainers", []).extend(copy.deepcopy(section.get("initContainers") or []))
    containers.extend(copy.deepcopy(section.get("sidecars") or []))
    present = {v["name"] for v in spec.get("volumes") or []}
    for key in app.get("sparkConf") or {}:
        match = _SPARK_CONF_VOLUME.match(str(key))
        if match and match.group(1) == role and match.group(3) not in present:
            kind = _SPARK_CONF_SOURCES.get(match.group(2), match.group(2))
            spec.setdefault("volumes", []).append({"name": match.group(3), kind: {}})
            present.add(match.group(3))
    return RenderedPod(source=f"{source}.{role}", metadata=metadata, spec=spec)


def pods_of(obj: Mapping[str, Any]) -> list[RenderedPod]:
    """Return every pod ``obj`` would create (none for kinds that create no pods)."""
    kind = obj.get("kind")
    name = f"{kind}/{(obj.get('metadata') or {}).get('name')}"
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return [RenderedPod(name, dict(obj.get("metadata") or {}), copy.deepcopy(dict(spec)))]
    template: Mapping[str, Any] | None = None
    if kind in _TEMPLATE_KINDS:
        template = spec.get("template")
    elif kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
    if template is not None:
        return [
            RenderedPod(
                name,
                copy.deepcopy(dict(template.get("metadata") or {})),
                copy.deepcopy(dict(template.get("spec") or {})),
            )
        ]
    if kind == "SparkApplication":
        return [_spark_pod(spec, role, name) for role in ("driver", "executor")]
    if kind == "ScheduledSparkApplication":
        app = spec.get("template") or {}
        return [_spark_pod(app, role, name) for role in ("driver", "executor")]
    return []
