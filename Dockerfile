# One image for both processes (and the certs tool): the Deployment picks the command.
# BASE is any Python >= 3.11 image with pip; `make image` uses python:3.11-slim, the tests a Debian bookworm
# base made from Debian's packages (tests/node/images.sh: no registry is reachable there).
ARG BASE=python:3.11-slim
FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook webhook
COPY refresher refresher
COPY certs certs
COPY common common
RUN python3 -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${BASE}
COPY --from=build /wheels /wheels
# Bytecode is compiled here, at build time: the root filesystem is read-only at run time, and nothing tries to
# write there (PYTHONDONTWRITEBYTECODE; no temp files: the processes keep everything in memory).
RUN python3 -m pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && python3 -c "import webhook, refresher, certs, common"
# Non-root, matching runAsUser in manifests/; the root filesystem is mounted read-only there.
USER 65532:65532
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT []
CMD ["flux-passwordless-webhook", "--help"]
