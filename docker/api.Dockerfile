# hm2bp API: FastAPI under uvicorn. It validates specs and checks that a network fits its dataset
# (hm2bp_core, hence torch) but never trains, so the CPU build of torch is enough.
#
#   docker build -f docker/api.Dockerfile -t hm2bp-api .
#
# Every command this file runs is also run by tests/client/test_deployment.py.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HM2BP_DATA_DIR=/data \
    HM2BP_ARTIFACTS_URL=/artifacts

RUN useradd --uid 10001 --create-home hm2bp \
 && mkdir -p /app /data /artifacts \
 && chown hm2bp /data /artifacts

# the same torch release as the worker image, CPU build
ARG TORCH_VERSION=2.5.1
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY hm2bp_core hm2bp_core
COPY hm2bp_client hm2bp_client
COPY hm2bp_service hm2bp_service
COPY worker worker
COPY api api
ARG EXTRA_PACKAGES="s3fs"
# editable: data files (migrations, the dashboard's static files) are used from /app where they are
RUN echo "torch==${TORCH_VERSION}" > /tmp/torch-constraint.txt \
 && pip install -c /tmp/torch-constraint.txt -e . ${EXTRA_PACKAGES}

USER hm2bp
EXPOSE 8000
# uvicorn worker processes; behind a TLS proxy, set FORWARDED_ALLOW_IPS to the proxy's address
ENV HM2BP_API_WORKERS=2
CMD ["sh", "-c", "exec uvicorn api.app:create_app --factory --host 0.0.0.0 --port 8000 --workers \"$HM2BP_API_WORKERS\" --http api.slow_clients:HeaderDeadlineProtocol"]
