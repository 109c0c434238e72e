#!/bin/sh
# A k3s stand-in for the compose test: etcd and kube-apiserver in one container, the admin
# kubeconfig written where k3s writes it ($K3S_KUBECONFIG_OUTPUT, $K3S_KUBECONFIG_MODE). k3s's
# arguments (server --tls-san …) are accepted and ignored; the certificate covers k3s-1 and k3s-2.
set -eu
d=/var/lib/cluster
mkdir -p "$d"
etcd --data-dir "$d/etcd" --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 >"$d/etcd.log" 2>&1 &
c=/etc/cluster
kube-apiserver --etcd-servers=http://127.0.0.1:2379 --secure-port=6443 \
  --tls-cert-file=$c/apiserver.crt --tls-private-key-file=$c/apiserver.key \
  --token-auth-file=$c/tokens.csv --authorization-mode=RBAC \
  --service-account-key-file=$c/sa.pub --service-account-signing-key-file=$c/sa.key \
  --service-account-issuer=https://kubernetes.default.svc --api-audiences=https://kubernetes.default.svc \
  --service-cluster-ip-range=10.96.0.0/16 --disable-admission-plugins=ServiceAccount &
api=$!
until nc -w 1 127.0.0.1 6443 </dev/null >/dev/null 2>&1; do sleep 1; done
out=${K3S_KUBECONFIG_OUTPUT:-/output/kubeconfig.yaml}
cp $c/kubeconfig "$out.tmp" && chmod "${K3S_KUBECONFIG_MODE:-600}" "$out.tmp" && mv "$out.tmp" "$out"
wait $api
