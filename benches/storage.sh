#!/usr/bin/env bash
# Storage drivers side by side: the in-tree overlay and vfs and the example
# dylib plugin linkvfs (vfs-style trees whose image layers share unchanged
# files with their parent as hard links), each the daemon's --storage-driver
# on a fresh root, rounds alternating. Per driver: `berth load` of a 6-layer
# image (a base of busybox + BENCH_SRC, then five small layers), the disk the
# driver's layers take after the load (du: hard links counted once), and the
# first `run --rm IMAGE true` (a container's writable layer made and mounted).
#
#   benches/storage.sh                       # BENCH_SRC=/usr/lib/python3.11 RUNS=3
#   BENCH_SRC=/usr/share/doc RUNS=5 benches/storage.sh
#
# Runs in a mount + network namespace of its own; outputs go under BENCH_DIR
# (default $TMPDIR or /tmp) and are deleted at the end. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-3}"
src="${BENCH_SRC:-/usr/lib/python3.11}"
target="${CARGO_TARGET_DIR:-target}"

scripts/ensure-deps
scripts/build-plugins >/dev/null
cargo build --release --bin berth --bin berth-shim
berth="$(realpath "$target/release/berth")"
plugin="$(realpath "$target/plugins/linkvfs-dylib")"

unshare --mount --net --propagation private --fork --kill-child -- \
  bash -s "$berth" "$plugin" "$src" "$runs" <<'SANDBOX'
set -euo pipefail
berth="$1" plugin="$2" src="$3" runs="$4"
ip link set lo up
work="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/berth-storage-bench.XXXXXX")"
daemon=""
cleanup() {
  if [ -n "$daemon" ]; then kill -TERM "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  { findmnt -rn -o TARGET | grep "^$work" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done; } || true
  rm -rf "$work"
}
trap cleanup EXIT

# The image: an OCI layout with uncompressed layers, so the drivers' work is what is timed.
img="$work/image"
mkdir -p "$img/blobs/sha256" "$work/layers"
layer() { # dir -> appends the layer's digest, diff_id and size to $work/layers/list
  local tarball="$work/layers/$(basename "$1").tar"
  tar -C "$1" --sort=name --owner=0 --group=0 --numeric-owner -cf "$tarball" .
  local d; d="$(sha256sum "$tarball" | cut -d' ' -f1)"
  cp "$tarball" "$img/blobs/sha256/$d"
  echo "$d $(stat -c %s "$tarball")" >>"$work/layers/list"
}
base="$work/l0"
mkdir -p "$base/bin" "$base/data" "$base/tmp"
cp /bin/busybox "$base/bin/busybox"
ln -s busybox "$base/bin/sh"; ln -s busybox "$base/bin/true"
cp -a "$src" "$base/data/"
layer "$base"
for i in 1 2 3 4 5; do
  mkdir -p "$work/l$i/etc"
  echo "layer $i" >"$work/l$i/etc/layer$i"
  echo "version $i" >"$work/l$i/etc/version"
  layer "$work/l$i"
done
diff_ids=""; layers_json=""
while read -r d size; do
  diff_ids+="${diff_ids:+,}\"sha256:$d\""
  layers_json+="${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$d\",\"size\":$size}"
done <"$work/layers/list"
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$diff_ids" >"$work/config.json"
cd_=$(sha256sum "$work/config.json" | cut -d' ' -f1); cs=$(stat -c %s "$work/config.json"); mv "$work/config.json" "$img/blobs/sha256/$cd_"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' "$cd_" "$cs" "$layers_json" >"$work/manifest.json"
md=$(sha256sum "$work/manifest.json" | cut -d' ' -f1); ms=$(stat -c %s "$work/manifest.json"); mv "$work/manifest.json" "$img/blobs/sha256/$md"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"docker.io/library/stbench:latest","org.opencontainers.image.ref.name":"latest"}}]}' "$md" "$ms" >"$img/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$img/oci-layout"
image="$work/image.tar"
tar -C "$img" -cf "$image" oci-layout index.json blobs
base_bytes="$(du -sb "$base" | cut -f1)"
echo "image: 6 layers; base $(numfmt --to=iec "$base_bytes") ($(find "$base" | wc -l) entries from $src); $runs runs each"

now() { date +%s%N; }
declare -A load_ms run_ms disk
sock="$work/berth.sock"
cli() { "$berth" -H "unix://$sock" --no-autostart "$@"; }
start() { # root [driver]
  rm -rf "$work/run"
  "$berth" daemon --root "$1" --run "$work/run" -H "unix://$sock" ${2:+--storage-driver "$2"} 2>>"$work/daemon.log" &
  daemon=$!
  for _ in $(seq 1 400); do
    cli version >/dev/null 2>&1 && return 0
    kill -0 "$daemon" 2>/dev/null || { tail -20 "$work/daemon.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "the daemon did not answer" >&2; exit 1
}
stop() {
  kill -TERM "$daemon"; wait "$daemon" || true; daemon=""
  { findmnt -rn -o TARGET | grep "^$work" | sort -r | while read -r m; do umount -l "$m" || true; done; } || true
}
round() { # driver run
  local driver="$1" root="$work/root-$1-$2" t0 t1
  case "$driver" in
    linkvfs)
      start "$root"
      cli plugin install --grant-all-permissions "$plugin" >/dev/null
      stop
      start "$root" linkvfs ;;
    *) start "$root" "$driver" ;;
  esac
  sync
  t0="$(now)"; cli load -i "$image" >/dev/null; t1="$(now)"
  load_ms[$driver]+="$(( (t1 - t0) / 1000000 )) "
  sync
  local dir
  case "$driver" in overlay) dir="$root/overlay" ;; vfs) dir="$root/vfs" ;; linkvfs) dir="$root/plugins/linkvfs/data" ;; esac
  disk[$driver]+="$(du -sb "$dir" | cut -f1) "
  t0="$(now)"; cli run --rm stbench true; t1="$(now)"
  run_ms[$driver]+="$(( (t1 - t0) / 1000000 )) "
  stop
  rm -rf "$root"
}
for i in $(seq 1 "$runs"); do
  for driver in overlay vfs linkvfs; do round "$driver" "$i"; done
  echo "run $i done" >&2
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-8s %10s %12s %10s   %s\n' driver load_s disk run_s "runs: load ms / disk bytes / run ms"
for d in overlay vfs linkvfs; do
  printf '%-8s %10.2f %12s %10.2f   %s/ %s/ %s\n' "$d" "$(awk -v m="$(median "${load_ms[$d]}")" 'BEGIN{print m/1000}')" \
    "$(numfmt --to=iec "$(median "${disk[$d]}")")" "$(awk -v m="$(median "${run_ms[$d]}")" 'BEGIN{print m/1000}')" \
    "${load_ms[$d]}" "${disk[$d]}" "${run_ms[$d]}"
done
for d in vfs linkvfs; do
  awk -v d="$d" -v l="$(median "${load_ms[$d]}")" -v lo="$(median "${load_ms[overlay]}")" \
    -v s="$(median "${disk[$d]}")" -v so="$(median "${disk[overlay]}")" \
    -v r="$(median "${run_ms[$d]}")" -v ro="$(median "${run_ms[overlay]}")" \
    'BEGIN { printf "%s/overlay: load %.2fx  disk %.2fx  first run %.2fx\n", d, l/lo, s/so, r/ro }'
done
awk -v s="$(median "${disk[linkvfs]}")" -v v="$(median "${disk[vfs]}")" 'BEGIN { printf "linkvfs/vfs disk: %.2fx\n", s/v }'
SANDBOX
