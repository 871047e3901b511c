#!/usr/bin/env bash
# Side-by-side benchmark of `rkdump filter` and makedumpfile on the same vmcore.
#
# usage: bench/run.sh [VMCORE]   (default: the first target/e2e/vmcores/*/vmcore, from `make test`)
# env:   RUNS=3 (median of N runs)  OUT=/tmp/rkdump-bench (scratch dir)  THREADS=2
#
# Prints, per case, wall time, output size and peak RSS (from /usr/bin/time -v) of both tools
# and the ratios rkdump/makedumpfile (< 1 means rkdump is faster/smaller/leaner). The vmcore is
# read once first so both tools start from a warm page cache; outputs are deleted before every
# run (rewriting an existing file on ext4 forces a flush on close and skews times).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
vmcore=${1:-$(ls "$here"/target/e2e/vmcores/*/vmcore 2>/dev/null | head -n1)}
runs=${RUNS:-3}
out=${OUT:-/tmp/rkdump-bench}
threads=${THREADS:-2}
[ -n "$vmcore" ] && [ -r "$vmcore" ] || { echo "no readable vmcore (give one as \$1)" >&2; exit 2; }
command -v makedumpfile >/dev/null || { echo "makedumpfile is not installed" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time (GNU time) is not installed" >&2; exit 2; }

(cd "$here" && cargo build -q --release -p rkdump)
rk=("$here/target/release/rkdump" filter)
mkdir -p "$out"
cat "$vmcore" > /dev/null

# measure NAME CMD... -> prints "wall_s rss_kb size_bytes" (median wall over $runs runs)
measure() {
    local dst=$1; shift
    local walls=() rss=0 r
    for _ in $(seq "$runs"); do
        rm -f "$dst"
        local t0=$EPOCHREALTIME
        /usr/bin/time -v "$@" > /dev/null 2> "$out/time.txt" || { echo "FAILED: $*" >&2; tail -n 5 "$out/time.txt" >&2; echo "nan 0 0"; return; }
        # Wall time from bash's microsecond clock (GNU time's is rounded to 10 ms).
        walls+=("$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f", b - a }')")
        r=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/time.txt")
        [ "$r" -gt "$rss" ] && rss=$r
    done
    local med
    med=$(printf '%s\n' "${walls[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$med $rss $(stat -c %s "$dst")"
}

printf '%s\n' "vmcore: $vmcore ($(stat -c %s "$vmcore") bytes), rkdump: ${rk[*]}, runs: $runs"
printf '%-40s | %-26s | %-26s | %s\n' "case (rkdump vs makedumpfile)" "rkdump (s / MB / RSS MB)" "makedumpfile (s / MB / RSS MB)" "ratio time / size / RSS"
# Each case: "rkdump options|makedumpfile options" (the default codec, zstd, is compared with
# makedumpfile -l, the issue's reference; --num-threads cases with makedumpfile's one thread).
t="--num-threads $threads"
cases=(
    "-l -d 31|-l -d 31" "-c -d 31|-c -d 31" "-l -d 1|-l -d 1" "-d 31|-l -d 31"
    "-z -d 31|-z -d 31" "-z -d 1|-z -d 1"
    "-l -d 31 $t|-l -d 31" "-c -d 31 $t|-c -d 31" "-l -d 1 $t|-l -d 1" "-d 31 $t|-l -d 31"
)
for pair in "${cases[@]}"; do
    case=${pair%%|*}
    mcase=${pair#*|}
    # shellcheck disable=SC2086
    read -r rw rr rs < <(measure "$out/rk.dump" "${rk[@]}" $case "$vmcore" "$out/rk.dump")
    # shellcheck disable=SC2086
    read -r mw mr ms < <(measure "$out/mdf.dump" makedumpfile $mcase "$vmcore" "$out/mdf.dump")
    awk -v c="$case vs $mcase" -v rw="$rw" -v rr="$rr" -v rs="$rs" -v mw="$mw" -v mr="$mr" -v ms="$ms" 'BEGIN {
        printf "%-40s | %6.3f / %7.1f / %6.1f | %6.3f / %7.1f / %6.1f | %5.2f / %5.2f / %5.2f\n",
            c, rw, rs/1e6, rr/1024, mw, ms/1e6, mr/1024, (mw>0? rw/mw : 0), (ms>0? rs/ms : 0), (mr>0? rr/mr : 0) }'
done
echo "note: Debian's makedumpfile is built without zstd: its -z rows are not zstd (see the size)."
rm -f "$out/rk.dump" "$out/mdf.dump" "$out/time.txt"
