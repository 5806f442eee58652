#!/usr/bin/env bash
# Prepares a Debian 12 machine for cloudimage: checks Node.js, installs the Debian packages that are missing, installs
# the npm dependencies and builds the CLI. Safe to run again: it does only what is missing and says what it did.
# Node.js itself is never installed here: Debian 12's nodejs is 18 (too old), and Debian's npm conflicts with the
# nodejs package of NodeSource, where most machines get Node.js 20 from.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_MIN=20
# The tools cloudimage and its tests run: sshd and ssh-keygen, ip and tc, etcd for the example, skopeo and
# docker-registry for the registry tests (with openssl and python3), debootstrap and systemd-nspawn for systemd hosts,
# buildah, sudo for the README's `sudo npm run demo`, and pssh (parallel-ssh) as the bench's peer for no-op runs.
PACKAGES=(openssh-server openssh-client iproute2 etcd-server etcd-client skopeo docker-registry debootstrap
  systemd-container openssl ca-certificates buildah python3 sudo pssh)

say() { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: %s\n' "$*" >&2; exit 1; }

NODE_HELP="Install Node.js ${NODE_MIN} or newer, for example from NodeSource (as root):
  apt-get install -y curl && curl -fsSL https://deb.nodesource.com/setup_${NODE_MIN}.x | bash - && apt-get install -y nodejs
or from https://nodejs.org/en/download, then run this script again.
Do not install Debian's nodejs and npm packages: Debian 12's nodejs is 18, and its npm conflicts with NodeSource's nodejs."

# 1. Node.js and npm
command -v node >/dev/null 2>&1 || fail "Node.js is not installed.
${NODE_HELP}"
node_version=$(node -p 'process.versions.node')
if (( ${node_version%%.*} < NODE_MIN )); then
  fail "Node.js ${node_version} ($(command -v node)) is too old: cloudimage needs ${NODE_MIN} or newer.
${NODE_HELP}"
fi
command -v npm >/dev/null 2>&1 || fail "Node.js ${node_version} is installed but npm is not (NodeSource's and nodejs.org's Node.js include it).
${NODE_HELP}"
say "Node.js ${node_version} and npm $(npm -v) found ($(command -v node))"
case "$(dirname "$(command -v node)")" in
  /usr/local/sbin | /usr/local/bin | /usr/sbin | /usr/bin | /sbin | /bin) ;;
  *) say "note: sudo looks for programs in /usr/local/bin, /usr/bin and /bin only, so \`sudo npm run demo\` will not find this Node.js; run it as root with this PATH instead: sudo env \"PATH=\$PATH\" npm run demo" ;;
esac

# 2. Debian packages, only the missing ones (no `apt-get update` when nothing is missing)
command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 ||
  fail "this script sets up Debian 12 (dpkg and apt-get not found); elsewhere, install the equivalents of: ${PACKAGES[*]}"
missing=()
for p in "${PACKAGES[@]}"; do
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" == installed ]] || missing+=("$p")
done
if (( ${#missing[@]} == 0 )); then
  say "Debian packages: all ${#PACKAGES[@]} installed already"
else
  (( EUID == 0 )) || fail "missing Debian packages: ${missing[*]}; run this script as root (sudo scripts/setup.sh) to install them"
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

# 3. npm dependencies, exactly as locked; skipped when node_modules was installed from this lock file by this Node.js
stamp=node_modules/.cloudimage-setup
wanted="$(sha256sum package-lock.json | cut -d' ' -f1) node-${node_version}"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
  say "npm dependencies: node_modules already matches package-lock.json"
else
  say "installing npm dependencies (npm ci)"
  npm ci
  printf '%s\n' "$wanted" >"$stamp"
fi

# 4. The CLI
say "building the CLI (npm run build)"
npm run build --silent
say "ready: dist/engine/cli/bin.js is the CLI (\`npm link\` puts \`ci\` on your PATH); try \`sudo npm run demo\`, then \`npm test\`"
