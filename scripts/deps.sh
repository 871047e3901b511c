#!/usr/bin/env bash
# Installs what rkdump's build, demo and tests need on a Debian 12 machine, idempotently.
# Run as root. Safe to run again: it only installs what is missing.
set -euo pipefail

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "deps: must run as root (apt-get, kernel packages)" >&2
        exit 1
    fi
}

apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then
        echo "deps: apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
    echo "deps: installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Packages and a file each provides, to test for presence without dpkg queries.
missing=()
check() { [ -e "$2" ] || missing+=("$1"); }
check qemu-system-x86 /usr/bin/qemu-system-x86_64
check makedumpfile /usr/bin/makedumpfile
check crash /usr/bin/crash
check kexec-tools /usr/sbin/vmcore-dmesg
check e2fsprogs /usr/sbin/debugfs
check musl-tools /usr/bin/musl-gcc
check cpio /usr/bin/cpio
check zstd /usr/bin/zstd
check xz-utils /usr/bin/xz
check busybox-static /bin/busybox
check binutils /usr/bin/readelf
check gzip /bin/gzip
check bc /usr/bin/bc
check vmtouch /usr/bin/vmtouch   # bench/run.sh: keeps the vmcore in the page cache
check fdisk /usr/sbin/sfdisk    # partitioned disk images for the PARTUUID tests
check python3-venv /usr/share/doc/python3-venv   # drgn, a third reader of our dumps (below)
# The dedicated capture kernel test: Debian's kernel source and what building it takes.
check linux-source-6.1 /usr/src/linux-source-6.1.tar.xz
check flex /usr/bin/flex
check bison /usr/bin/bison
check libelf-dev /usr/include/libelf.h
check make /usr/bin/make
check gcc /usr/bin/gcc

# A Debian kernel with its modules, for the capture image and the crash test.
newest_kernel() {
    local best=""
    for k in /boot/vmlinuz-*; do
        [ -e "$k" ] || continue
        local r=${k#/boot/vmlinuz-}
        if [ -d "/lib/modules/$r/kernel" ] || [ -d "/usr/lib/modules/$r/kernel" ]; then
            best=$r
        fi
    done
    echo "$best"
}

need_kernel=""
[ -n "$(newest_kernel)" ] || need_kernel=1

if [ ${#missing[@]} -gt 0 ] || [ -n "$need_kernel" ]; then
    need_root
    pkgs=("${missing[@]}")
    [ -n "$need_kernel" ] && pkgs+=(linux-image-amd64)
    apt_install "${pkgs[@]}"
fi

release=$(newest_kernel)
if [ -z "$release" ]; then
    echo "deps: no kernel with modules under /boot after installing linux-image-amd64" >&2
    exit 1
fi

# The debug vmlinux that crash needs, extracted from the -dbg package (only that one file).
vmlinux=/usr/lib/debug/boot/vmlinux-$release
if [ ! -s "$vmlinux" ]; then
    need_root
    if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
    dir=$(mktemp -d)
    chmod 755 "$dir"  # apt-get download runs as _apt
    echo "deps: fetching linux-image-$release-dbg for $vmlinux"
    (cd "$dir" && apt-get download -qq "linux-image-$release-dbg")
    mkdir -p /usr/lib/debug/boot
    dpkg-deb --fsys-tarfile "$dir"/linux-image-"$release"-dbg_*.deb \
        | tar -x -C "$dir" "./usr/lib/debug/boot/vmlinux-$release"
    mv "$dir/usr/lib/debug/boot/vmlinux-$release" "$vmlinux.tmp"
    mv "$vmlinux.tmp" "$vmlinux"
    rm -rf "$dir"
fi

# Rust: the static target for the capture init.
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
        rustup target add x86_64-unknown-linux-musl
    fi
    # `make test` checks formatting and lints.
    for c in rustfmt clippy; do
        rustup component list --installed | grep -q "^$c" || rustup component add "$c"
    done
else
    echo "deps: rustup not found; install a Rust toolchain with the x86_64-unknown-linux-musl target" >&2
    exit 1
fi

# drgn (with libkdumpfile in its wheel) from PyPI, in a virtualenv under target/: the tests
# open our dumps with it as well as with crash. Pinned, so an oracle update is a deliberate step.
here=$(cd "$(dirname "$0")/.." && pwd)
drgn_version=0.3.0
venv=$here/target/drgn-venv
if ! "$venv/bin/python" -c "import drgn, sys; sys.exit(drgn.__version__ != '$drgn_version')" 2>/dev/null; then
    echo "deps: installing drgn $drgn_version into $venv"
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "drgn==$drgn_version"
fi

echo "deps: ok (kernel $release, debug vmlinux $vmlinux, drgn $drgn_version)"
