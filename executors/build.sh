#!/usr/bin/env bash
# Rebuilds the committed guest executors reproducibly:
#   executors/default.wasm          the default executor
#   executors/default-variant.wasm  its upgrade variant (same rules, other bytes)
#   executors/bench/sigcheck.wasm   the realistic heavy benchmark (same rules
#                                   behind an ed25519 check per transaction)
#   executors/bench/ecdsa.wasm      the second compute-heavy benchmark (same
#                                   rules behind a k256 ECDSA check)
#   executors/bench/sortmap.wasm    the store-heavy benchmark (same rules behind
#                                   sorting and counting 3,000 words on a heap
#                                   that grows during the transaction)
#
# Usage: executors/build.sh [OUT_DIR]   (default: executors/)
# Needs the pinned toolchain recorded in executors/default.toolchain and the
# `wasm32v1-none` target (`rustup target add wasm32v1-none`). Paths are
# remapped so the bytes do not depend on where the checkout or cargo home is.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
target_dir=${GUEST_TARGET_DIR:-$here/../target/guest}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
# Do not inherit flags or wrappers from an enclosing cargo invocation.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS RUSTC_WRAPPER CARGO_BUILD_RUSTFLAGS CARGO_TARGET_DIR
export RUSTFLAGS="--remap-path-prefix=$here=/executors --remap-path-prefix=$cargo_home=/cargo -C link-arg=-zstack-size=65536"
cd "$here/default"
# variant:feature:output path (relative to OUT_DIR)
for spec in default::default.wasm default-variant:variant:default-variant.wasm sigcheck:sigcheck:bench/sigcheck.wasm \
    ecdsa:ecdsa:bench/ecdsa.wasm sortmap:sortmap:bench/sortmap.wasm; do
  IFS=: read -r variant feature file <<<"$spec"
  features=()
  [ -n "$feature" ] && features=(--features "$feature")
  cargo build --quiet --release --locked --target wasm32v1-none --target-dir "$target_dir/$variant" "${features[@]}"
  mkdir -p "$(dirname "$out/$file")"
  cp "$target_dir/$variant/wasm32v1-none/release/default_executor.wasm" "$out/$file"
done
