#!/bin/sh
# Installs getapr on a systemd host, and takes it off again (deploy/README.md).
#
#   deploy/install.sh install   [--root=DIR] [--bin=FILE] [--resolved=stub|forward]
#                               [--resolv-conf] [--no-start]
#   deploy/install.sh uninstall [--root=DIR] [--purge] [--no-start]
#
# install puts in place:
#   /usr/local/bin/getapr                  the binary (--bin, default target/release/getapr)
#   /etc/getapr/getapr.toml                from config/getapr.toml, adapted to the
#                                          set-up; an existing file is never touched
#   /etc/systemd/system/getapr.service     the unit (deploy/systemd/)
#   /etc/systemd/resolved.conf.d/getapr.conf   with --resolved=stub|forward
#   /etc/systemd/system/getapr-upstreams.{path,service}
#                                          with --resolved=forward, or --resolv-conf
#                                          without --resolved: reload on upstream change
#   /etc/resolv.conf -> "nameserver 127.0.0.53" only with --resolv-conf; the old
#                                          one (file or symlink) is kept exactly
# and records all of it under /var/lib/getapr-install/, which uninstall reads:
# it restores resolv.conf byte for byte (or the symlink and its target text),
# and removes what install created. The config stays unless --purge.
#
# --root=DIR (or DESTDIR=DIR) works on a tree under DIR instead of /: nothing
# is started or reloaded then (tests use this). On / the services are
# (re)started in an order that never leaves the host without DNS: resolved
# first (it frees 127.0.0.53), then getapr, and resolv.conf is switched only
# once getapr runs.
set -eu

PREFIX_BIN=/usr/local/bin
STATE=/var/lib/getapr-install
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

die() {
    echo "install.sh: $*" >&2
    exit 1
}
say() { echo "install.sh: $*"; }

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

[ $# -ge 1 ] || usage
action=$1
shift
root=${DESTDIR:-}
bin=
resolved=
resolv_conf=
start=yes
purge=
for arg in "$@"; do
    case $arg in
    --root=*) root=${arg#--root=} ;;
    --bin=*) bin=${arg#--bin=} ;;
    --resolved=stub | --resolved=forward) resolved=${arg#--resolved=} ;;
    --resolved=*) die "--resolved takes stub or forward, not '${arg#--resolved=}'" ;;
    --resolv-conf) resolv_conf=yes ;;
    --no-start) start= ;;
    --purge) purge=yes ;;
    -h | --help) usage 0 ;;
    *) die "unknown argument '$arg' (see --help)" ;;
    esac
done
case $action in install | uninstall) ;; *) usage ;; esac
root=${root%/}
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root, or with --root=DIR to install into a directory tree"
fi
# Only a real install on / starts, stops or reloads anything.
live=
if [ -z "$root" ] && [ -n "$start" ] && command -v systemctl >/dev/null 2>&1 &&
    [ -d /run/systemd/system ]; then
    live=yes
fi

# Paths on the target system, and where they are under --root.
t() { printf '%s%s' "$root" "$1"; }
UNIT=/etc/systemd/system/getapr.service
PATHUNIT=/etc/systemd/system/getapr-upstreams.path
PATHSVC=/etc/systemd/system/getapr-upstreams.service
DROPIN=/etc/systemd/resolved.conf.d/getapr.conf
CONF=/etc/getapr/getapr.toml
UPSTREAM_COPY=/etc/getapr/upstream-resolv.conf
RESOLV=/etc/resolv.conf

# The address resolv.conf and the config use in each set-up.
listen_of() {
    case $1 in
    forward) echo 127.0.0.153 ;;
    *) echo 127.0.0.53 ;;
    esac
}

# Records a created path, so that uninstall removes exactly these.
created() { echo "$1" >>"$(t "$STATE")/created"; }

put() { # put MODE SOURCE TARGET: copy, record, and say so
    mkdir -p "$(dirname "$(t "$3")")"
    cp "$2" "$(t "$3").getapr-new"
    chmod "$1" "$(t "$3").getapr-new"
    mv -f "$(t "$3").getapr-new" "$(t "$3")"
    created "$3"
    say "installed $3"
}

# The config for the set-up: the shipped file with the keys that differ.
write_config() {
    addr=$(listen_of "$resolved")
    upstreams='["system"]'
    from=/etc/resolv.conf
    case $resolved in
    stub) upstreams='["127.0.0.54"]' ;;
    forward) from=/run/systemd/resolve/resolv.conf ;;
    *) if [ -n "$resolv_conf" ]; then from=$UPSTREAM_COPY; fi ;;
    esac
    sed -e "s|^listen = \\[\"127.0.0.53:53\"\\]|listen = [\"$addr:53\"]|" \
        -e "s|^upstreams = \\[\"system\"\\]|upstreams = $upstreams|" \
        -e "s|^resolv_conf = \"/etc/resolv.conf\"|resolv_conf = \"$from\"|" \
        "$repo/config/getapr.toml" >"$1"
    if ! grep -qxF "listen = [\"$addr:53\"]" "$1" ||
        ! grep -qxF "upstreams = $upstreams" "$1" ||
        ! grep -qxF "resolv_conf = \"$from\"" "$1"; then
        die "config/getapr.toml no longer has the lines this script adapts"
    fi
}

# Keeps /etc/resolv.conf as it is: a symlink's target text, or the file
# with its mode and times (cp -p), or the fact that there was none.
backup_resolv_conf() {
    s=$(t "$STATE")
    if [ -L "$(t "$RESOLV")" ]; then
        readlink "$(t "$RESOLV")" >"$s/resolv.conf.symlink"
    elif [ -e "$(t "$RESOLV")" ]; then
        cp -p "$(t "$RESOLV")" "$s/resolv.conf.file"
    else
        : >"$s/resolv.conf.absent"
    fi
}

restore_resolv_conf() {
    s=$(t "$STATE")
    if [ -f "$s/resolv.conf.symlink" ]; then
        rm -f "$(t "$RESOLV")"
        ln -s "$(cat "$s/resolv.conf.symlink")" "$(t "$RESOLV")"
    elif [ -f "$s/resolv.conf.file" ]; then
        rm -f "$(t "$RESOLV")"
        cp -p "$s/resolv.conf.file" "$(t "$RESOLV")"
    elif [ -f "$s/resolv.conf.absent" ]; then
        rm -f "$(t "$RESOLV")"
    else
        return 0
    fi
    say "restored $RESOLV"
}

do_install() {
    [ ! -e "$(t "$STATE")" ] || die "already installed ($STATE exists); uninstall first"
    if [ -z "$bin" ]; then
        bin=${CARGO_TARGET_DIR:-$repo/target}/release/getapr
    fi
    [ -x "$bin" ] || die "no binary at $bin (cargo build --release, or --bin=FILE)"
    mkdir -p "$(t "$STATE")"
    : >"$(t "$STATE")/created"
    echo "${resolved:-none}" >"$(t "$STATE")/mode"

    put 0755 "$bin" "$PREFIX_BIN/getapr"
    put 0644 "$here/systemd/getapr.service" "$UNIT"
    if [ "$resolved" = forward ] || { [ -z "$resolved" ] && [ -n "$resolv_conf" ]; }; then
        put 0644 "$here/systemd/getapr-upstreams.path" "$PATHUNIT"
        put 0644 "$here/systemd/getapr-upstreams.service" "$PATHSVC"
    fi
    if [ -n "$resolved" ]; then
        [ ! -e "$(t "$DROPIN")" ] || die "$DROPIN exists and is not ours"
        put 0644 "$here/systemd/resolved-$resolved.conf" "$DROPIN"
    fi
    if [ -z "$resolved" ] && [ -n "$resolv_conf" ] && [ ! -e "$(t "$CONF")" ]; then
        # Once resolv.conf names us, "system" needs the real servers elsewhere.
        if [ ! -e "$(t "$RESOLV")" ] || ! grep -q '^nameserver' "$(t "$RESOLV")"; then
            die "$RESOLV lists no nameserver to keep as getapr's upstreams"
        fi
        grep -v '^nameserver 127\.0\.0\.53$' "$(t "$RESOLV")" >"$(t "$STATE")/upstreams"
        put 0644 "$(t "$STATE")/upstreams" "$UPSTREAM_COPY"
    fi
    if [ -e "$(t "$CONF")" ]; then
        say "kept the existing $CONF (check that it fits: getapr check-config $CONF)"
    else
        mkdir -p "$(t /etc/getapr)"
        write_config "$(t "$STATE")/getapr.toml"
        put 0644 "$(t "$STATE")/getapr.toml" "$CONF"
        rm -f "$(t "$STATE")/getapr.toml"
        echo yes >"$(t "$STATE")/config-created"
    fi

    if [ -n "$live" ]; then
        systemctl daemon-reload
        if [ -n "$resolved" ]; then
            systemctl try-restart systemd-resolved.service
        fi
        if ! systemctl enable --now getapr.service; then
            journalctl -u getapr.service -n 20 --no-pager >&2 || true
            die "getapr did not start; resolv.conf untouched. Undo with: $0 uninstall"
        fi
        if [ -e "$(t "$PATHUNIT")" ]; then
            systemctl enable --now getapr-upstreams.path
        fi
    fi

    if [ -n "$resolv_conf" ]; then
        backup_resolv_conf
        addr=$(listen_of "$resolved")
        if [ "$resolved" = forward ]; then
            addr=127.0.0.53 # resolved's stub, which forwards to getapr
        fi
        rm -f "$(t "$RESOLV")"
        printf '# getapr (deploy/install.sh); the previous file is in %s\nnameserver %s\noptions edns0 trust-ad\n' \
            "$STATE" "$addr" >"$(t "$RESOLV")"
        chmod 0644 "$(t "$RESOLV")"
        say "$RESOLV now points at $addr"
        if [ -e /etc/NetworkManager/NetworkManager.conf ] && [ -z "$root" ]; then
            say "NetworkManager may rewrite it: see deploy/README.md (dns=none / rc-manager=unmanaged)"
        fi
    fi
    if [ -z "$root" ] && grep -q '^hosts:.*resolve' /etc/nsswitch.conf 2>/dev/null &&
        [ "$resolved" != forward ]; then
        say "note: /etc/nsswitch.conf sends glibc lookups to resolved (nss-resolve), past getapr; see deploy/README.md"
    fi
    say "done; check with: getapr check-config $CONF && kdig @$(listen_of "$resolved") example.com"
}

do_uninstall() {
    [ -d "$(t "$STATE")" ] || die "not installed by this script ($STATE missing)"
    # resolv.conf first: DNS goes back to what it was before getapr stops.
    restore_resolv_conf
    if [ -n "$live" ]; then
        systemctl disable --now getapr-upstreams.path 2>/dev/null || true
        systemctl disable --now getapr.service || true
    fi
    while IFS= read -r path; do
        case $path in
        "$CONF" | "$UPSTREAM_COPY")
            if [ -n "$purge" ]; then
                rm -f "$(t "$path")"
                say "removed $path"
            else
                say "kept $path (--purge removes it)"
            fi
            ;;
        *)
            rm -f "$(t "$path")"
            say "removed $path"
            ;;
        esac
    done <"$(t "$STATE")/created"
    # Directories we may have made, if empty now.
    rmdir "$(t /etc/systemd/resolved.conf.d)" 2>/dev/null || true
    if [ -n "$purge" ]; then
        rmdir "$(t /etc/getapr)" 2>/dev/null || true
    fi
    mode=$(cat "$(t "$STATE")/mode")
    rm -rf "$(t "$STATE")"
    if [ -n "$live" ]; then
        systemctl daemon-reload
        if [ "$mode" != none ]; then
            systemctl try-restart systemd-resolved.service
        fi
    fi
    say "uninstalled"
}

case $action in
install) do_install ;;
uninstall) do_uninstall ;;
esac
