#!/usr/bin/env bash
# `berth load` of a one-layer image whose layer is a gzip tar of real files,
# next to `gzip -dc` and `tar xzf` of the same file (and `umoci unpack` when
# umoci is installed), measured in one run, alternating, RUNS times each.
#
#   benches/load.sh            # input: a gzip tar of /usr/lib/x86_64-linux-gnu
#   BENCH_SRC=/some/dir RUNS=3 benches/load.sh
#
# The input is made once and cached in target/bench-input/ (delete it to
# rebuild). Every berth run gets a fresh --root and its own daemon, started
# and stopped outside the timed part; all runs read the input from the page
# cache. Runs in a mount + network namespace of its own. Not part of CI.
#
# What each run wrote stays until the end (synced, untimed) instead of being
# deleted before the next run: on an ext4 without a journal (this host's /),
# the inode allocator skips inodes freed in the last minutes and reads each
# one's inode block to find out (ext4 find_inode_bit/recently_deleted), so
# creating 3000 files right after deleting 3000 costs seconds, and every run
# would pay for the previous one's cleanup (perf showed 38% of berth's time
# there). BENCH_DIR picks the file system the outputs go to (default $TMPDIR
# or /tmp); the output needs RUNS x ~2.2 GB free there.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-5}"
src="${BENCH_SRC:-/usr/lib/x86_64-linux-gnu}"
target="${CARGO_TARGET_DIR:-target}"
cache="$target/bench-input"

scripts/ensure-deps
cargo build --release --bin berth
berth="$(realpath "$target/release/berth")"

mkdir -p "$cache"
cache="$(realpath "$cache")"
layer="$cache/layer.tar.gz"
image="$cache/image.tar"
if [ ! -s "$image" ] || [ "$(cat "$cache/src" 2>/dev/null)" != "$src" ]; then
  echo "making the input: gzip tar of $src" >&2
  rm -rf "$cache/oci" "$image"
  tar -C "$(dirname "$src")" -czf "$layer" "$(basename "$src")"
  # An OCI image layout with the gzip tar as its one layer.
  oci="$cache/oci"
  mkdir -p "$oci/blobs/sha256"
  layer_digest="$(sha256sum "$layer" | cut -d' ' -f1)"
  diff_id="$(gzip -dc "$layer" | sha256sum | cut -d' ' -f1)"
  layer_size="$(stat -c %s "$layer")"
  cp "$layer" "$oci/blobs/sha256/$layer_digest"
  printf '{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"benches/load.sh: tar czf %s"}]}' \
    "$diff_id" "$src" >"$cache/config.json"
  config_digest="$(sha256sum "$cache/config.json" | cut -d' ' -f1)"
  config_size="$(stat -c %s "$cache/config.json")"
  mv "$cache/config.json" "$oci/blobs/sha256/$config_digest"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$cache/manifest.json"
  manifest_digest="$(sha256sum "$cache/manifest.json" | cut -d' ' -f1)"
  manifest_size="$(stat -c %s "$cache/manifest.json")"
  mv "$cache/manifest.json" "$oci/blobs/sha256/$manifest_digest"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"docker.io/library/bench:latest","org.opencontainers.image.ref.name":"latest"}}]}' \
    "$manifest_digest" "$manifest_size" >"$oci/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$oci/oci-layout"
  tar -C "$oci" -cf "$image" oci-layout index.json blobs
  echo "$src" >"$cache/src"
fi

entries="$(tar tzf "$layer" | wc -l)"
unpacked="$(gzip -dc "$layer" | wc -c)"
echo "input: $layer: $(stat -c %s "$layer") bytes gzip, $unpacked bytes tar, $entries entries; $runs runs each"

umoci_bin="$(command -v umoci || true)"

# The measurements run in a sandbox: berth's daemon mounts nothing on the host.
unshare --mount --net --propagation private --fork --kill-child -- \
  bash -s "$berth" "$layer" "$image" "$cache/oci" "$runs" "$umoci_bin" <<'SANDBOX'
set -euo pipefail
berth="$1" layer="$2" image="$3" oci="$4" runs="$5" umoci="$6"
ip link set lo up
work="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/berth-bench.XXXXXX")"
daemon=""
cleanup() {
  if [ -n "$daemon" ]; then kill -TERM "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  { findmnt -rn -o TARGET | grep "^$work" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done; } || true
  rm -rf "$work"; sync
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

berth_load() { # run number
  local root="$work/root-$1" run="$work/run" sock="$work/berth.sock"
  rm -rf "$run"
  "$berth" daemon --root "$root" --run "$run" -H "unix://$sock" 2>>"$work/daemon.log" &
  daemon=$!
  for _ in $(seq 1 400); do
    "$berth" -H "unix://$sock" --no-autostart version >/dev/null 2>&1 && break
    kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
    sleep 0.05
  done
  measure berth "$berth" -H "unix://$sock" --no-autostart load -i "$image" >/dev/null
  kill -TERM "$daemon"; wait "$daemon" || true; daemon=""
  sync
  # The daemon leaves its run dir's mounts (e.g. netns) behind in this namespace.
  { findmnt -rn -o TARGET | grep "^$run" | sort -r | while read -r m; do umount -l "$m" || true; done; } || true
  rm -rf "$run"
}

for i in $(seq 1 "$runs"); do
  measure gzip sh -c 'gzip -dc "$1" >/dev/null' sh "$layer"
  mkdir "$work/tar-$i"
  measure tar tar -xzf "$layer" -C "$work/tar-$i"
  sync
  berth_load "$i"
  if [ -n "$umoci" ]; then
    measure umoci "$umoci" unpack --image "$oci:latest" "$work/bundle-$i" >/dev/null 2>&1
    sync
  fi
  echo "run $i done" >&2
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-10s %10s   %s\n' tool median_s "runs (ms)"
for name in gzip tar berth umoci; do
  [ -n "${times[$name]:-}" ] || continue
  m="$(median "${times[$name]}")"
  printf '%-10s %10.2f   %s\n' "$name" "$(awk -v m="$m" 'BEGIN{print m/1000}')" "${times[$name]}"
  declare "median_$name=$m"
done
awk -v b="$median_berth" -v g="$median_gzip" -v t="$median_tar" \
  'BEGIN { printf "berth/gzip %.2fx   berth/tar %.2fx   (target: berth/gzip <= 1.25x)\n", b/g, b/t }'
SANDBOX
