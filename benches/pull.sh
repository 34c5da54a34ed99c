#!/usr/bin/env bash
# `berth pull` of a one-layer image from a registry on loopback, next to
# `skopeo copy` to `dir:` (the fetch alone), `gzip -dc` of the layer (the
# decompression alone) and `docker pull` on dockerd 20.10, measured in one
# run, alternating, RUNS times each (medians printed), with the daemons'
# peak memory (VmHWM) during their pulls.
#
#   benches/pull.sh            # the layer: the gzip tar of /usr/lib/x86_64-linux-gnu
#   RUNS=5 benches/pull.sh
#   BERTH_BIN=/tmp/berth-before benches/pull.sh   # another berth binary, not built here
#
# The image is the one benches/load.sh makes (target/bench-input/oci: run
# `RUNS=1 benches/load.sh` once first). The registry is
# Debian's docker-registry on 127.0.0.1:5000, filled with skopeo. Every
# berth and dockerd run gets a fresh root and its own daemon, started and
# stopped outside the timed part. Runs in a mount + network namespace of its
# own. Not part of CI. BENCH_DIR picks the file system the outputs go to
# (default $TMPDIR or /tmp); it needs RUNS x ~2.5 GB free.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-3}"
target="${CARGO_TARGET_DIR:-target}"
cache="$target/bench-input"

scripts/ensure-deps
if [ -n "${BERTH_BIN:-}" ]; then
  berth="$(realpath "$BERTH_BIN")"   # a given build, e.g. to compare before and after a change
else
  cargo build --release --bin berth
  berth="$(realpath "$target/release/berth")"
fi
docker_cli="$(command -v /usr/local/bin/docker || command -v docker)"
command -v dockerd >/dev/null || { echo "pull.sh: dockerd is missing (Debian's docker.io)" >&2; exit 1; }

if [ ! -s "$cache/oci/index.json" ]; then
  echo "pull.sh: no $cache/oci: run benches/load.sh once (RUNS=1) to make the input" >&2
  exit 1
fi
cache="$(realpath "$cache")"
layer="$cache/layer.tar.gz"
echo "input: $layer: $(stat -c %s "$layer") bytes gzip; $runs runs each"

unshare --mount --net --propagation private --fork --kill-child -- \
  bash -s "$berth" "$layer" "$cache/oci" "$runs" "$docker_cli" <<'SANDBOX'
set -euo pipefail
berth="$1" layer="$2" oci="$3" runs="$4" docker_cli="$5"
ip link set lo up
work="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/berth-pull-bench.XXXXXX")"
daemon="" registry=""
cleanup() {
  for pid in $daemon $registry; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  { findmnt -rn -o TARGET | grep "^$work" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done; } || true
  rm -rf "$work"; sync
}
trap cleanup EXIT

now() { date +%s%N; }
declare -A times peaks

measure() { # name command...
  local name="$1"; shift
  local t0 t1
  t0="$(now)"
  "$@"
  t1="$(now)"
  times[$name]+="$(( (t1 - t0) / 1000000 )) "
}

wait_for() { # what command...
  local what="$1"; shift
  for _ in $(seq 1 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "pull.sh: $what did not come up" >&2; tail -20 "$work"/*.log >&2; exit 1
}

stop_daemon() {
  kill -TERM "$daemon"; wait "$daemon" || true; daemon=""
  sync
}

# Peak resident memory (kB) of a process so far.
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

mkdir -p "$work/registry"
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:5000
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry=$!
wait_for "the registry" bash -c 'exec 3<>/dev/tcp/127.0.0.1/5000'
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$oci:latest" docker://localhost:5000/bench:latest
image=localhost:5000/bench:latest

berth_pull() { # run number
  local root="$work/berth-root-$1" run="$work/berth-run" sock="$work/berth.sock"
  rm -rf "$run"
  "$berth" daemon --root "$root" --run "$run" -H "unix://$sock" 2>>"$work/berth.log" &
  daemon=$!
  wait_for "berth's daemon" "$berth" -H "unix://$sock" --no-autostart version
  local before; before="$(hwm "$daemon")"
  measure berth "$berth" -H "unix://$sock" --no-autostart pull -q "$image" >/dev/null
  peaks[berth]+="$(hwm "$daemon") "
  peaks[berth_idle]+="$before "
  stop_daemon
  { findmnt -rn -o TARGET | grep "^$run" | sort -r | while read -r m; do umount -l "$m" || true; done; } || true
  rm -rf "$run"
}

docker_pull() { # run number
  local root="$work/docker-root-$1" exec="$work/docker-exec" sock="$work/docker.sock"
  rm -rf "$exec"
  dockerd --data-root "$root" --exec-root "$exec" -H "unix://$sock" --pidfile "$work/docker.pid" \
    --storage-driver overlay2 --iptables=false --ip-masq=false --bridge=none >>"$work/dockerd.log" 2>&1 &
  daemon=$!
  wait_for "dockerd" "$docker_cli" -H "unix://$sock" version
  measure docker "$docker_cli" -H "unix://$sock" pull -q "$image" >/dev/null
  peaks[dockerd]+="$(hwm "$daemon") "
  stop_daemon
  { findmnt -rn -o TARGET | grep "^$exec\|^$root" | sort -r | while read -r m; do umount -l "$m" || true; done; } || true
  rm -rf "$exec"
}

for i in $(seq 1 "$runs"); do
  measure skopeo skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$image" "dir:$work/dir-$i"
  measure gzip sh -c 'gzip -dc "$1" >/dev/null' sh "$layer"
  berth_pull "$i"
  docker_pull "$i"
  echo "run $i done" >&2
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-10s %10s   %s\n' tool median_s "runs (ms)"
for name in skopeo gzip berth docker; do
  m="$(median "${times[$name]}")"
  printf '%-10s %10.2f   %s\n' "$name" "$(awk -v m="$m" 'BEGIN{print m/1000}')" "${times[$name]}"
  declare "median_$name=$m"
done
awk -v b="$median_berth" -v g="$median_gzip" -v d="$median_docker" -v s="$median_skopeo" \
  'BEGIN { printf "berth/gzip %.2fx   berth/docker %.2fx   berth/skopeo-fetch %.2fx   (targets: berth/gzip <= 0.75x, berth/docker ~ 0.4x)\n", b/g, b/d, b/s }'
printf 'peak daemon RSS during the pull (VmHWM, MB): berth %s (idle before: %s)   dockerd %s\n' \
  "$(median "${peaks[berth]}" | awk '{printf "%.0f", $1/1024}')" \
  "$(median "${peaks[berth_idle]}" | awk '{printf "%.0f", $1/1024}')" \
  "$(median "${peaks[dockerd]}" | awk '{printf "%.0f", $1/1024}')"
SANDBOX
