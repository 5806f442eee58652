# Shared by the etcd example's hooks. Runs with the host's rootfs (CI_ROOTFS) as working directory.
set -eu

MEMBER="m-$(echo "$CI_HOST" | tr '.:' '--')"
PEER_URL="http://${CI_HOST}:2380"
CLIENT_URL="http://${CI_HOST}:2379"
DATA_DIR="${ETCD_DATA_DIR:-/var/lib/etcd-example}"
CONF_DIR=/etc/etcd-example

endpoints() {
  out=""
  for ip in $(echo "$CI_MASTERS" | tr ',' ' '); do out="${out:+$out,}http://${ip}:2379"; done
  echo "$out"
}

ctl() { /usr/local/bin/etcdctl --dial-timeout=3s --command-timeout=10s "$@"; }

has_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

install_files() {
  install -d -m 0755 "$CONF_DIR" /usr/local/bin
  install -m 0755 usr/local/bin/etcd /usr/local/bin/etcd-example
  install -m 0755 usr/local/bin/etcdctl /usr/local/bin/etcdctl
  install -d -m 0700 "$DATA_DIR"
  if has_systemd; then
    install -m 0644 etc/systemd/system/etcd-example.service /etc/systemd/system/etcd-example.service
    systemctl daemon-reload
  fi
}

# write_env INITIAL_CLUSTER STATE
write_env() {
  {
    grep -v '^#' config/etcd.conf | grep '=' || true
    echo "ETCD_NAME=${MEMBER}"
    echo "ETCD_DATA_DIR=${DATA_DIR}"
    echo "ETCD_LISTEN_PEER_URLS=${PEER_URL}"
    echo "ETCD_LISTEN_CLIENT_URLS=${CLIENT_URL},http://127.0.0.1:2379"
    echo "ETCD_INITIAL_ADVERTISE_PEER_URLS=${PEER_URL}"
    echo "ETCD_ADVERTISE_CLIENT_URLS=${CLIENT_URL}"
    echo "ETCD_INITIAL_CLUSTER=$1"
    echo "ETCD_INITIAL_CLUSTER_STATE=$2"
    echo "ETCD_INITIAL_CLUSTER_TOKEN=${CI_CLUSTER}"
    [ -n "${ETCD_QUOTA:-}" ] && echo "ETCD_QUOTA_BACKEND_BYTES=${ETCD_QUOTA}"
    true
  } > "$CONF_DIR/etcd.env.new"
  mv "$CONF_DIR/etcd.env.new" "$CONF_DIR/etcd.env"
}

start_etcd() {
  if has_systemd; then
    systemctl enable etcd-example.service >/dev/null 2>&1 || true
    systemctl restart etcd-example.service
  else
    stop_etcd
    # No init system on this host: run detached, with the same environment file the unit uses.
    ( set -a; . "$CONF_DIR/etcd.env"; set +a
      setsid /usr/local/bin/etcd-example >/var/log/etcd-example.log 2>&1 < /dev/null &
      echo $! > /run/etcd-example.pid )
  fi
}

stop_etcd() {
  if has_systemd; then
    systemctl stop etcd-example.service 2>/dev/null || true
  elif [ -f /run/etcd-example.pid ]; then
    pid=$(cat /run/etcd-example.pid)
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    # A leader whose peers stop at the same moment can hang handing over leadership: never leave it running.
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f /run/etcd-example.pid
  fi
}

wait_healthy() {
  for _ in $(seq 1 120); do
    if ctl --endpoints="$CLIENT_URL" endpoint health >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "etcd on ${CI_HOST} did not become healthy" >&2
  [ -f /var/log/etcd-example.log ] && tail -20 /var/log/etcd-example.log >&2
  has_systemd && journalctl -u etcd-example.service -n 20 --no-pager >&2 || true
  return 1
}

is_master() { case ",$CI_ROLES," in *,master,*) return 0;; esac; return 1; }

# The id of a member by name, from any healthy endpoint.
member_id() { ctl --endpoints="$1" member list 2>/dev/null | awk -F', ' -v n="$2" '$3 == n { print $1 }'; }
