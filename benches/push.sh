#!/usr/bin/env bash
# `berth push` next to `docker push` (dockerd 20.10) of the same image, whose
# one layer is the uncompressed tar of /usr/lib/x86_64-linux-gnu (~231 MB
# gzip'd) as `docker save` or `docker load` of an uncompressed archive leaves
# it: both must gzip it on the way. In one run, alternating, RUNS times each,
# to a docker-registry (distribution 2.8) on 127.0.0.1:5000; then a second
# `berth push` of the same image, which has nothing to compress or send.
#
#   benches/push.sh            # input: made from benches/load.sh's gzip tar
#   RUNS=5 benches/push.sh
#
# Every run gets a fresh registry, a fresh berth --root and a fresh dockerd
# --data-root (loaded outside the timed part), so nothing is remembered from
# the run before. Runs in a mount + network namespace of its own. Not part
# of CI. Needs RUNS x ~1.5 GB free under BENCH_DIR (default $TMPDIR or /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-3}"
src="${BENCH_SRC:-/usr/lib/x86_64-linux-gnu}"
target="${CARGO_TARGET_DIR:-target}"
cache="$target/bench-input"

scripts/ensure-deps
cargo build --release --bin berth --bin berth-shim
berth="$(realpath "$target/release/berth")"
for tool in dockerd docker-registry; do
  command -v "$tool" >/dev/null || { echo "push.sh needs $tool (scripts/ensure-deps installs it)" >&2; exit 1; }
done
docker_cli="${DOCKER_CLI:-/usr/local/bin/docker}"

mkdir -p "$cache"
cache="$(realpath "$cache")"
layer_gz="$cache/layer.tar.gz"
if [ ! -s "$layer_gz" ] || [ "$(cat "$cache/src" 2>/dev/null)" != "$src" ]; then
  echo "making the input with benches/load.sh's recipe: gzip tar of $src" >&2
  tar -C "$(dirname "$src")" -czf "$layer_gz" "$(basename "$src")"
  echo "$src" >"$cache/src"
  rm -f "$cache/image.tar"
fi
# A docker-archive whose layer.tar is plain: what `docker save` writes.
plain="$cache/push-plain.tar"
if [ ! -s "$plain" ] || [ "$plain" -ot "$layer_gz" ]; then
  echo "making the uncompressed docker-archive" >&2
  dir="$(mktemp -d "$cache/push-plain.XXXXXX")"
  gzip -dc "$layer_gz" >"$dir/layer.tar"
  diff_id="$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)"
  mkdir "$dir/$diff_id"
  mv "$dir/layer.tar" "$dir/$diff_id/layer.tar"
  printf '{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"benches/push.sh: tar cf %s"}]}' \
    "$diff_id" "$src" >"$dir/config.json"
  config_hex="$(sha256sum "$dir/config.json" | cut -d' ' -f1)"
  mv "$dir/config.json" "$dir/$config_hex.json"
  printf '[{"Config":"%s.json","RepoTags":["bench:plain"],"Layers":["%s/layer.tar"]}]' "$config_hex" "$diff_id" >"$dir/manifest.json"
  tar -C "$dir" -cf "$plain.tmp" manifest.json "$config_hex.json" "$diff_id"
  mv "$plain.tmp" "$plain"
  rm -rf "$dir"
fi
echo "input: $plain: $(stat -c %s "$plain") bytes, one uncompressed layer; $runs runs each"

unshare --mount --net --propagation private --fork --kill-child -- \
  bash -s "$berth" "$docker_cli" "$plain" "$runs" <<'SANDBOX'
set -euo pipefail
berth="$1" docker_cli="$2" plain="$3" runs="$4"
ip link set lo up
work="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/berth-push-bench.XXXXXX")"
registry="" daemon="" dockerd=""
stop() { # pid
  if [ -n "$1" ]; then kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi
}
cleanup() {
  stop "$daemon"; stop "$dockerd"; stop "$registry"
  { findmnt -rn -o TARGET | grep "^$work" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done; } || true
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s%N; }
declare -A times
measure() { # name command...
  local name="$1"; shift
  local t0 t1
  t0="$(now)"
  "$@"
  t1="$(now)"
  times[$name]+="$(( (t1 - t0) / 1000000 )) "
}
wait_for() { # what pid command...
  local what="$1" pid="$2"; shift 2
  for _ in $(seq 1 600); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { echo "$what died; its log:" >&2; cat "$work/$what.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "$what did not come up" >&2; exit 1
}

start_registry() { # run
  rm -rf "$work/registry"
  mkdir -p "$work/registry"
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:5000\n' \
    "$work/registry" >"$work/registry.yml"
  docker-registry serve "$work/registry.yml" >>"$work/registry.log" 2>&1 &
  registry=$!
  wait_for registry "$registry" bash -c 'exec 3<>/dev/tcp/127.0.0.1/5000'
}

b() { "$berth" -H "unix://$work/berth.sock" --no-autostart "$@"; }
d() { DOCKER_HOST="unix://$work/docker.sock" DOCKER_CONFIG="$work/docker-config" "$docker_cli" "$@"; }

for i in $(seq 1 "$runs"); do
  start_registry

  rm -rf "$work/berth-root" "$work/berth-run"
  "$berth" daemon --root "$work/berth-root" --run "$work/berth-run" -H "unix://$work/berth.sock" 2>>"$work/berth.log" &
  daemon=$!
  wait_for berth "$daemon" b version
  b load -i "$plain" >/dev/null
  b tag bench:plain localhost:5000/berth/bench:1
  sync
  measure berth b push localhost:5000/berth/bench:1 >"$work/berth-push.out"
  measure berth_again b push localhost:5000/berth/bench:1 >"$work/berth-again.out"
  grep -q "Layer already exists" "$work/berth-again.out" || { cat "$work/berth-again.out" >&2; exit 1; }
  stop "$daemon"; daemon=""
  { findmnt -rn -o TARGET | grep "^$work/berth-run" | sort -r | while read -r m; do umount -l "$m" || true; done; } || true
  rm -rf "$work/berth-root" "$work/berth-run"

  rm -rf "$work/docker-root" "$work/docker-exec"
  dockerd --data-root "$work/docker-root" --exec-root "$work/docker-exec" -H "unix://$work/docker.sock" \
    --pidfile "$work/docker.pid" --storage-driver overlay2 --bridge none --iptables=false >>"$work/dockerd.log" 2>&1 &
  dockerd=$!
  wait_for dockerd "$dockerd" d version
  d load -i "$plain" >/dev/null
  d tag bench:plain localhost:5000/docker/bench:1
  sync
  measure docker d push localhost:5000/docker/bench:1 >"$work/docker-push.out"
  if [ "$i" = "$runs" ]; then
    # dockerd reads berth's parallel gzip and finds the same image (its diff ID checked on the way).
    id="$(d image inspect -f '{{.Id}}' bench:plain)"
    d rmi bench:plain localhost:5000/docker/bench:1 >/dev/null
    d pull localhost:5000/berth/bench:1 >/dev/null
    pulled="$(d image inspect -f '{{.Id}}' localhost:5000/berth/bench:1)"
    [ "$pulled" = "$id" ] || { echo "dockerd pulled berth's push as $pulled, not $id" >&2; exit 1; }
    echo "dockerd pulled berth's push back: same ID $id" >&2
  fi
  stop "$dockerd"; dockerd=""
  { findmnt -rn -o TARGET | grep "^$work/docker" | sort -r | while read -r m; do umount -l "$m" || true; done; } || true
  rm -rf "$work/docker-root" "$work/docker-exec"

  stop "$registry"; registry=""
  echo "run $i done" >&2
done

echo "berth push:"; sed 's/^/  /' "$work/berth-push.out"
echo "docker push:"; sed 's/^/  /' "$work/docker-push.out"
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-12s %10s   %s\n' what median_s "runs (ms)"
for name in docker berth berth_again; do
  m="$(median "${times[$name]}")"
  printf '%-12s %10.2f   %s\n' "$name" "$(awk -v m="$m" 'BEGIN{print m/1000}')" "${times[$name]}"
  declare "median_$name=$m"
done
awk -v b="$median_berth" -v d="$median_docker" -v a="$median_berth_again" \
  'BEGIN { printf "berth/docker %.2fx (target <= 0.3x)   second berth push %.2f s (target < 0.2 s)\n", b/d, a/1000 }'
SANDBOX
