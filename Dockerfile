# The ChatNation engine image: gateway, workers, CLI and simulators (the command picks the process), run from
# the installed package (migrations and demo content are its package data), not from a copy of the sources.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY engine ./engine
COPY handlers ./handlers
COPY state_machines ./state_machines
COPY simulators ./simulators
COPY sql ./sql
COPY demo ./demo
COPY worker.py webhook_gateway.py ./
RUN pip wheel --no-deps --wheel-dir /dist .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The colour emoji font HypeCards draw with (SIL OFL 1.1); the text font comes with the Python dependencies.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends fonts-noto-color-emoji \
    && rm -rf /var/lib/apt/lists/*
# Dependencies first, exactly as locked (every hash checked), so that a source change does not reinstall them.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes -r /tmp/requirements.lock && rm /tmp/requirements.lock
COPY --from=build /dist /tmp/dist
RUN pip install --no-deps /tmp/dist/*.whl && rm -rf /tmp/dist && useradd --create-home --uid 10001 chatnation
USER chatnation
WORKDIR /home/chatnation

EXPOSE 8080 9100
CMD ["chatnation-worker", "--role", "all"]
