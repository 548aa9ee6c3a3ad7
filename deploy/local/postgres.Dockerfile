# PostgreSQL from Debian's packages, a stand-in for the `postgres` image where no image registry
# is reachable (deploy/compose.yaml: POSTGRES_IMAGE). It takes the same settings as the official
# image's first start: POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, data in PGDATA
# (/var/lib/postgresql/data, the compose volume), password (scram-sha-256) for TCP, trust on the
# local socket only. Build context: deploy/local/.
ARG DEBIAN_IMAGE=tuner-debian:bookworm
FROM ${DEBIAN_IMAGE}
# No main cluster from the package (the entrypoint initialises PGDATA), as the official image.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-common \
 && sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
 && install -d -o postgres -g postgres -m 2775 /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV LANG=C.UTF-8 \
    PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
USER postgres
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
# As the official image: every interface of the container's network (compose's private network;
# in the test stack, a namespace whose only interface is loopback).
CMD ["postgres", "-c", "listen_addresses=*"]
STOPSIGNAL SIGINT
EXPOSE 5432
