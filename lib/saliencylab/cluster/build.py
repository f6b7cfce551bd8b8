"""images/Dockerfile and docker-bake.hcl: one `base` image and one target per stage of the registry."""

from __future__ import annotations

import re
from collections.abc import Sequence

from saliencylab import __version__
from saliencylab.cluster.common import HEADER, REGISTRY, UID, comment_lines, image_name
from saliencylab.stages import StageSpec

BASE_IMAGE = "python:3.11.14-slim-bookworm"
CUDA_STACK = ("torch", "torchvision")  # ~5.5 GB with their nvidia-* wheels: a layer of their own
CONSTRAINTS = "images/constraints.txt"  # the dependency lock (lib/saliencylab/lock.py), relative to the build context


def _requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower()


def render_dockerfile(dependencies: Sequence[str], stages: Sequence[StageSpec]) -> str:
    """images/Dockerfile: the base image with `dependencies` (pyproject's runtime requirements) and a target per stage."""
    cuda = [d for d in dependencies if _requirement_name(d) in CUDA_STACK]
    rest = [d for d in dependencies if _requirement_name(d) not in CUDA_STACK]
    quoted = lambda reqs: " ".join(f'"{r}"' for r in reqs)  # noqa: E731
    wrapped = lambda reqs: " \\\n".join(f'    "{r}"' for r in reqs)  # noqa: E731
    targets = "\n".join(f"  {s.name:<10} ENTRYPOINT saliencylab {s.name}  ({'GPU' if s.gpu else 'CPU'})" for s in stages)
    header = f"""{HEADER}

One image per stage, all built on `base` (build them with `docker buildx bake`, docker-bake.hcl):
  base       the saliencylab package, non-root (UID {UID}), offline; ENTRYPOINT saliencylab
{targets}

Base: {BASE_IMAGE}, not nvidia/cuda. The PyPI wheels of torch bundle the
CUDA 13 user-space libraries (the nvidia-* wheels, ~3 GB); a CUDA base image would ship a second
copy. The driver (>= 580 for CUDA 13) is mounted by the NVIDIA container runtime on GPU nodes.
NVIDIA_VISIBLE_DEVICES is left unset on purpose: the device plugin (or `docker run --gpus`) sets
it, so a container that did not ask for a GPU never sees one.

The three pip layers are separate on purpose (hence the DL3059 ignores): a change to the package
rebuilds and pushes only the last, small one; the CUDA stack moves only with the torch pin."""
    stages = "".join(f'\nFROM base AS {s.name}\nENTRYPOINT ["saliencylab", "{s.name}"]\nCMD ["--help"]\n' for s in stages)
    return f"""{comment_lines(header)}
FROM {BASE_IMAGE} AS base

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

# Every pip layer installs at the exact versions of images/constraints.txt (`make lock`, lib/saliencylab/lock.py),
# the versions the test suite runs with; it is bind-mounted, not copied.

# Layer 1, the largest: the CUDA stack.
RUN --mount=type=bind,source={CONSTRAINTS},target=/tmp/constraints.txt \\
    python -m venv /opt/venv \\
 && pip install --no-cache-dir -c /tmp/constraints.txt {quoted(cuda)}

# Layer 2: the other runtime dependencies of pyproject.toml (no test extras); the torch pins are
# repeated so that no resolution can move them.
# hadolint ignore=DL3059
RUN --mount=type=bind,source={CONSTRAINTS},target=/tmp/constraints.txt \\
    pip install --no-cache-dir -c /tmp/constraints.txt \\
{wrapped(rest + cuda)}

# Layer 3, small: the package itself, from a bind mount of the build context (.dockerignore keeps
# only pyproject.toml, lib/, jobs/ and the lock); no copy of the source stays in the image.
# hadolint ignore=DL3059
RUN --mount=type=bind,target=/src,rw pip install --no-cache-dir --no-deps /src

# Last, so that a new commit rebuilds no layer; recorded in every manifest's code_version.
ARG SALIENCYLAB_GIT_SHA=""
ENV SALIENCYLAB_GIT_SHA=${{SALIENCYLAB_GIT_SHA}}
LABEL org.opencontainers.image.revision=${{SALIENCYLAB_GIT_SHA}}

USER {UID}:{UID}
WORKDIR /work
ENTRYPOINT ["saliencylab"]
CMD ["--help"]
{stages}"""


def render_bake(stages: Sequence[StageSpec]) -> str:
    """docker-bake.hcl: one target per stage, all in group \"default\"."""
    targets = ", ".join(f'"{s.name}"' for s in stages)
    header = f"""{HEADER}

Build every stage image of images/Dockerfile (variables come from the environment):
  docker buildx bake                  # REGISTRY={REGISTRY} TAG={__version__}, into the builder's cache
  REGISTRY=ghcr.io/<org> TAG=$(git rev-parse --short HEAD) GIT_SHA=$(git rev-parse HEAD) \\
    CACHE_REF=ghcr.io/<org>/saliencylab-buildcache:main docker buildx bake --push   # CI"""
    stage_targets = "".join(
        f'\ntarget "{s.name}" {{\n  inherits = ["_common"]\n  target   = "{s.name}"\n'
        f'  tags     = ["${{REGISTRY}}/{image_name(s)}:${{TAG}}"]\n}}\n'
        for s in stages
    )
    return f"""{comment_lines(header)}
variable "REGISTRY" {{
  default = "{REGISTRY}"
}}

variable "TAG" {{
  default = "{__version__}"
}}

variable "GIT_SHA" {{
  default = ""
}}

# A registry ref for the layer cache (mode=max); empty (local builds, docker driver) exports none.
variable "CACHE_REF" {{
  default = ""
}}

group "default" {{
  targets = [{targets}]
}}

target "_common" {{
  context    = "."
  dockerfile = "images/Dockerfile"
  platforms  = ["linux/amd64"]
  args = {{
    SALIENCYLAB_GIT_SHA = "${{GIT_SHA}}"
  }}
  labels = {{
    "org.opencontainers.image.title"    = "saliencylab"
    "org.opencontainers.image.version"  = "${{TAG}}"
    "org.opencontainers.image.revision" = "${{GIT_SHA}}"
  }}
  cache-from = CACHE_REF == "" ? [] : ["type=registry,ref=${{CACHE_REF}}"]
  cache-to   = CACHE_REF == "" ? [] : ["type=registry,ref=${{CACHE_REF}},mode=max"]
}}
{stage_targets}"""
