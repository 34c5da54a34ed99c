#!/usr/bin/env bash
# TCP throughput of berth's networking next to plain loopback, with
# tests/fixtures/tcpbench.c (static; the `netbench` test image carries it):
#
#   loopback   client → server on 127.0.0.1, both in the sandbox (the floor)
#   bridge     container → container across the default bridge (berth0)
#   nat        "another host" (a netns on a veth) → the sandbox's address,
#              published port: kernel DNAT in prerouting, then forwarding
#   nat-local  the sandbox → its own veth address, published port: DNAT in output
#   proxy      the sandbox → 127.0.0.1:hostPort: berth's userland proxy (splice)
#   kernel-br  reference: two namespaces on a plain Linux bridge made with `ip`
#              (MTU 1500, no berth, no nftables): what the kernel's veth and
#              bridge path gives on this machine
#   jumbo      container → container on a user-defined bridge with
#              `-o com.docker.network.driver.mtu=65000`
#
# Alternating in one run, RUNS times each (default 5) after one untimed
# warm-up each, MIB MiB per transfer (default 1024); medians and ratios to
# loopback are printed. Targets: bridge >= 80% of loopback, nat >= 70%.
#
#   benches/net.sh            # RUNS=5 MIB=1024
#   RUNS=9 MIB=2048 benches/net.sh
#
# Everything runs in a mount + network namespace of its own with temp dirs:
# the daemon's bridge, veths, nftables table and mounts die with it. Not part
# of scripts/test or CI: it wants an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-5}"
mib="${MIB:-1024}"
target="${CARGO_TARGET_DIR:-target}"

scripts/ensure-deps
cargo build --release --bin berth --example make-test-image
berth="$(realpath "$target/release/berth")"
make_image="$(realpath "$target/release/examples/make-test-image")"

work="$(mktemp -d "${TMPDIR:-/tmp}/berth-net-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$make_image" netbench "$work/netbench.tar" >/dev/null
cc -static -O2 -o "$work/tcpbench" tests/fixtures/tcpbench.c

inner="$(cat <<'SANDBOX'
set -euo pipefail
berth="$1" work="$2" runs="$3" mib="$4"
tcpbench="$work/tcpbench"
ip link set lo up

sock="$work/berth.sock"
b() { "$berth" -H "unix://$sock" --no-autostart "$@"; }
daemon="" peer="" local_server="" kb_server="" kb_a="" kb_c=""
cleanup() {
  set +e # best effort: one failed step must not skip the rest
  b rm -f bench-srv bench-cli bench-jsrv bench-jcli >/dev/null 2>&1
  b network rm bench-jumbo >/dev/null 2>&1
  for p in "$local_server" "$kb_server" "$kb_a" "$kb_c" "$peer" "$daemon"; do
    if [ -n "$p" ]; then kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; fi
  done
  findmnt -rn -o TARGET | grep "^$work" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
}
trap cleanup EXIT

"$berth" daemon --root "$work/root" --run "$work/run" -H "unix://$sock" 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 1 400); do
  b version >/dev/null 2>&1 && break
  kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
  sleep 0.05
done
b load -i "$work/netbench.tar" >/dev/null

# "Another host": a network namespace held by a sleeping process, on a veth.
unshare --net sleep 100000 &
peer=$!
sleep 0.1
ip link add bench0 type veth peer name bench1
ip link set bench1 netns "$peer"
ip addr add 10.231.0.1/24 dev bench0
ip link set bench0 up
nsenter -t "$peer" -n sh -c 'ip link set lo up; ip addr add 10.231.0.2/24 dev bench1; ip link set bench1 up'

# The reference bridge: two namespaces on a plain Linux bridge.
unshare --net sleep 100000 &
kb_a=$!
unshare --net sleep 100000 &
kb_c=$!
sleep 0.1
ip link add kbr0 type bridge
ip link set kbr0 up
for p in "$kb_a" "$kb_c"; do
  ip link add "kh$p" type veth peer name "ke$p"
  ip link set "kh$p" master kbr0 up
  ip link set "ke$p" netns "$p"
done
nsenter -t "$kb_a" -n sh -c "ip link set lo up; ip addr add 10.232.0.2/24 dev ke$kb_a; ip link set ke$kb_a up"
nsenter -t "$kb_c" -n sh -c "ip link set lo up; ip addr add 10.232.0.3/24 dev ke$kb_c; ip link set ke$kb_c up"
nsenter -t "$kb_a" -n "$tcpbench" server 5001 2>/dev/null &
kb_server=$!

"$tcpbench" server 5001 2>/dev/null &
local_server=$!
b run -d --name bench-srv -p 18080:5001 netbench >/dev/null
b run -d --name bench-cli netbench >/dev/null
srv_ip="$(b inspect -f '{{.NetworkSettings.IPAddress}}' bench-srv)"
jumbo_ip=""
if b network create -o com.docker.network.driver.mtu=65000 bench-jumbo >/dev/null; then
  b run -d --name bench-jsrv --network bench-jumbo netbench >/dev/null
  b run -d --name bench-jcli --network bench-jumbo netbench >/dev/null
  jumbo_ip="$(b inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' bench-jsrv)"
fi
if [ -z "$srv_ip" ]; then echo "net.sh: bench-srv has no address on the bridge" >&2; exit 1; fi
for _ in $(seq 1 100); do
  "$tcpbench" client 127.0.0.1 5001 1 >/dev/null 2>&1 && b exec bench-cli tcpbench client "$srv_ip" 5001 1 >/dev/null 2>&1 && break
  sleep 0.05
done

loopback_run() { "$tcpbench" client 127.0.0.1 5001 "$mib"; }
bridge_run() { b exec bench-cli tcpbench client "$srv_ip" 5001 "$mib"; }
nat_run() { nsenter -t "$peer" -n "$tcpbench" client 10.231.0.1 18080 "$mib"; }
nat_local_run() { "$tcpbench" client 10.231.0.1 18080 "$mib"; }
proxy_run() { "$tcpbench" client 127.0.0.1 18080 "$mib"; }
kernel_br_run() { nsenter -t "$kb_c" -n "$tcpbench" client 10.232.0.2 5001 "$mib"; }
jumbo_run() { b exec bench-jcli tcpbench client "$jumbo_ip" 5001 "$mib"; }
paths=(loopback bridge nat nat_local proxy kernel_br)
if [ -n "$jumbo_ip" ]; then paths+=(jumbo); else echo "net.sh: no MTU 65000 network; skipping jumbo" >&2; fi
for _ in $(seq 1 100); do kernel_br_run >/dev/null 2>&1 && break; sleep 0.05; done

declare -A rates
# A path that fails its warm-up is reported and left out; the rest still run.
ok=()
for p in "${paths[@]}"; do
  if "${p}_run" >/dev/null; then ok+=("$p"); else echo "net.sh: ${p/_/-} failed its warm-up run; left out" >&2; fi
done
[ "${ok[0]:-}" = loopback ] || { echo "net.sh: loopback does not work; nothing to compare with" >&2; exit 1; }
paths=("${ok[@]}")
for i in $(seq 1 "$runs"); do
  for p in "${paths[@]}"; do rates[$p]+="$("${p}_run") "; done
done

# The proxy must not have been what carried the NAT paths: DNAT rules exist.
nft list table ip berth 2>/dev/null | grep -q 'dnat to' || echo "net.sh: warning: no DNAT rule in table ip berth" >&2

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo
echo "TCP throughput, $mib MiB per transfer, $runs runs each, alternating (MB/s)"
printf '%-10s %9s %9s   %s\n' path median "/loopback" runs
lo="$(median "${rates[loopback]}")"
for p in "${paths[@]}"; do
  m="$(median "${rates[$p]}")"
  printf '%-10s %9.1f %8.0f%%   %s\n' "${p/_/-}" "$m" "$(awk -v m="$m" -v l="$lo" 'BEGIN { print 100 * m / l }')" "${rates[$p]}"
done
echo "(targets: bridge >= 80% of loopback, nat >= 70%)"
SANDBOX
)"
unshare --mount --net --propagation private --fork --kill-child -- \
  bash -c "$inner" net.sh "$berth" "$work" "$runs" "$mib" </dev/null
