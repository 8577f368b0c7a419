# One Slony-I node: PostgreSQL PG_MAJOR with PL/Python, Slony-I 2.2 (slon, slonik) and a small
# supervisor, all from Debian. BASE is Debian's image where a registry is reachable; the test suite
# passes its own, debootstrapped from Debian's archive (tests/slonybed/images.py).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
ARG PG_MAJOR=15
# No main cluster: the entrypoint makes the node's own, under PGDATA.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-common \
 && sed -i 's/^#\?\s*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        postgresql-${PG_MAJOR} postgresql-plpython3-${PG_MAJOR} postgresql-${PG_MAJOR}-slony1-2 slony1-2-bin \
 && rm -rf /var/lib/apt/lists/*
ENV PG_MAJOR=${PG_MAJOR} PGDATA=/var/lib/postgresql/data PGPORT=5432 \
    PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY node-entrypoint /usr/local/bin/node-entrypoint
# A checkout may not keep the file's mode (core.fileMode=false, a zip download).
RUN chmod 0755 /usr/local/bin/node-entrypoint
ENTRYPOINT ["/usr/local/bin/node-entrypoint"]
