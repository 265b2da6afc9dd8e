#!/usr/bin/env bash
# Static release builds of getapr for home routers (issue 6, item 4).
#
#   deploy/build-router.sh [TARGET...]
#
# Targets (default: the first three):
#   x86_64-unknown-linux-musl          PC-class routers, NAS, VMs
#   aarch64-unknown-linux-musl         most current routers (Filogic, IPQ807x, RPi)
#   armv7-unknown-linux-musleabihf     older ARM routers (IPQ40xx, Cortex-A7/A9)
#   mipsel-unknown-linux-musl          MT7621-class routers: tier 3, nightly
#                                      -Z build-std; built only when named
#
# Installs what it needs on a fresh Debian machine (as root): the rustup
# targets and Debian's cross gcc, used only as the linker. Rust's musl
# targets link "self-contained": crt1.o/rcrt1.o, libc.a and libunwind.a come
# from the rustup target itself, so the GNU cross gcc never contributes a
# glibc object; it only drives ld for the right architecture. getapr's
# release dependencies compile no C, so no cross C compiler or musl
# sysroot is needed. The release profile (Cargo.toml) already strips.
#
# Prints target -> size (bytes, MiB) -> build time -> `file` output, and fails
# unless every binary is statically linked (static-pie counts).
# CARGO_TARGET_DIR is honoured (default: ./target).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export PATH="$PATH:/usr/sbin:/sbin"

all=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf)
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=("${all[@]}")
fi
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

step() { printf '\n=== %s\n' "$*"; }

# The cross linker (a command) and the Debian package that has it. x86_64
# links with the host's cc, which Rust needs anyway.
linker_of() {
    case $1 in
    x86_64-unknown-linux-musl) echo "cc gcc" ;;
    aarch64-unknown-linux-musl) echo "aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu" ;;
    armv7-unknown-linux-musleabihf) echo "arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf" ;;
    mipsel-unknown-linux-musl) echo "mipsel-linux-gnu-gcc gcc-mipsel-linux-gnu" ;;
    *)
        echo "unknown target $1 (known: ${all[*]} mipsel-unknown-linux-musl)" >&2
        return 1
        ;;
    esac
}

# Tier 3 targets have no prebuilt std: nightly builds it from rust-src.
tier3() { [ "$1" = mipsel-unknown-linux-musl ]; }

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing $*: install them (as root: apt-get install $*)" >&2
        exit 1
    fi
    apt-get update -qq
    # None of these packages ships a service, but keep .ci/run's rule: an
    # install never starts one (invoke-rc.d honours policy-rc.d).
    local made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    if [ -n "$made_policy" ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    echo "installed $*"
}

step "tools: cross linkers, file"
need=()
command -v file >/dev/null 2>&1 || need+=(file)
for t in "${targets[@]}"; do
    read -r linker pkg <<<"$(linker_of "$t")"
    command -v "$linker" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
    echo "all there"
else
    apt_install "${need[@]}"
fi

step "rustup targets"
for t in "${targets[@]}"; do
    if tier3 "$t"; then
        rustup component add rust-src --toolchain nightly >/dev/null
        echo "$t: tier 3, std built from nightly's rust-src"
    elif rustup target list --installed | grep -qx "$t"; then
        echo "$t: there"
    else
        rustup target add "$t"
    fi
done

declare -A secs
for t in "${targets[@]}"; do
    step "cargo build --release --target $t"
    read -r linker _ <<<"$(linker_of "$t")"
    # CARGO_TARGET_<TRIPLE>_LINKER, unless the caller chose one already.
    var="CARGO_TARGET_$(echo "$t" | tr 'a-z-' 'A-Z_')_LINKER"
    export "$var=${!var:-$linker}"
    echo "$var=${!var}"
    start=$(date +%s)
    if tier3 "$t"; then
        cargo +nightly build --release --locked --target "$t" -Z build-std=std,panic_abort
    else
        cargo build --release --locked --target "$t"
    fi
    secs[$t]=$(($(date +%s) - start))
done

step "router binaries"
printf '| target | bytes | MiB | build s | file |\n|---|---:|---:|---:|---|\n'
bad=0
for t in "${targets[@]}"; do
    bin=$target_dir/$t/release/getapr
    bytes=$(stat -c %s "$bin")
    mib=$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')
    desc=$(file -b "$bin")
    printf '| %s | %s | %s | %s | %s |\n' "$t" "$bytes" "$mib" "${secs[$t]}" "$desc"
    # A router has no matching libc or loader: the binary must stand alone.
    case $desc in
    *"statically linked"* | *"static-pie linked"*) ;;
    *)
        echo "$bin is not statically linked" >&2
        bad=1
        ;;
    esac
done
exit $bad
