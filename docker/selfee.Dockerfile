# syntax=docker/dockerfile:1
# SelFee (chorus-selfee) on top of chorus/base.
#
# Build (from the repository root; `make docker-selfee` builds both):
#   docker build -f docker/base.Dockerfile -t chorus/base .
#   docker build -f docker/selfee.Dockerfile -t chorus/selfee .
# Run revision-enforced inference of a trained model (mounted at /models/selfee) on Vicuna-80:
#   docker run --rm --gpus all --ipc=host -v $PWD/../shared/data:/data \
#     -v $PWD/runs:/work/runs -v $PWD/runs/selfee/train/model:/models/selfee \
#     chorus/selfee infer --model hf:/models/selfee --max-num-revision 2 --out runs/selfee-k2
# API keys (teacher or judge on an OpenAI-compatible server) travel by name: -e OPENAI_API_KEY.
# The default command serves nothing yet: FastChat serving is not implemented (see README).

ARG BASE=chorus/base:latest
FROM ${BASE}

WORKDIR /opt/chorus
COPY packages/selfee/ packages/selfee/
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip install -c constraints.txt -e packages/selfee && chorus-selfee --help >/dev/null

WORKDIR /work
ENTRYPOINT ["chorus-selfee"]
CMD ["--help"]
