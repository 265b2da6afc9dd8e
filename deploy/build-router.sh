#!/usr/bin/env bash
# Static release builds of getapr for home routers.
#
#   deploy/build-router.sh [TARGET...]
#
# Targets (default: the first three):
#   x86_64-unknown-linux-musl          PC-class routers, NAS, VMs
#   aarch64-unknown-linux-musl         most current routers (Filogic, IPQ807x, RPi)
#   armv7-unknown-linux-musleabihf     older ARM routers (IPQ40xx, Cortex-A7/A9)
#   mipsel-unknown-linux-musl          MT7621-class routers: tier 3, built
#                                      only when named
#
# Two ways to build, both static, both installed here on a fresh Debian
# machine (as root):
#
#   prebuilt std (preferred): the stable toolchain and rustup's std for the
#     target, linked by Debian's cross gcc (gcc-aarch64-linux-gnu, ...),
#     used only as the linker. Rust's musl targets link "self-contained":
#     crt1.o/rcrt1.o, libc.a and libunwind.a come with rustup's std, so gcc
#     never contributes a glibc object; it only drives ld for the right
#     architecture. Debian and rustup only.
#   build-std: when rustup has no std for the target (mipsel is tier 3;
#     some mirrors lack armv7's), nightly builds std from rust-src
#     (-Z build-std). Then there is no self-contained musl either, and
#     Debian has no musl sysroot for these architectures that gcc could
#     link against cleanly, so cargo-zigbuild links with `zig cc`, which
#     carries musl's crt, libc and libunwind for every architecture
#     (ziglang and cargo-zigbuild from PyPI, in a venv under the target
#     directory).
#
# getapr's release dependencies compile no C, so no cross C compiler is
# needed. The `router` profile (Cargo.toml: the release profile at
# opt-level "s") already strips. Prints target ->
# size (bytes, MiB) -> build time -> `file` output, and fails unless every
# binary is statically linked (static-pie counts). CARGO_TARGET_DIR is
# honoured (default: ./target).
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

# Tier 3 targets have no prebuilt std at all.
tier3() { [ "$1" = mipsel-unknown-linux-musl ]; }

# Pinned so a new zig cannot change the armv7/mipsel binaries unnoticed.
zig_tools=(ziglang==0.17.1 cargo-zigbuild==0.24.1)
tools=$target_dir/router-tools

apt_install() {
    bash .ci/apt-install.sh --no-recommends "$@"
}

step "rustup targets"
declare -A how
for t in "${targets[@]}"; do
    linker_of "$t" >/dev/null
    if tier3 "$t"; then
        how[$t]=build-std
    elif rustup target list --installed | grep -qx "$t"; then
        how[$t]=std
    elif rustup target add "$t" >/dev/null 2>&1; then
        how[$t]=std
    else
        echo "rustup has no std for $t here: nightly -Z build-std with zig instead"
        how[$t]=build-std
    fi
    echo "$t: ${how[$t]}"
done

step "tools"
need=()
command -v file >/dev/null 2>&1 || need+=(file)
zig=
for t in "${targets[@]}"; do
    if [ "${how[$t]}" = std ]; then
        read -r linker pkg <<<"$(linker_of "$t")"
        command -v "$linker" >/dev/null 2>&1 || need+=("$pkg")
    else
        zig=1
    fi
done
if [ -n "$zig" ]; then
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
fi
if [ ${#need[@]} -eq 0 ]; then
    echo "Debian packages: all there"
else
    apt_install "${need[@]}"
fi
if [ -n "$zig" ]; then
    if ! cargo +nightly --version >/dev/null 2>&1; then
        rustup toolchain install nightly --profile minimal
    fi
    rustup component add rust-src --toolchain nightly >/dev/null
    if [ ! -x "$tools/bin/cargo-zigbuild" ] || ! "$tools/bin/pip" show -q "${zig_tools[@]%%==*}" >/dev/null 2>&1 ||
        [ "$("$tools/bin/python" -m ziglang version)" != "${zig_tools[0]##*==}" ]; then
        python3 -m venv "$tools"
        "$tools/bin/pip" install -q --disable-pip-version-check "${zig_tools[@]}"
    fi
    echo "zig $("$tools/bin/python" -m ziglang version), $("$tools/bin/cargo-zigbuild" --version)"
fi

declare -A secs
for t in "${targets[@]}"; do
    step "${how[$t]}: $t"
    start=$(date +%s)
    if [ "${how[$t]}" = std ]; then
        read -r linker _ <<<"$(linker_of "$t")"
        # CARGO_TARGET_<TRIPLE>_LINKER, unless the caller chose one already.
        var="CARGO_TARGET_$(echo "$t" | tr 'a-z-' 'A-Z_')_LINKER"
        export "$var=${!var:-$linker}"
        echo "$var=${!var}"
        cargo build --profile router --locked --target "$t"
    else
        # link-self-contained=no: rustc would otherwise name crt1.o & co.
        # from a self-contained directory that build-std does not make;
        # zig adds its own musl crt objects instead. (The linker's warning
        # about the missing lib directory of the sysroot is harmless.)
        flags='"-Clink-self-contained=no"'
        # mipsel: the target's default static-pie binary runs --version but
        # dies with SIGSEGV at the top of its stack as soon as `serve`
        # starts its runtime (qemu-mipsel 7.2; not root-caused: lld's MIPS
        # static-pie or qemu); a non-PIE static binary runs, and is also
        # what MIPS router firmware usually ships.
        [ "$t" = mipsel-unknown-linux-musl ] && flags+=',"-Crelocation-model=static"'
        PATH="$tools/bin:$PATH" cargo +nightly zigbuild --profile router --locked --target "$t" \
            -Z build-std=std,panic_abort --config "target.$t.rustflags=[$flags]"
    fi
    secs[$t]=$(($(date +%s) - start))
done

step "router binaries"
printf '| target | bytes | MiB | build s | file |\n|---|---:|---:|---:|---|\n'
bad=0
for t in "${targets[@]}"; do
    bin=$target_dir/$t/router/getapr
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
