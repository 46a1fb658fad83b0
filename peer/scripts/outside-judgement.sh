#!/usr/bin/env bash
# The speed issue's judgement from outside, reproduced: `peer run --json`'s
# `tx_per_sec` under `--policy every-tx:1 --fuel 1000000000 --no-cache`
# (wasmtime, the default backend) against plain wasmtime embeddings of the
# same unmodified module, each in a process of its own (`bench-anchor
# --only ROW`: warm with native fuel, fresh per transaction with native fuel,
# warm without fuel), interleaved, medians of the rounds.
#
#   peer/scripts/outside-judgement.sh [EXECUTOR...]     # default: sigcheck ecdsa sortmap
#   TRANSACTIONS=2000 ROUNDS=7 peer/scripts/outside-judgement.sh sigcheck
#
# Separate processes on a shared machine spread by ±25 % between runs;
# `bench-anchor` (rows in one process, interleaved per block) is the
# steadier measurement of the same ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${TRANSACTIONS:-2000}
rounds=${ROUNDS:-7}
executors=("$@")
[ ${#executors[@]} -gt 0 ] || executors=(sigcheck ecdsa sortmap)
cargo build --release --quiet -p peer --bin peer --bin bench-anchor
bin=target/release

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '%-9s %10s %12s %12s %12s %9s %9s %9s\n' executor 'peer tx/s' 'warm+fuel' 'fresh+fuel' 'warm' '÷w+f' '÷fresh' '÷warm'
for executor in "${executors[@]}"; do
  wasm=executors/bench/$executor.wasm
  [ -f "$wasm" ] || { echo "no executor $wasm (one of: sigcheck ecdsa sortmap)" >&2; exit 2; }
  peer=() warm_fuel=() fresh=() warm=()
  for ((r = 1; r <= rounds; r++)); do
    json=$("$bin"/peer run --executor "$wasm" --transactions "$n" --policy every-tx:1 --fuel 1000000000 --no-cache --json)
    peer+=("$(sed -n 's/.*"tx_per_sec":\([0-9.eE+-]*\).*/\1/p' <<<"$json")")
    warm_fuel+=("$("$bin"/bench-anchor --executor "$executor" --backend wasmtime --only plain-warm-fuel --transactions "$n")")
    fresh+=("$("$bin"/bench-anchor --executor "$executor" --backend wasmtime --only plain-fresh-fuel --transactions "$n")")
    warm+=("$("$bin"/bench-anchor --executor "$executor" --backend wasmtime --only plain-warm --transactions "$n")")
    echo "  $executor round $r/$rounds: peer ${peer[-1]}, warm+fuel ${warm_fuel[-1]}, fresh+fuel ${fresh[-1]}, warm ${warm[-1]}" >&2
  done
  p=$(printf '%s\n' "${peer[@]}" | median)
  w=$(printf '%s\n' "${warm_fuel[@]}" | median)
  f=$(printf '%s\n' "${fresh[@]}" | median)
  u=$(printf '%s\n' "${warm[@]}" | median)
  awk -v e="$executor" -v p="$p" -v w="$w" -v f="$f" -v u="$u" \
    'BEGIN { printf "%-9s %10.0f %12.0f %12.0f %12.0f %9.2f %9.2f %9.2f\n", e, p, w, f, u, p / w, p / f, p / u }'
done
