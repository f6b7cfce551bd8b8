"""The shape every saliencylab pod shares: security contexts, scratch volumes and the main container."""

from __future__ import annotations

from typing import Any

from saliencylab.cluster.common import UID, UNPINNED_TAG

S3_SECRET, S3_ENV = "saliencylab-s3", "saliencylab-s3-env"
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
# Tags are commits and digests never move, so a node's copy is the image: no pull per pod.
PULL_POLICY = "IfNotPresent"
# The root filesystem is read-only, so /tmp and the caches (/cache: weights, numba) are emptyDirs;
# each has a sizeLimit (the kubelet evicts a pod past it) and the pod requests their sum as
# ephemeral-storage, so the scheduler places it on a node with that much disk.
SCRATCH_GI = {"worker": {"tmp": 4, "cache": 8}, "merge": {"tmp": 2, "cache": 1}, "exit": {"tmp": 1, "cache": 1}}
SHM_GI_PER_GPU = 1  # /dev/shm: memory-backed, for DataLoader workers and NCCL; counts against the memory limit


def scratch(kind: str, gpus: int) -> tuple[list[dict], list[dict], str]:
    """Volumes, mounts and the ephemeral-storage request of a pod of `kind` (a key of SCRATCH_GI)."""
    sizes = SCRATCH_GI[kind]
    volumes = [{"name": name, "emptyDir": {"sizeLimit": f"{gi}Gi"}} for name, gi in sizes.items()]
    volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{SHM_GI_PER_GPU * max(gpus, 1)}Gi"}})
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "cache", "mountPath": "/cache"}, {"name": "dshm", "mountPath": "/dev/shm"}]
    return volumes, mounts, f"{sum(sizes.values())}Gi"


def container(image: str, command: list[str], args: list[str], cpu: str, memory: str, mounts: list[dict], ephemeral: str) -> dict[str, Any]:
    """A main container as every saliencylab pod runs it: pinned image, explicit command, threads = cores."""
    if not cpu.isdigit():
        raise ValueError(f"cpu must be a whole number of cores (it sets the thread counts), got {cpu!r}")
    return {
        "image": f"{image}:{UNPINNED_TAG}",  # kustomization.yaml sets registry, commit tag and digest
        "imagePullPolicy": PULL_POLICY,
        "command": command,
        "args": args,
        # torch (OMP_NUM_THREADS) and numba would otherwise start one thread per node core
        "env": [{"name": "OMP_NUM_THREADS", "value": cpu}, {"name": "NUMBA_NUM_THREADS", "value": cpu}],
        "envFrom": [{"configMapRef": {"name": S3_ENV}}, {"secretRef": {"name": S3_SECRET}}],
        "resources": {
            "requests": {"cpu": cpu, "memory": memory, "ephemeral-storage": ephemeral},
            "limits": {"memory": memory},
        },
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }


def metric(name: str, help_text: str, labels: dict[str, str], **value: dict[str, Any]) -> dict[str, Any]:
    """One Argo Prometheus metric: `value` is its kind and settings, e.g. gauge={"value": "{{duration}}"}."""
    return {"name": name, "help": help_text, "labels": [{"key": k, "value": v} for k, v in labels.items()], **value}
