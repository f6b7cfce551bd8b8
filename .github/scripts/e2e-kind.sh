#!/usr/bin/env bash
# The study on a throw-away kind cluster (.github/workflows/e2e.yml; to run it yourself: docs/cluster.md, "CI: what runs where").
#
# Needs: docker, kind, kubectl, argo (the CLI) and jq on PATH, and the CPU image $IMAGE already
# built on this Docker engine (make images / the workflow's bake step). Steps:
#   1. the study runs locally in the CPU image on the demo data (`saliencylab demo`): the reference;
#   2. a kind cluster, Argo Workflows $ARGO_VERSION, the Secrets, then `kubectl apply -k` of an
#      overlay of k8s/ (tests/ci/e2e_study.py: every template runs $IMAGE, small CPU requests, no GPU);
#   3. the demo data uploaded to MinIO, the study submitted with `argo submit --wait`, random weights;
#   4. tests/ci/e2e_study.py check: every artifact of the local run is in MinIO with the same
#      parameters, shards, samples and keys, the report is there, the exit handler says Succeeded.
# Logs, the cluster state and the report land in $E2E_DIR (uploaded by the workflow).
set -euo pipefail

: "${IMAGE:?IMAGE=<registry>/saliencylab-cpu:<commit>, built and present on this Docker engine}"
: "${ARGO_VERSION:?ARGO_VERSION=vX.Y.Z, the Argo Workflows release to install}"
CLUSTER=${CLUSTER:-saliencylab-e2e}
E2E_DIR=${E2E_DIR:-$PWD/build/e2e}
NS=saliencylab
RUN=s3://saliencylab/e2e/run
DATA=s3://saliencylab/e2e/data
WORKFLOW=saliencylab-e2e-$(date -u +%Y%m%d%H%M%S)
REPO=$(cd "$(dirname "$0")/../.." && pwd)

mkdir -p "$E2E_DIR/logs" "$E2E_DIR/report" "$E2E_DIR/local"
chmod 0777 "$E2E_DIR/local" "$E2E_DIR/report"  # written by the image's non-root user

# A command of tests/ci/e2e_study.py (or saliencylab) in the CPU image, on the host network (MinIO's port-forward).
in_image() {
  docker run --rm --network host --read-only --tmpfs /tmp:mode=1777 --tmpfs /cache:mode=1777 --user 10001:10001 \
    -v "$REPO:/src:ro" -v "$E2E_DIR:/e2e" -w /src -e PYTHONPATH=/src \
    -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_ENDPOINT_URL_S3 -e AWS_REGION \
    "$@"
}

collect() {
  set +e
  kubectl get pods -A -o wide > "$E2E_DIR/logs/pods.txt" 2>&1
  kubectl -n "$NS" get events --sort-by=.lastTimestamp > "$E2E_DIR/logs/events.txt" 2>&1
  kubectl -n "$NS" get workflows -o yaml > "$E2E_DIR/logs/workflows.yaml" 2>&1
  argo -n "$NS" logs "$WORKFLOW" --no-color > "$E2E_DIR/logs/workflow.log" 2>&1
  kubectl -n argo logs deploy/workflow-controller > "$E2E_DIR/logs/workflow-controller.log" 2>&1
  kind export logs "$E2E_DIR/logs/kind" --name "$CLUSTER" > /dev/null 2>&1
  [ -n "${FORWARD_PID:-}" ] && kill "$FORWARD_PID" 2> /dev/null
  return 0
}

echo "::group::local reference run (saliencylab demo in $IMAGE)"
in_image "$IMAGE" demo --workdir /e2e/local
echo "::endgroup::"

echo "::group::kind cluster, Argo Workflows $ARGO_VERSION"
kind create cluster --name "$CLUSTER" --wait 5m
trap collect EXIT
kind load docker-image "$IMAGE" --name "$CLUSTER"
kubectl create namespace argo
kubectl apply -n argo --server-side \
  -f "https://github.com/argoproj/argo-workflows/releases/download/$ARGO_VERSION/install.yaml"
kubectl -n argo rollout status deploy/workflow-controller --timeout 5m
echo "::endgroup::"

echo "::group::Secrets and kubectl apply -k (k8s/ with the e2e overlay)"
kubectl create namespace "$NS"
# Fresh random credentials, never printed: written to files readable only by this user.
umask 077
printf 'MINIO_ROOT_USER=admin\nMINIO_ROOT_PASSWORD=%s\n' "$(openssl rand -hex 24)" > "$E2E_DIR/minio-root.env"
AWS_ACCESS_KEY_ID=saliencylab AWS_SECRET_ACCESS_KEY=$(openssl rand -hex 24)
printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > "$E2E_DIR/s3.env"
umask 022
kubectl -n "$NS" create secret generic minio-root --from-env-file "$E2E_DIR/minio-root.env"
kubectl -n "$NS" create secret generic saliencylab-s3 --from-env-file "$E2E_DIR/s3.env"
rm -f "$E2E_DIR/minio-root.env" "$E2E_DIR/s3.env"
# Written in the container (/e2e/overlay), applied here: it names k8s/ by its path from $E2E_DIR/overlay.
mkdir -p "$E2E_DIR/overlay" && chmod 0777 "$E2E_DIR/overlay"
in_image --entrypoint python "$IMAGE" -m tests.ci.e2e_study overlay --image "$IMAGE" --out /e2e/overlay \
  --base "$(realpath --relative-to "$E2E_DIR/overlay" "$REPO/k8s")"
kubectl apply -k "$E2E_DIR/overlay"
kubectl -n "$NS" rollout status deploy/minio --timeout 5m
kubectl -n "$NS" wait --for=condition=complete job/minio-bucket --timeout 5m
echo "::endgroup::"

echo "::group::demo data to MinIO"
kubectl -n "$NS" port-forward svc/minio 9000:9000 > "$E2E_DIR/logs/port-forward.log" 2>&1 &
FORWARD_PID=$!
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_ENDPOINT_URL_S3=http://127.0.0.1:9000 AWS_REGION=us-east-1
for _ in $(seq 30); do curl -sf "$AWS_ENDPOINT_URL_S3/minio/health/ready" > /dev/null && break; sleep 2; done
in_image --entrypoint python "$IMAGE" -m tests.ci.e2e_study upload /e2e/local/data "$DATA"
echo "::endgroup::"

echo "::group::argo submit --wait (workflow $WORKFLOW)"
# The demo's sizes (jobs/cli.py, demo): 256 px, 2 samples per shard, CAM batches of 2, 200 bootstrap draws.
# Two workers for each GPU stage: the fan-out and merge run, and shards split across pods.
# A failed workflow still goes on to the check below, which says what is missing.
argo submit -n "$NS" --from workflowtemplate/saliencylab-study --entrypoint corrected --name "$WORKFLOW" --wait \
  -p images="$DATA/VOC2012" -p masks="$DATA/synthetic_attention_masks" -p run="$RUN" \
  -p ingest-params='size: 256, shard_size: 2' -p cam-params='batch_size: 2' -p compare-params='bootstrap: 200' \
  -p cam-shards=2 -p deepgaze-shards=2 -p cam-memory=4Gi -p deepgaze-memory=4Gi \
  || echo "argo submit exited with $?"
phase=$(argo -n "$NS" get "$WORKFLOW" -o json | jq -r .status.phase)
echo "workflow $WORKFLOW: $phase"
echo "::endgroup::"

echo "::group::check the run in MinIO"
checked=0
in_image --entrypoint python "$IMAGE" -m tests.ci.e2e_study check \
  --expected /e2e/local/run --run "$RUN" --workflow "$WORKFLOW" --report-to /e2e/report || checked=$?
echo "::endgroup::"
if [ "$phase" != Succeeded ] || [ "$checked" != 0 ]; then
  echo "::error::workflow $WORKFLOW: $phase; run check exit code $checked (logs: the job's e2e-logs-and-report artifact)"
  exit 1
fi
