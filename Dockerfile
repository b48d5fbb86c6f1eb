# The divtransforms image: Dataflow workers and Prefect flow runs (docs/gcp.md).
#
#   make image IMAGE_TARGET=worker IMAGE=REGION-docker.pkg.dev/PROJECT/divmon/worker:TAG
#   make image IMAGE_TARGET=flow   IMAGE=REGION-docker.pkg.dev/PROJECT/divmon/flow:TAG
#
# BEAM_VERSION has no default: `make image` passes the apache-beam version pinned in
# requirements.lock, the one source of the version the project is tested with
# (tests/flows/test_dockerfile.py). By hand: --build-arg BEAM_VERSION=$(make -s beam-version).
# worker: Apache Beam's Python 3.11 SDK image at that version, plus divtransforms;
#   its entrypoint stays Beam's /opt/apache/beam/boot, as Dataflow's --sdk_container_image needs.
# flow: the same layers with a plain entrypoint, for Prefect workers (docker, Cloud Run,
#   Kubernetes pools) that run `divmon deploy`'s deployments; its Dataflow jobs can use the
#   worker image, so flow and workers run the same code.
ARG BEAM_VERSION

FROM apache/beam_python3.11_sdk:${BEAM_VERSION} AS worker
ARG BEAM_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/divtransforms
COPY pyproject.toml README.md LICENSE ./
COPY divtransforms ./divtransforms
COPY pipelines ./pipelines
COPY flows ./flows
# Beam stays at the image's version: the SDK in the container must match the harness.
RUN pip install "apache-beam[gcp]==${BEAM_VERSION}" ".[gcp,flows,dashboard,stack]" \
    && python -c "import apache_beam, divtransforms, pipelines.check_job, flows.check; \
assert apache_beam.__version__ == '${BEAM_VERSION}', apache_beam.__version__"

FROM worker AS flow
ENV PREFECT_SERVER_ANALYTICS_ENABLED=false
WORKDIR /opt/prefect
ENTRYPOINT []
CMD ["divmon", "--help"]
