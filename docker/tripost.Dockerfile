# syntax=docker/dockerfile:1
# TriPosT (chorus-tripost) on top of chorus/base.
#
# Build (from the repository root; `make docker-tripost` builds both):
#   docker build -f docker/base.Dockerfile -t chorus/base .
#   docker build -f docker/tripost.Dockerfile -t chorus/tripost .
#   (CPU: build chorus/base:cpu as in base.Dockerfile, then add --build-arg BASE=chorus/base:cpu)
# Run (data mounted at /data, results written to ./runs on the host), offline on the embedded
# model with the scripted verifier and improver:
#   docker run --rm -v $PWD/../shared/data:/data -v $PWD/runs:/work/runs \
#     chorus/tripost collect --recipe arithmetic_default --run-dir runs/tripost-collect-0
# HF_TOKEN (gated models) is passed by name with `-e HF_TOKEN`, never as a value in argv.

ARG BASE=chorus/base:latest
FROM ${BASE}

WORKDIR /opt/chorus
COPY packages/tripost/ packages/tripost/
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip install -c constraints.txt -e packages/tripost && chorus-tripost --help >/dev/null

WORKDIR /work
ENTRYPOINT ["chorus-tripost"]
CMD ["--help"]
