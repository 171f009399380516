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
# Default command: serve the model mounted at /models/selfee behind FastChat (controller +
# SelFee worker + OpenAI-compatible API server) on port 8000, 2 enforced revisions:
#   docker run --rm --gpus all -p 8000:8000 -v $PWD/runs/selfee/train/model:/models/selfee \
#     -e CHORUS_SELFEE_API_KEYS chorus/selfee
#   then: OpenAI(base_url="http://localhost:8000/v1").chat.completions.create(model="selfee", ...)

ARG BASE=chorus/base:latest
FROM ${BASE}

# DeepSpeed (chorus-shared[train]) builds its CUDA ops just in time on first use; none are
# compiled at install.
ENV DS_BUILD_OPS=0
WORKDIR /opt/chorus
COPY packages/selfee/ packages/selfee/
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip install -c constraints.txt -e "shared[train]" -e "packages/selfee[serve]" \
    && chorus-selfee --help >/dev/null

WORKDIR /work
EXPOSE 8000
ENTRYPOINT ["chorus-selfee"]
CMD ["serve", "--model", "hf:/models/selfee", "--model-name", "selfee", "--max-num-revision", "2", \
     "--host", "0.0.0.0", "--port", "8000", "--log-dir", "/tmp/selfee-serve-logs"]
