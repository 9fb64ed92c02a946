# The ChatNation engine image: gateway, workers, CLI and simulators (the command picks the process).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # run the sources in /app (sql/ migrations are found next to engine/), not a copy in site-packages
    PYTHONPATH=/app

WORKDIR /app
# The colour emoji font HypeCards draw with (SIL OFL 1.1); the text font comes with the Python dependencies.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends fonts-noto-color-emoji \
    && rm -rf /var/lib/apt/lists/*
# Dependencies first, so that a source change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p engine handlers state_machines simulators \
    && touch engine/__init__.py handlers/__init__.py state_machines/__init__.py simulators/__init__.py \
    worker.py webhook_gateway.py \
    && pip install . \
    && rm -rf engine handlers state_machines simulators worker.py webhook_gateway.py
COPY engine ./engine
COPY handlers ./handlers
COPY state_machines ./state_machines
COPY simulators ./simulators
COPY sql ./sql
COPY worker.py webhook_gateway.py ./
RUN pip install --no-deps . && useradd --create-home --uid 10001 chatnation
USER chatnation

EXPOSE 8080 9100
CMD ["python", "worker.py", "--role", "all"]
