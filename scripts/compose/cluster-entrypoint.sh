#!/bin/sh
# A k3s stand-in for the compose test: etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler in one container, and the demo Deployment local-up runs (demo/hello; there is no
# node, so its ReplicaSet's Pods stay Pending). The admin kubeconfig is written where k3s writes
# it ($K3S_KUBECONFIG_OUTPUT, with $K3S_KUBECONFIG_MODE). k3s's arguments (server --tls-san …)
# are accepted and ignored; the certificate covers k3s-1 and k3s-2.
set -eu
d=/var/lib/cluster
c=/etc/cluster
mkdir -p "$d"
etcd --data-dir "$d/etcd" --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 >"$d/etcd.log" 2>&1 &
kube-apiserver --etcd-servers=http://127.0.0.1:2379 --secure-port=6443 \
  --tls-cert-file=$c/apiserver.crt --tls-private-key-file=$c/apiserver.key \
  --token-auth-file=$c/tokens.csv --authorization-mode=RBAC \
  --service-account-key-file=$c/sa.pub --service-account-signing-key-file=$c/sa.key \
  --service-account-issuer=https://kubernetes.default.svc --api-audiences=https://kubernetes.default.svc \
  --service-cluster-ip-range=10.96.0.0/16 --disable-admission-plugins=ServiceAccount >"$d/apiserver.log" 2>&1 &
api=$!
until nc -w 1 127.0.0.1 6443 </dev/null >/dev/null 2>&1; do
  kill -0 $api 2>/dev/null || { tail -20 "$d/apiserver.log" >&2; exit 1; }
  sleep 1
done
common="--kubeconfig=$c/kubeconfig --authentication-kubeconfig=$c/kubeconfig --authorization-kubeconfig=$c/kubeconfig --bind-address=127.0.0.1 --secure-port=0 --port=0 --leader-elect=false"
# shellcheck disable=SC2086 # $common is a list of flags
kube-controller-manager $common --service-account-private-key-file=$c/sa.key --root-ca-file=$c/ca.crt \
  --controllers='*,-nodeipam,-service,-route,-cloud-node-lifecycle' >"$d/controller-manager.log" 2>&1 &
# shellcheck disable=SC2086
kube-scheduler $common >"$d/scheduler.log" 2>&1 &
until kubectl --kubeconfig=$c/kubeconfig apply -f $c/demo.yaml >"$d/demo.log" 2>&1; do sleep 1; done
out=${K3S_KUBECONFIG_OUTPUT:-/output/kubeconfig.yaml}
umask 077
cp $c/kubeconfig "$out.tmp" && chmod "${K3S_KUBECONFIG_MODE:-600}" "$out.tmp" && mv "$out.tmp" "$out"
wait $api
