# syntax=docker/dockerfile:1
# Multi-agent debate (chorus-debate) on top of chorus/base.
#
# Build (from the repository root; `make docker-debate` builds both):
#   docker build -f docker/base.Dockerfile -t chorus/base .
#   docker build -f docker/debate.Dockerfile -t chorus/debate .
#   (CPU: build chorus/base:cpu as in base.Dockerfile, then add --build-arg BASE=chorus/base:cpu)
# Run (data mounted at /data, results written to ./runs on the host):
#   docker run --rm --gpus all --ipc=host -e HF_TOKEN \
#     -v $PWD/../shared/data:/data -v $PWD/runs:/work/runs \
#     -v $HOME/.cache/huggingface:/cache/huggingface \
#     chorus/debate generate --recipe gsm_mistral7b \
#       --model vllm:mistralai/Mistral-7B-Instruct-v0.2 --method debate --out runs/gsm
#   Offline, on the embedded model:  docker run --rm -v $PWD/../shared/data:/data \
#     -v $PWD/runs:/work/runs chorus/debate generate --recipe gsm_default --model default \
#       --method debate --limit 10 --out runs/gsm-default
# HF_TOKEN (gated models) is passed by name with `-e HF_TOKEN`, never as a value in argv.
# --ipc=host: vLLM and torch workers share tensors through /dev/shm, which Docker caps at 64 MB.

ARG BASE=chorus/base:latest
FROM ${BASE}

WORKDIR /opt/chorus
COPY packages/debate/ packages/debate/
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip install -c constraints.txt -e packages/debate && chorus-debate --help >/dev/null

WORKDIR /work
ENTRYPOINT ["chorus-debate"]
CMD ["--help"]
