# The userbus image: one image for every process, chosen by the command.
#   docker build -t userbus .
#   docker run userbus migrate | api --host 0.0.0.0 --port 8000 | relay | consume profiles
# Configuration comes only from USERBUS_* environment variables (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src

# The pinned dependencies get their own layer, so a source change does not reinstall them.
# requirements.lock is compiled with the dev extra: installing it whole keeps the image on the
# exact versions CI tested, and the dev tools are then removed in the same layer (they would add
# about 55 MB: mypy and ruff alone are 50; kubernetes-validate's schemas are 22 MB more). If one of them ever becomes a runtime dependency,
# `pip check` below fails the build instead of shipping a broken image.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock \
    && pip uninstall --yes httpx mypy pytest pytest-asyncio ruff kubernetes-validate

# --no-deps: everything is pinned above; pip must not resolve anything anew here.
COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && pip check \
    && cd / && rm -rf /src

# A fixed numeric uid, so orchestrators can verify runAsNonRoot and hosts can grant it files
# (the JWT key secret must be readable by uid 10001, see docker-compose.yml).
RUN useradd --system --uid 10001 --user-group --home-dir /app --create-home \
    --shell /usr/sbin/nologin userbus
WORKDIR /app
USER 10001:10001

EXPOSE 8000
ENTRYPOINT ["userbus"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
