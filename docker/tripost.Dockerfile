# syntax=docker/dockerfile:1
# TriPosT (chorus-tripost) on top of chorus/base, with DeepSpeed (the paper's ZeRO-2 + CPU
# optimizer offload) and Ray.
#
# Build (from the repository root; `make docker-tripost` builds both):
#   docker build -f docker/base.Dockerfile -t chorus/base .
#   docker build -f docker/tripost.Dockerfile -t chorus/tripost .
#   (CPU: build chorus/base:cpu as in base.Dockerfile, then add --build-arg BASE=chorus/base:cpu)
# Run (data mounted at /data, results written to ./runs on the host). Offline, on the embedded
# model with the scripted verifier and improver (what `make reproduce-tripost-arithmetic` runs):
#   docker run --rm -v $PWD/../shared/data:/data -v $PWD/runs:/work/runs \
#     chorus/tripost train --recipe arithmetic_offline --num-iterations 1 --run-dir runs/tripost/a
# The paper setting (LLaMA-7B, 8 GPUs, DeepSpeed ZeRO-2 with the optimizer on CPU):
#   docker run --rm --gpus all --ipc=host -e HF_TOKEN -v $PWD/../shared/data:/data \
#     -v $PWD/runs:/work/runs -v $HOME/.cache/huggingface:/cache/huggingface \
#     --entrypoint torchrun chorus/tripost --nproc_per_node 8 -m chorus_tripost.cli train \
#       --recipe arithmetic_llama7b --num-iterations 3 --run-dir runs/tripost/llama7b
# HF_TOKEN (gated models) is passed by name with `-e HF_TOKEN`, never as a value in argv.

ARG BASE=chorus/base:latest
FROM ${BASE}

# DeepSpeed builds its CUDA ops just in time on first use; none are compiled at install.
ENV DS_BUILD_OPS=0
WORKDIR /opt/chorus
COPY packages/tripost/ packages/tripost/
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip install -c constraints.txt -e "shared[train]" -e "packages/tripost[deepspeed,ray]" \
    && chorus-tripost --help >/dev/null

WORKDIR /work
ENTRYPOINT ["chorus-tripost"]
CMD ["--help"]
