#!/usr/bin/env bash
# Capture-image benchmark: size and build time of `rkdump build` for the crash-test
# configuration (ext4 by UUID on a virtio disk, the newest Debian kernel in /boot), for every
# compression, plus the distribution's own initramfs for scale. Run after `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/x86_64-unknown-linux-musl/release/rkdump
[ -x "$bin" ] || { echo "build first: make build" >&2; exit 1; }
release=$(ls /boot/vmlinuz-* | sed 's|/boot/vmlinuz-||' | sort -V | tail -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'ext4 UUID=%s\npath /var/crash\nextra_modules virtio_blk virtio_pci\n' \
    "$(cat /proc/sys/kernel/random/uuid)" > "$work/kdump.conf"
echo "kernel $release; $(nproc) cores; 5 builds each, wall time of the whole command"
printf '%-6s %12s %12s %10s %10s\n' compr image unpacked best_s worst_s
for c in zstd xz gzip none; do
    best=999; worst=0
    for i in 1 2 3 4 5; do
        s=$(date +%s.%N)
        "$bin" build --config "$work/kdump.conf" --kernel-release "$release" \
            --compression "$c" --output "$work/$c.img" >"$work/out" 2>/dev/null
        e=$(date +%s.%N)
        t=$(echo "$e - $s" | bc)
        best=$(echo "if ($t < $best) $t else $best" | bc)
        worst=$(echo "if ($t > $worst) $t else $worst" | bc)
    done
    unpacked=$(grep -o '[0-9]* bytes unpacked' "$work/out" | cut -d' ' -f1)
    printf '%-6s %12s %12s %10.3f %10.3f\n' "$c" "$(stat -c %s "$work/$c.img")" "$unpacked" "$best" "$worst"
done
"$bin" build --config "$work/kdump.conf" --kernel-release "$release" --output "$work/zstd2.img" >/dev/null 2>&1
cmp -s "$work/zstd.img" "$work/zstd2.img" && echo "two builds byte-identical: yes" || echo "two builds byte-identical: NO"
for f in /boot/initrd.img-"$release"; do
    [ -e "$f" ] && echo "distribution initramfs ($f): $(stat -c %s "$f") bytes"
done
