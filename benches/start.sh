#!/usr/bin/env bash
# Start latency of a container: `berth run --rm busybox true` (CLI, daemon,
# shim, overlay and all) next to raw `crun run` and `runc run` on a prepared
# OCI bundle of the same busybox rootfs (with berth's seccomp filter, as berth's
# containers have), `podman run --rm --network none` (podman's own filter), and
# `unshare` + `chroot` + exec as the floor. Alternating in one run, RUNS times
# each (default 20), after one untimed warm-up each; medians and ratios are
# printed. Then the resident memory (VmRSS) of the idle berth daemon and of
# one shim, next to podman's conmon.
#
#   benches/start.sh            # RUNS=20
#   RUNS=50 benches/start.sh
#
# Installs crun, runc and podman from Debian when missing. Everything runs in
# a mount + network namespace of its own with temp dirs: the daemon's and
# podman's mounts die with it. In that namespace /sys/fs/cgroup/unified (the
# v2 mount of this hybrid host that holds only hugetlb) is unmounted, because
# crun refuses hybrid layouts; every tool runs under the same layout.
# podman here needs `--cgroup-manager cgroupfs` and explicit ulimits (root
# lacks CAP_SYS_RESOURCE, so its default rlimits cannot be set). Not part of
# scripts/test or CI: it takes about a minute and wants an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-20}"
target="${CARGO_TARGET_DIR:-target}"

scripts/ensure-deps
missing=()
for pkg in crun runc podman jq; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then missing+=("$pkg"); fi
done
if ((${#missing[@]})); then
  echo "start.sh: installing ${missing[*]}" >&2
  sudo=()
  if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build --release --bin berth --bin berth-shim --example make-test-image
berth="$(realpath "$target/release/berth")"
make_image="$(realpath "$target/release/examples/make-test-image")"

work="$(mktemp -d "${TMPDIR:-/tmp}/berth-start-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$make_image" busybox "$work/busybox.tar" >/dev/null

# The sandbox's script is passed as an argument, not on stdin: crun, runc and
# podman would read the rest of it from their inherited stdin.
inner="$(cat <<'SANDBOX'
set -euo pipefail
berth="$1" work="$2" runs="$3"
ip link set lo up
# crun refuses the hybrid layout: take the v2 mount away here. A private tmpfs
# goes in its place, because crun, runc and podman write cgroup directories
# there when it is a plain directory, and that directory is on the host's
# /sys/fs/cgroup tmpfs (shared with the host, hidden under its mount).
if mountpoint -q /sys/fs/cgroup/unified; then
  umount /sys/fs/cgroup/unified
  mount -t tmpfs -o size=1m,mode=0755 bench-unified /sys/fs/cgroup/unified
fi

# Runtime state goes where it goes on a real host: a tmpfs (/run). On this
# host's / (ext4 without a journal, mounted with `discard`) every removed
# file that held a block costs a synchronous discard of ~4 ms, which would
# make each tool's cleanup of its state files the bulk of its start time.
# Persistent state (berth's --root, podman's --root, the bundle) stays on disk.
mkdir -p "$work/state"
mount -t tmpfs -o size=256m,mode=0755 bench-state "$work/state"
state="$work/state"

sock="$work/berth.sock"
b() { "$berth" -H "unix://$sock" --no-autostart "$@"; }
pod=(podman --root "$work/podman/root" --runroot "$state/podman-run" --tmpdir "$state/podman-tmp"
  --cgroup-manager cgroupfs --events-backend none --log-level error)
pod_run=(run --rm --network none --ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
image=localhost/busybox:latest  # podman names an archive tagged busybox:latest so
daemon=""
# podman (cgroupfs) leaves a `libpod_parent` cgroup in every controller; remove it unless it was there before.
had_libpod_parent="$(ls -d /sys/fs/cgroup/*/libpod_parent 2>/dev/null || true)"
cleanup() {
  set +e # best effort: one failed step must not skip the rest
  b rm -f bench-shim >/dev/null 2>&1 || true
  "${pod[@]}" rm -f -t 0 bench-conmon >/dev/null 2>&1 || true
  if [ -n "$daemon" ]; then kill -TERM "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  # podman's and berth's mounts live in this namespace; unmount before the temp dir goes.
  findmnt -rn -o TARGET | grep "^$work" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for d in /sys/fs/cgroup/*/berth-bench-oci; do [ -d "$d" ] && rmdir "$d" 2>/dev/null || true; done
  if [ -z "$had_libpod_parent" ]; then
    # conmon may still be exiting after `podman rm` returned: retry for a few seconds.
    for _ in $(seq 1 50); do
      left=0
      for d in /sys/fs/cgroup/*/libpod_parent; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
        [ -d "$d" ] && left=1
      done
      [ "$left" = 0 ] && break
      sleep 0.1
    done
  fi
}
trap cleanup EXIT

# berth: a daemon on a temp root with the busybox image.
"$berth" daemon --root "$work/root" --run "$state/berth" -H "unix://$sock" 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 1 400); do
  b version >/dev/null 2>&1 && break
  kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
  sleep 0.05
done
b load -i "$work/busybox.tar" >/dev/null

# The OCI bundle: the same busybox layer unpacked, `runc spec` with `true` and
# no terminal, and the seccomp filter berth gives its containers (taken from
# the spec of one berth ran), so that crun and runc load the same filter.
mkdir -p "$work/image" "$work/bundle/rootfs"
tar -xf "$work/busybox.tar" -C "$work/image"
tar -xf "$work/image/$(jq -r '.[0].Layers[0]' "$work/image/manifest.json")" -C "$work/bundle/rootfs"
(cd "$work/bundle" && runc spec)
spec_source="$(b create --network none busybox true)"
b start -a "$spec_source" >/dev/null
jq '.linux.seccomp' "$work/root/containers/$spec_source/config.json" >"$work/seccomp.json"
b rm "$spec_source" >/dev/null
jq --slurpfile seccomp "$work/seccomp.json" \
  '.process.terminal = false | .process.args = ["true"] | .linux.cgroupsPath = "/berth-bench-oci" | .linux.seccomp = $seccomp[0]' \
  "$work/bundle/config.json" >"$work/bundle/config.json.new"
mv "$work/bundle/config.json.new" "$work/bundle/config.json"

# podman: its own temp store with the same image.
"${pod[@]}" load -i "$work/busybox.tar" >/dev/null

declare -A times
seq_no=0
measure() { # name command...
  local name="$1" t0 t1; shift
  t0="$EPOCHREALTIME"
  "$@" >/dev/null
  t1="$EPOCHREALTIME"
  times[$name]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) * 1000 }') "
}
# berth with --network none (like the peers, which get no network) and with
# its default network (bridge: a veth per container, once the network driver
# is in; `none` before that), reported separately as berth-dflt.
berth_run() { b run --rm --network none busybox true; }
berth-dflt_run() { b run --rm busybox true; }
crun_run() { seq_no=$((seq_no + 1)); crun --root "$state/crun" run --bundle "$work/bundle" "bench-crun-$seq_no"; }
runc_run() { seq_no=$((seq_no + 1)); runc --root "$state/runc" run --bundle "$work/bundle" "bench-runc-$seq_no"; }
podman_run() { "${pod[@]}" "${pod_run[@]}" "$image" true; }
chroot_run() { unshare --mount --uts --ipc --pid --net --fork chroot "$work/bundle/rootfs" /bin/true; }
tools=(berth berth-dflt crun runc podman chroot)

for tool in "${tools[@]}"; do "${tool}_run" >/dev/null || { echo "start.sh: $tool failed its warm-up run" >&2; exit 1; }; done
# Each round starts one tool later: whichever tool follows podman pays for
# the tail of its clean-up (conmon exiting, cgroups going), so no tool may
# always be the one that does.
n_tools=${#tools[@]}
for i in $(seq 1 "$runs"); do
  for j in $(seq 0 $((n_tools - 1))); do
    tool="${tools[$(((i + j) % n_tools))]}"
    measure "$tool" "${tool}_run"
  done
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo
echo "start latency, $runs runs each, alternating (ms)"
printf '%-10s %9s   %s\n' tool median runs
declare -A med
for tool in "${tools[@]}"; do
  med[$tool]="$(median "${times[$tool]}")"
  printf '%-10s %9.2f   %s\n' "$tool" "${med[$tool]}" "${times[$tool]}"
done
awk -v d="${med[berth-dflt]}" -v c="${med[crun]}" 'BEGIN { printf "berth-dflt/crun %.2fx (default network)\n", d/c }'
awk -v b="${med[berth]}" -v c="${med[crun]}" -v r="${med[runc]}" -v p="${med[podman]}" -v u="${med[chroot]}" 'BEGIN {
  printf "berth/crun %.2fx   berth/runc %.2fx   berth/podman %.2fx   berth/chroot %.2fx   (target: berth/crun <= 1.5x)\n", b/c, b/r, b/p, b/u }'

rss() { awk '/^VmRSS:/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$1/status"; }
echo
echo "resident memory (VmRSS)"
printf '%-30s %s\n' "berth daemon, idle" "$(rss "$daemon")"
cid="$(b run -d --name bench-shim --network none busybox sleep 1000)"
# Idle means after start-up: the shim trims its start-up code pages once it
# has served no request for 100 ms; give conmon the same second below.
sleep 1
shim=""
for p in /proc/[0-9]*; do
  if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q "shim.*$cid"; then shim="${p#/proc/}"; break; fi
done
if [ -n "$shim" ]; then printf '%-30s %s\n' "berth shim (one container)" "$(rss "$shim")"
else echo "berth shim: not found (no process names container $cid)"; fi
printf '%-30s %s\n' "berth daemon, one container" "$(rss "$daemon")"
"${pod[@]}" run -d --name bench-conmon --network none --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 "$image" sleep 1000 >/dev/null
conmon="$("${pod[@]}" inspect -f '{{.State.ConmonPid}}' bench-conmon)"
sleep 1
if [ -n "$conmon" ] && [ -e "/proc/$conmon/status" ]; then printf '%-30s %s\n' "podman conmon (one container)" "$(rss "$conmon")"
else echo "podman conmon: not measurable"; fi
SANDBOX
)"
unshare --mount --net --propagation private --fork --kill-child -- \
  bash -c "$inner" start.sh "$berth" "$work" "$runs" </dev/null
