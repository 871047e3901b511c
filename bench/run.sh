#!/usr/bin/env bash
# Side-by-side benchmark of `rkdump filter` and makedumpfile on the same vmcore.
#
# usage: bench/run.sh [VMCORE]   (default: target/e2e/vmcores/four-level/vmcore, from `make test`)
# env:   RUNS=5 (runs per case)  OUT=scratch dir (default /dev/shm/rkdump-bench when /dev/shm
#        is a tmpfs, else /tmp/rkdump-bench)  THREADS=2 (the --num-threads rows)
#
# Prints, per case, wall time, output size and peak RSS (from /usr/bin/time -v) of both tools
# and the ratios rkdump/makedumpfile (< 1 means rkdump is faster/smaller/leaner). The vmcore is
# read once first so both tools start from a warm page cache. The two tools run alternately,
# run after run, so a slow spell of a shared machine hits both; the time ratio is the median
# of the per-run ratios, the times shown are medians; "best" is the ratio of the two tools'
# fastest runs (the least disturbed ones on a shared machine). The first row runs makedumpfile
# against itself: its ratios show how far this run's noise alone moves a ratio. Outputs are
# deleted before every run and go to a tmpfs by default: what is compared is the work of
# filtering and compressing, not the disk's writeback (which makedumpfile and rkdump leave to
# the kernel alike).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# The four-level capture first (the one BENCHMARKS.md's tables use), else any.
# (Not `ls a b`: ls sorts its arguments, and five-level sorts before four-level.)
vmcore=${1:-}
if [ -z "$vmcore" ]; then
    for v in "$here"/target/e2e/vmcores/four-level/vmcore "$here"/target/e2e/vmcores/*/vmcore; do
        if [ -r "$v" ]; then vmcore=$v; break; fi
    done
fi
runs=${RUNS:-5}
if [ -z "${OUT:-}" ]; then
    if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then out=/dev/shm/rkdump-bench; else out=/tmp/rkdump-bench; fi
else
    out=$OUT
fi
threads=${THREADS:-2}
[ -n "$vmcore" ] && [ -r "$vmcore" ] || { echo "no readable vmcore (give one as \$1)" >&2; exit 2; }
command -v makedumpfile >/dev/null || { echo "makedumpfile is not installed" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time (GNU time) is not installed" >&2; exit 2; }

(cd "$here" && cargo build -q --release -p rkdump)
rk=("$here/target/release/rkdump" filter)
mkdir -p "$out"
# Hold the vmcore in the page cache for the whole run: a machine that reclaims cold page cache
# proactively (DAMON pageout, memory ballooning) would otherwise send random runs of either tool
# to the disk. vmtouch -l locks the file's pages in a separate process (root: no memlock limit).
lock_pid=""
cat "$vmcore" > /dev/null  # sequential read-ahead; vmtouch alone faults pages in one by one
if command -v vmtouch >/dev/null; then
    vmtouch -q -l "$(readlink -f "$vmcore")" & lock_pid=$!
    for _ in $(seq 600); do
        [ "$(vmtouch "$(readlink -f "$vmcore")" | awk '/Resident Pages/ {print $NF}')" = "100%" ] && break
        sleep 0.5
    done
else
    echo "warning: vmtouch is not installed; the vmcore may fall out of the page cache during the run" >&2
fi
trap 'rm -rf "$out"; [ -n "$lock_pid" ] && kill "$lock_pid" 2>/dev/null' EXIT

# one DST CMD... -> prints "wall_s rss_kb size_bytes" of one run
one() {
    local dst=$1; shift
    rm -f "$dst"
    local t0=$EPOCHREALTIME
    if ! /usr/bin/time -v "$@" > /dev/null 2> "$out/time.txt"; then
        echo "FAILED: $*" >&2; tail -n 5 "$out/time.txt" >&2; exit 1
    fi
    # Wall time from bash's microsecond clock (GNU time's is rounded to 10 ms).
    local wall
    wall=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f", b - a }')
    echo "$wall $(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/time.txt") $(stat -c %s "$dst")"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '%s\n' "vmcore: $vmcore ($(stat -L -c %s "$vmcore") bytes), $(nproc) CPUs, runs: $runs, outputs in $out"
printf '%-44s | %-26s | %-26s | %-23s | %s\n' "case (rkdump vs makedumpfile)" "rkdump (s / MB / RSS MB)" "makedumpfile (s / MB / RSS MB)" "ratio time / size / RSS" "best"
# Each case: "rkdump options|makedumpfile options". One-thread rows say --num-threads 1 (rkdump's
# default is one thread per CPU, at most 4); the default codec (no codec flag: zstd) is compared
# with makedumpfile -l, the issue's reference, with one thread and with rkdump's default threads.
t="--num-threads $threads"
one_t="--num-threads 1"
cases=(
    # Calibration: makedumpfile against itself, run the same way. Its ratio is this run's noise
    # (1.00 on a quiet machine); read the other rows' time ratios with that spread in mind.
    "makedumpfile -l -d 31|-l -d 31"
    "-l -d 31 $one_t|-l -d 31" "-c -d 31 $one_t|-c -d 31" "-l -d 1 $one_t|-l -d 1"
    "-d 31 $one_t|-l -d 31" "-d 1 $one_t|-l -d 1"
    "-l -d 31 $t|-l -d 31" "-c -d 31 $t|-c -d 31" "-l -d 1 $t|-l -d 1"
    "-d 31|-l -d 31" "-d 1|-l -d 1"
    "-z -d 31 $one_t|-z -d 31"
    # Identical pages stored once is on by default at -d 1 and with zstd: the same dumps
    # without it.
    "-d 1 --no-dedup|-l -d 1" "-l -d 1 --no-dedup $one_t|-l -d 1" "-d 31 --no-dedup|-l -d 31"
    # Dump level 16 leaves out the free pages of the per-CPU lists, which makedumpfile keeps:
    # with makedumpfile's page selection instead, the same work on the same pages.
    "-l -d 31 --keep-percpu-free $one_t|-l -d 31" "-c -d 31 --keep-percpu-free $one_t|-c -d 31"
    "-l -d 31 --keep-percpu-free $t|-l -d 31" "-d 31 --keep-percpu-free|-l -d 31"
)
for pair in "${cases[@]}"; do
    case=${pair%%|*}
    mcase=${pair#*|}
    first=("${rk[@]}")
    label="$case vs $mcase"
    if [ "${case%% *}" = makedumpfile ]; then
        first=(makedumpfile); case=${case#makedumpfile }; label="makedumpfile $case vs itself"
    fi
    rw=() mw=() ratios=() rr=0 mr=0 rs=0 ms=0
    for _ in $(seq "$runs"); do
        # shellcheck disable=SC2086
        read -r w r s < <(one "$out/rk.dump" "${first[@]}" $case "$vmcore" "$out/rk.dump")
        rw+=("$w"); rs=$s; [ "$r" -gt "$rr" ] && rr=$r
        # shellcheck disable=SC2086
        read -r w2 r2 s2 < <(one "$out/mdf.dump" makedumpfile $mcase "$vmcore" "$out/mdf.dump")
        mw+=("$w2"); ms=$s2; [ "$r2" -gt "$mr" ] && mr=$r2
        ratios+=("$(awk -v a="$w" -v b="$w2" 'BEGIN { printf "%.4f", a / b }')")
    done
    rmed=$(printf '%s\n' "${rw[@]}" | median)
    mmed=$(printf '%s\n' "${mw[@]}" | median)
    ratio=$(printf '%s\n' "${ratios[@]}" | median)
    rbest=$(printf '%s\n' "${rw[@]}" | sort -g | head -n1)
    mbest=$(printf '%s\n' "${mw[@]}" | sort -g | head -n1)
    awk -v c="$label" -v rw="$rmed" -v rr="$rr" -v rs="$rs" -v mw="$mmed" -v mr="$mr" -v ms="$ms" -v q="$ratio" \
        -v rb="$rbest" -v mb="$mbest" 'BEGIN {
        printf "%-44s | %6.3f / %7.1f / %6.1f | %6.3f / %7.1f / %6.1f | %5.2f / %5.2f / %5.2f | %5.2f\n",
            c, rw, rs/1e6, rr/1024, mw, ms/1e6, mr/1024, q, (ms>0? rs/ms : 0), (mr>0? rr/mr : 0), (mb>0? rb/mb : 0) }'
done
echo "note: Debian's makedumpfile is built without zstd: its -z row is not zstd (see the size)."
