#!/usr/bin/env bash
# The main job on the built-in default: build the etcd example and run it as a 3-member cluster on hosts this
# machine creates (provider LOCAL; needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
DESTROY="node dist/engine/cli/bin.js destroy -f examples/etcd/Clusterfile --auto-approve"
trap 'echo "demo: failed; remove whatever it made with: sudo $DESTROY" >&2' ERR
ci() { node dist/engine/cli/bin.js "$@"; }
ci build -t etcd-example:v1 examples/etcd
ci apply -f examples/etcd/Clusterfile --auto-approve
ci state list -f examples/etcd/Clusterfile
master0=$(ci state show etcd-demo-master-1 -f examples/etcd/Clusterfile | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).ip))')
etcdctl --endpoints="http://${master0}:2379" endpoint health --cluster
echo "demo: etcd-demo runs on 3 local hosts; remove it with: sudo $DESTROY"
