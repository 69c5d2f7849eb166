#!/usr/bin/env bash
# What makes a machine a homelab/postgres node: ONE copy, run by the image build (Dockerfile) and by the
# machine platform on VMs and SSH hosts (components/platform/machine-node.ts, ADR 0018).
#   install.sh packages      the postgres user (uid/gid 999 where it is new), the Debian packages (skipped
#                            when already installed: the VM image bakes them in), the directories
#   install.sh files <dir>   the role scripts of the build context <dir> into place, and image.env: the
#                            environment the Dockerfile's ENV gives containers, for systemd and ssh on machines
# Idempotent: a second run changes nothing. Never `set -x`.
set -Eeuo pipefail

PG_MAJOR="${PG_MAJOR:-17}"
POSTGRES_UID="${POSTGRES_UID:-999}"
POSTGRES_GID="${POSTGRES_GID:-999}"
# prometheus-node-exporter: the textfile and filesystem collectors every node serves to the monitoring node (ADR 0016)
PACKAGES=("postgresql-${PG_MAJOR}" pgbackrest openssl ca-certificates procps iproute2 prometheus-node-exporter)

installed() {
  local p
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || return 1
  done
}

packages() {
  getent group postgres >/dev/null || groupadd --system --gid "$POSTGRES_GID" postgres
  id -u postgres >/dev/null 2>&1 || useradd --system --uid "$POSTGRES_UID" --gid postgres --home-dir /var/lib/postgresql \
    --no-create-home --shell /bin/bash postgres
  install -d -o postgres -g postgres -m 0755 /var/lib/postgresql
  export DEBIAN_FRONTEND=noninteractive
  if ! installed postgresql-common; then
    apt-get update
    apt-get install -y --no-install-recommends postgresql-common
  fi
  # no "main" cluster from the package: the entrypoint owns initdb
  sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
  grep -q '^create_main_cluster = false' /etc/postgresql-common/createcluster.conf
  if ! installed "${PACKAGES[@]}"; then
    apt-get update
    # contrib (amcheck, pg_stat_statements, ...) ships inside postgresql-17 on Debian
    apt-get install -y --no-install-recommends "${PACKAGES[@]}"
  fi
  if [ "${HOMELAB_INSTALL_CLEAN:-0}" = 1 ]; then
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/dpkg.log
  fi
  install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
  install -d -o postgres -g postgres -m 0750 /var/lib/pgbackrest /var/log/pgbackrest /var/spool/pgbackrest
  install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  install -d -m 0755 /etc/pgbackrest /etc/pgbackrest/conf.d /etc/homelab
  test -f "/usr/lib/postgresql/${PG_MAJOR}/lib/amcheck.so"
  "/usr/lib/postgresql/${PG_MAJOR}/bin/postgres" --version
  /usr/bin/pgbackrest version
}

files() {
  local ctx="$1"
  install -d -m 0755 /usr/local/lib/homelab /usr/local/bin
  install -m 0644 "$ctx"/lib/*.sh /usr/local/lib/homelab/
  install -m 0755 "$ctx"/bin/* /usr/local/bin/
  install -m 0755 "$ctx/entrypoint.sh" /usr/local/bin/homelab-entrypoint
  install -m 0755 "$ctx/install.sh" /usr/local/lib/homelab/install.sh
  # The environment of every process of the node (the Dockerfile's ENV says the same for containers).
  printf 'PG_MAJOR=%s\nPGDATA=%s\nLANG=C.UTF-8\nPATH=%s\n' "$PG_MAJOR" /var/lib/postgresql/data \
    "/usr/local/sbin:/usr/local/bin:/usr/lib/postgresql/${PG_MAJOR}/bin:/usr/sbin:/usr/bin:/sbin:/bin" >/usr/local/lib/homelab/image.env
  chmod 0644 /usr/local/lib/homelab/image.env
  bash -n /usr/local/bin/homelab-entrypoint
  perl -c /usr/local/bin/homelab-sync-roles
  perl -c /usr/local/bin/homelab-pgbackrest-metrics
}

case "${1:-}" in
  packages) packages ;;
  files) [ -n "${2:-}" ] || { echo "usage: install.sh files <context dir>" >&2; exit 2; }; files "$2" ;;
  *) echo "usage: install.sh packages | files <context dir>" >&2; exit 2 ;;
esac
