# syntax=docker/dockerfile:1
# alpha-UMi (chorus-alpha-umi) on top of chorus/base.
#
# Build (from the repository root; `make docker-alpha_umi` builds both):
#   docker build -f docker/base.Dockerfile -t chorus/base .
#   docker build -f docker/alpha_umi.Dockerfile -t chorus/alpha_umi .
# Static evaluation of three role models (mounted under /models) on the ToolBench test file:
#   docker run --rm --gpus all --ipc=host -v $PWD/../shared/data:/data -v $PWD/runs:/work/runs \
#     -v $PWD/runs/alpha_umi/train:/models chorus/alpha_umi evaluate \
#     --planner vllm:/models/planner/model --caller vllm:/models/caller/model \
#     --summarizer vllm:/models/summarizer/model --out runs/alpha_umi/static-multi
# API keys (OpenAI-compatible role servers) travel by name: -e OPENAI_API_KEY.

ARG BASE=chorus/base:latest
FROM ${BASE}

# DeepSpeed (chorus-shared[train]) builds its CUDA ops just in time on first use; none are
# compiled at install.
ENV DS_BUILD_OPS=0
WORKDIR /opt/chorus
COPY packages/alpha_umi/ packages/alpha_umi/
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip install -c constraints.txt -e "shared[train]" -e packages/alpha_umi \
    && chorus-alpha-umi --help >/dev/null

WORKDIR /work
ENTRYPOINT ["chorus-alpha-umi"]
CMD ["--help"]
