#!/usr/bin/env bash
# The main job on the built-in default: build the etcd example and run it as a 3-member cluster on hosts this
# machine creates (provider LOCAL; needs root). Tear it down with: ci destroy -f examples/etcd/Clusterfile --auto-approve
set -euo pipefail
cd "$(dirname "$0")/.."
ci() { node dist/engine/cli/bin.js "$@"; }
ci build -t etcd-example:v1 examples/etcd
ci apply -f examples/etcd/Clusterfile --auto-approve
ci state list -f examples/etcd/Clusterfile
master0=$(ci state show etcd-demo-master-1 -f examples/etcd/Clusterfile | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).ip))')
etcdctl --endpoints="http://${master0}:2379" endpoint health --cluster
