"""images/Dockerfile and docker-bake.hcl: a CPU and a GPU image of the package, from one Dockerfile."""

from __future__ import annotations

import re
from collections.abc import Sequence

from saliencylab.cluster.common import CPU_IMAGE, GPU_IMAGE, HEADER, REGISTRY, UID, comment_lines
from saliencylab.stages import StageSpec

# The base, pinned by the digest of its multi-platform index (as published for this tag; confirm a
# new one with `docker buildx imagetools inspect python:<tag>`). A bake variable overrides it.
BASE_IMAGE = "python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d"
CUDA_STACK = ("torch", "torchvision")  # the requirements whose wheels differ between the two images
# Lock entries that belong to the CUDA build of torch (its CUDA wheels): only the GPU image has them.
GPU_ONLY = r"^((torch|torchvision|triton)==|(nvidia|cuda)-)"
CPU_WHEELS = "https://download.pytorch.org/whl/cpu"  # torch's CPU-only wheels (no CUDA libraries)
CONSTRAINTS = "images/constraints.txt"  # the dependency lock (lib/saliencylab/lock.py), relative to the build context
PIP_CACHE = "--mount=type=cache,target=/root/.cache/pip,sharing=locked"  # the builds run as root; the cache stays out of the layers
LOCK = f"--mount=type=bind,source={CONSTRAINTS},target=/tmp/constraints.txt"


def _requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower()


def _package_layers() -> str:
    """The tail of both images: the package from a bind mount, a dependency check, the commit, the user."""
    return f"""# The package itself, from a bind mount of the build context (.dockerignore keeps only
# pyproject.toml, lib/, jobs/ and the lock); no copy of the source stays in the image. `pip check`
# fails the build if the layers above do not satisfy every requirement.
RUN --mount=type=bind,target=/src,rw {PIP_CACHE} \\
    pip install --no-deps /src \\
 && pip check

# Last, so that a new commit rebuilds no layer; recorded in every manifest's code_version and
# equal to the image's tag (make images, docker-bake.hcl).
ARG SALIENCYLAB_GIT_SHA=""
ENV SALIENCYLAB_GIT_SHA=${{SALIENCYLAB_GIT_SHA}}
LABEL org.opencontainers.image.revision=${{SALIENCYLAB_GIT_SHA}}

USER {UID}:{UID}
WORKDIR /work
ENTRYPOINT ["saliencylab"]
CMD ["--help"]
"""


def render_dockerfile(dependencies: Sequence[str], stages: Sequence[StageSpec]) -> str:
    """images/Dockerfile: `runtime` (shared layers), then the targets `cpu` and `gpu`.

    Args:
        dependencies: pyproject's runtime requirements; those named in CUDA_STACK install per image.
        stages: the registry, listed in the header with the image each stage's workers run.
    """
    cuda = [d for d in dependencies if _requirement_name(d) in CUDA_STACK]
    if len(cuda) != len(CUDA_STACK):
        raise ValueError(f"pyproject.toml must require each of {CUDA_STACK} (the images install them per target)")
    quoted = " ".join(f'"{r}"' for r in cuda)
    by_image = "\n".join(f"  {s.name:<12} {GPU_IMAGE if s.gpu else CPU_IMAGE}" for s in stages)
    header = f"""{HEADER}

Two images, built with `docker buildx bake` (docker-bake.hcl) from the targets below:
  cpu   {CPU_IMAGE}: torch's CPU-only wheels ({CPU_WHEELS}), no CUDA library
  gpu   {GPU_IMAGE}: torch's PyPI wheels with their CUDA 13 user-space libraries (nvidia-*)
Both carry the whole package; a pod's command picks the stage (saliencylab <stage>). Stage workers:
{by_image}
Merges and the exit handler run {CPU_IMAGE}.

Layers: `runtime` (user, environment, and every pin of the lock except torch's CUDA stack,
installed without resolution) is shared by both images; each target adds its torch build, then
the package. A change to the package rebuilds only the last, small layer. pip downloads go to a
BuildKit cache mount, so a pin change does not download torch again.

Base: pinned by digest in the PYTHON_IMAGE argument (a bake variable). Not nvidia/cuda: the
PyPI wheels bundle the CUDA user-space libraries; the driver (>= 580 for CUDA 13) is mounted by
the NVIDIA container runtime on GPU nodes. NVIDIA_VISIBLE_DEVICES is left unset on purpose: the
device plugin (or `docker run --gpus`) sets it, so a container that did not ask for a GPU never
sees one."""
    tail = _package_layers()
    return f"""{comment_lines(header)}
ARG PYTHON_IMAGE={BASE_IMAGE}

FROM ${{PYTHON_IMAGE}} AS runtime

# A fixed non-root user. Caches live under /cache: a volume in the cluster (emptyDir) and in
# `make run-stage` (the host's ~/.cache), so the root filesystem can be read-only.
RUN groupadd --gid {UID} saliencylab \\
 && useradd --uid {UID} --gid {UID} --create-home --shell /usr/sbin/nologin saliencylab \\
 && mkdir -p /cache /work \\
 && chown {UID}:{UID} /cache /work

# Nothing is downloaded at run time: weights are paths, s3:// URIs or files already in
# $TORCH_HOME/hub/checkpoints (lib/saliencylab/weights.py); Hugging Face libraries stay offline.
ENV VIRTUAL_ENV=/opt/venv \\
    PATH=/opt/venv/bin:$PATH \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    XDG_CACHE_HOME=/cache \\
    TORCH_HOME=/cache/torch \\
    HF_HOME=/cache/huggingface \\
    HF_HUB_OFFLINE=1 \\
    TRANSFORMERS_OFFLINE=1 \\
    MPLCONFIGDIR=/cache/matplotlib \\
    NUMBA_CACHE_DIR=/cache/numba

# The lock (images/constraints.txt, `make lock`) is the whole runtime closure at the versions the
# test suite runs with; it is bind-mounted, not copied. Shared by both images: every pin but torch's.
RUN {LOCK} {PIP_CACHE} \\
    python -m venv /opt/venv \\
 && grep -v -E '^#|{GPU_ONLY}' /tmp/constraints.txt > /tmp/shared.txt \\
 && pip install --no-deps -r /tmp/shared.txt \\
 && rm /tmp/shared.txt

FROM runtime AS cpu
# torch's CPU build: the same version (2.x.y+cpu satisfies ==2.x.y), from PyTorch's CPU index.
RUN {LOCK} {PIP_CACHE} \\
    pip install --no-deps --index-url {CPU_WHEELS} -c /tmp/constraints.txt {quoted}

{tail}
FROM runtime AS gpu
# torch's PyPI build and its CUDA wheels, at the lock's versions.
RUN {LOCK} {PIP_CACHE} \\
    grep -E '{GPU_ONLY}' /tmp/constraints.txt > /tmp/gpu.txt \\
 && pip install --no-deps -r /tmp/gpu.txt \\
 && rm /tmp/gpu.txt

{tail}"""


def _variable(name: str, default: str, pattern: tuple[str, str] | None = None) -> str:
    """A bake variable; with `pattern` = (regex, message), bake (>= 0.18) refuses a value that does not match."""
    check = ""
    if pattern:
        regex, message = pattern
        check = f'  validation {{\n    condition     = length(regexall("{regex}", {name})) == 1\n    error_message = "{message}"\n  }}\n'
    return f'variable "{name}" {{\n  default = "{default}"\n{check}}}\n'


def render_bake(stages: Sequence[StageSpec]) -> str:
    """docker-bake.hcl: the targets cpu and gpu in group "default", tagged with the commit, with attestations."""
    del stages  # every stage runs one of the two images: the targets do not depend on the registry
    header = f"""{HEADER}

Build both images of images/Dockerfile (variables come from the environment; buildx >= 0.18):
  make images                         # GIT_SHA=$(git rev-parse HEAD), TAG=GIT_SHA, REGISTRY={REGISTRY}
  make images BAKE_FLAGS=--push REGISTRY=ghcr.io/<org> CACHE_REF=ghcr.io/<org>/saliencylab-buildcache:main
Tags are the full commit: an image's tag, its revision label and the code_version of every
artifact it writes name the same commit. --metadata-file (make images) records the digests that
`make manifests` pins in k8s/kustomization.yaml. Every image gets an SBOM and a provenance attestation."""
    targets = "".join(
        f'\ntarget "{flavour}" {{\n  inherits = ["_common"]\n  target   = "{flavour}"\n  tags     = ["${{REGISTRY}}/{image}:${{TAG}}"]\n}}\n'
        for flavour, image in (("cpu", CPU_IMAGE), ("gpu", GPU_IMAGE))
    )
    return f"""{comment_lines(header)}
{_variable("REGISTRY", REGISTRY)}
# The commit being built: the images' tag and the SALIENCYLAB_GIT_SHA of their artifacts.
{_variable("GIT_SHA", "", ("^[0-9a-f]{40}$", "GIT_SHA must be the full commit being built: GIT_SHA=$(git rev-parse HEAD) docker buildx bake (or make images)."))}
{_variable("TAG", "${GIT_SHA}")}
{_variable("PYTHON_IMAGE", BASE_IMAGE, ("@sha256:[0-9a-f]{64}$", "PYTHON_IMAGE must be pinned by digest (name:tag@sha256:...)."))}
# A registry ref for the layer cache (mode=max); empty (local builds, docker driver) exports none.
variable "CACHE_REF" {{
  default = ""
}}

group "default" {{
  targets = ["cpu", "gpu"]
}}

target "_common" {{
  context    = "."
  dockerfile = "images/Dockerfile"
  platforms  = ["linux/amd64"]
  args = {{
    PYTHON_IMAGE        = "${{PYTHON_IMAGE}}"
    SALIENCYLAB_GIT_SHA = "${{GIT_SHA}}"
  }}
  labels = {{
    "org.opencontainers.image.title"    = "saliencylab"
    "org.opencontainers.image.version"  = "${{TAG}}"
    "org.opencontainers.image.revision" = "${{GIT_SHA}}"
  }}
  attest = ["type=sbom", "type=provenance,mode=max"]
  cache-from = CACHE_REF == "" ? [] : ["type=registry,ref=${{CACHE_REF}}"]
  cache-to   = CACHE_REF == "" ? [] : ["type=registry,ref=${{CACHE_REF}},mode=max"]
}}
{targets}"""
