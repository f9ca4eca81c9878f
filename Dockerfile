# The analytics service image: one image for every role (`analytics serve | migrate | ingest | worker | demo`).
FROM python:3.12.12-slim-trixie AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# pyproject names README.md as the package's long description, so the build needs it.
COPY pyproject.toml README.md ./
COPY service/ service/
RUN python -m venv /opt/analytics && /opt/analytics/bin/pip install .[parquet]
# The SQL ships inside the package (service/db/): check that the installed package (-I: not the copy in /src)
# finds the first migration.
RUN /opt/analytics/bin/python -I -c 'from service.storage.migrations import DB_DIR; assert (DB_DIR / "migrations" / "0001_core.sql").is_file(), DB_DIR'

FROM python:3.12.12-slim-trixie

ENV PATH=/opt/analytics/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 analytics \
    && useradd --system --uid 10001 --gid analytics --home-dir /app --no-create-home --shell /usr/sbin/nologin analytics
COPY --from=build /opt/analytics /opt/analytics
# Settings come from the environment (or a .env in the working directory); nothing is written here.
WORKDIR /app
USER analytics:analytics
EXPOSE 8000 9101 9102
ENTRYPOINT ["analytics"]
CMD ["serve"]
