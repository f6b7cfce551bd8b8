# saliencylab: the two commands of the README are `make demo` and `make test`.
# Both create the virtual environment .venv on first use (torch is a ~3 minute install).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup lock demo demo-augmentation test bench clean

# The runtime dependencies install at the versions of images/constraints.txt, as in the images.
# PIP_QUIET: pip 26 forwards setuptools' informational "Editable installation" box as a BuildBackendWarning.
PIP_QUIET := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet

$(STAMP): pyproject.toml images/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP_QUIET) -c images/constraints.txt -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project with its test tools

lock: $(STAMP)  ## re-pin images/constraints.txt to this venv's runtime dependencies (after editing pyproject.toml)
	$(PIP_QUIET) -e ".[test]"
	$(BIN)/python -m saliencylab.lock images/constraints.txt

demo: $(STAMP)  ## run every built stage on the bundled demo data (CPU, local storage)
	$(BIN)/saliencylab demo --workdir demo-run

demo-augmentation: $(STAMP)  ## the augmentation study (erase, inpaint, augment, 4 fine-tunes) on a tiny synthetic VOC set, CPU, ~2 min
	$(BIN)/saliencylab demo --study augmentation --workdir demo-run

test: $(STAMP)  ## run the test suite (starts a local SeaweedFS S3 server for the S3 tests)
	$(BIN)/python -m pytest -q

clean:  ## remove the demo run (keeps .venv)
	rm -rf demo-run

# ---- cluster delivery (docs/cluster.md) -------------------------------------------------------
# Two images, $(REGISTRY)/saliencylab-cpu and -gpu, tagged with the commit they were built from
# (GIT_SHA, also each artifact's code_version). BAKE_METADATA records their digests, which
# `make manifests` pins in k8s/kustomization.yaml (through k8s/image-pins.json).
REGISTRY  ?= localhost:5000
GIT_SHA   := $(shell git rev-parse HEAD 2>/dev/null)
TAG       ?= $(GIT_SHA)
BAKE_METADATA ?= images/bake-metadata.json
RUN_CACHE ?= $(HOME)/.cache
DOCKER_RUN_FLAGS ?=
FLAVOUR   ?= $(if $(findstring --gpus,$(DOCKER_RUN_FLAGS)),gpu,cpu)
AWS_ENV   := AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_REGION AWS_DEFAULT_REGION \
             AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_MAX_ATTEMPTS SALIENCYLAB_S3_ADDRESSING
# What the images are built from: a change here not yet committed would not be the tagged commit.
IMAGE_INPUTS := pyproject.toml lib jobs images/constraints.txt images/Dockerfile docker-bake.hcl .dockerignore

.PHONY: run-stage images manifests manifests-check

# One stage in its image, as the cluster runs it: read-only root, no capabilities, the caller's
# UID, this folder at /work (relative paths in ARGS work), $(RUN_CACHE) as /cache (TORCH_HOME is
# /cache/torch, like ~/.cache/torch locally) and the AWS_* variables passed through. GPU stages:
# DOCKER_RUN_FLAGS="--gpus all" (which also picks the gpu image); an S3 endpoint on this host:
# DOCKER_RUN_FLAGS="--network host". Without a Docker engine it says so and runs the same command
# in the local venv.
run-stage:  ## run one stage: make run-stage STAGE=ingest ARGS="--input ... --output ..."
	@test -n "$(STAGE)" || { echo 'usage: make run-stage STAGE=<stage> ARGS="--input name=URI ... --output URI"' >&2; exit 2; }
	@if docker info >/dev/null 2>&1; then \
	  mkdir -p "$(RUN_CACHE)" && set -x && \
	  docker run --rm --user "$$(id -u):$$(id -g)" --read-only --tmpfs /tmp \
	    --cap-drop ALL --security-opt no-new-privileges \
	    -v "$(CURDIR):/work" -w /work -v "$(RUN_CACHE):/cache" \
	    $(foreach v,$(AWS_ENV),-e $(v)) $(DOCKER_RUN_FLAGS) \
	    "$(REGISTRY)/saliencylab-$(FLAVOUR):$(TAG)" $(STAGE) $(ARGS); \
	else \
	  echo "run-stage: no Docker engine answers (docker info failed); running $(STAGE) in the local venv instead" >&2; \
	  test -x $(BIN)/saliencylab || { echo "run-stage: $(BIN) is missing; run \`make setup\` first" >&2; exit 2; }; \
	  set -x && $(BIN)/saliencylab $(STAGE) $(ARGS); \
	fi

images:  ## build the cpu and gpu images with docker buildx bake, tagged with the commit (add BAKE_FLAGS=--push)
	@command -v docker >/dev/null 2>&1 || { echo "images: no docker command on PATH; install Docker Engine with the buildx plugin (buildx >= 0.18)" >&2; exit 2; }
	@docker buildx version >/dev/null 2>&1 || { echo "images: docker has no buildx plugin (\`docker buildx version\` failed); install docker-buildx-plugin (buildx >= 0.18)" >&2; exit 2; }
	@docker info >/dev/null 2>&1 || { echo "images: no Docker engine answers (\`docker info\` failed); start it, or point DOCKER_HOST or \`docker context use\` at one" >&2; exit 2; }
	@test -n "$(GIT_SHA)" || { echo "images: not a git checkout; the images are tagged with the commit they are built from" >&2; exit 2; }
	@test -z "$$(git status --porcelain -- $(IMAGE_INPUTS))" || { echo "images: uncommitted changes in $(IMAGE_INPUTS); commit them first: the tag must name the code in the image" >&2; exit 2; }
	REGISTRY=$(REGISTRY) TAG=$(TAG) GIT_SHA=$(GIT_SHA) docker buildx bake --metadata-file $(BAKE_METADATA) $(BAKE_FLAGS)

manifests: $(STAMP)  ## re-render images/Dockerfile, docker-bake.hcl and k8s/; pin the images of the last `make images`
	$(BIN)/saliencylab render-cluster $(if $(wildcard $(BAKE_METADATA)),--bake-metadata $(BAKE_METADATA))

manifests-check: $(STAMP)  ## fail if the rendered files are stale; validate the manifests offline
	$(BIN)/saliencylab render-cluster --check
	$(BIN)/python -m pytest -q tests/k8s
