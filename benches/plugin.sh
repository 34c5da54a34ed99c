#!/usr/bin/env bash
# Plugin benchmark: per-call overhead of a volume driver's Mount through the
# WASM host and the dylib host next to the in-tree `local` driver, and WASM
# plugin load time from the precompiled cache and without it. One run, the
# drivers alternating round by round; prints medians and ratios.
# CALLS=500 ROUNDS=7 by default. Targets: a WASM call adds < 50 µs; a cached load < 5 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps
scripts/build-plugins >/dev/null
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release --example plugin-bench
"$target_dir/release/examples/plugin-bench" "$target_dir/plugins" "${CALLS:-500}" "${ROUNDS:-7}"
