# hm2bp GPU worker: a Celery worker that trains jobs on the image's CUDA PyTorch.
#
# The base image brings Python 3.11, CUDA and torch; the project is installed against a constraint
# that pins that torch, so pip never replaces it with another build. The C++ LIF kernel
# (hm2bp_core/kernels) is compiled here, once (`hm2bp kernels build`), instead of on the first job of
# every container. Every command this file runs is also run by tests/client/test_deployment.py.
#
#   docker build -f docker/worker.Dockerfile -t hm2bp-worker .
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${BASE_IMAGE}

# g++ builds the CPU kernels (torch's C++ extension loader); without it the slower tensor code runs
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HM2BP_DATA_DIR=/data \
    HM2BP_ARTIFACTS_URL=/artifacts \
    HM2BP_KERNEL_CACHE=/opt/hm2bp/kernels

RUN useradd --uid 10001 --create-home hm2bp \
 && mkdir -p /app /data /artifacts /opt/hm2bp/kernels \
 && chown hm2bp /data /artifacts /opt/hm2bp/kernels

WORKDIR /app
COPY pyproject.toml README.md ./
COPY hm2bp_core hm2bp_core
COPY hm2bp_client hm2bp_client
COPY hm2bp_service hm2bp_service
COPY worker worker
COPY api api
# s3fs: HM2BP_ARTIFACTS_URL=s3://bucket/prefix (S3 or any S3-compatible store) works out of the box
ARG EXTRA_PACKAGES="s3fs"
# editable: data files (migrations, lif.cpp, the dashboard) are used from /app where they are
RUN python -c "import torch; print(f'torch=={torch.__version__}')" > /tmp/torch-constraint.txt \
 && pip install -c /tmp/torch-constraint.txt -e . ${EXTRA_PACKAGES} \
 && python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

USER hm2bp
RUN hm2bp kernels build

# one worker process per GPU; the queues: gpu for CUDA jobs, cpu for jobs whose spec asks for the CPU.
# Its node name hm2bp@HOSTNAME is what the compose file's health check asks `hm2bp doctor` about.
ENV HM2BP_WORKER_QUEUES=gpu,cpu
CMD ["sh", "-c", "exec hm2bp worker --queue \"$HM2BP_WORKER_QUEUES\" --concurrency 1 --name hm2bp@%h"]
