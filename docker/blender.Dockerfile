# syntax=docker/dockerfile:1
# LLM-Blender (chorus-blender) on top of chorus/base.
#
# Build (from the repository root; `make docker-blender` builds both):
#   docker build -f docker/base.Dockerfile -t chorus/base .
#   docker build -f docker/blender.Dockerfile -t chorus/blender .
# Run (inputs and results under ./runs on the host; hub cache mounted for PairRM weights):
#   docker run --rm --gpus all -v $PWD/runs:/work/runs \
#     -v $HOME/.cache/huggingface:/cache/huggingface \
#     chorus/blender rank --ranker llm-blender/PairRM-hf \
#       --input runs/items.jsonl --out runs/ranked
# HF_TOKEN (gated models) is passed by name with `-e HF_TOKEN`, never as a value in argv.

ARG BASE=chorus/base:latest
FROM ${BASE}

# DeepSpeed (chorus-shared[train]) builds its CUDA ops just in time on first use; none are
# compiled at install.
ENV DS_BUILD_OPS=0
WORKDIR /opt/chorus
COPY packages/blender/ packages/blender/
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip install -c constraints.txt -e "shared[train]" -e packages/blender \
    && chorus-blender --help >/dev/null

WORKDIR /work
ENTRYPOINT ["chorus-blender"]
CMD ["--help"]
