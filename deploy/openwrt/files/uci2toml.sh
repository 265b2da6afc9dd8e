# getapr: UCI (/etc/config/getapr) -> TOML (getapr.toml), for the procd
# init script. POSIX sh; needs OpenWrt's /lib/functions.sh (config_get,
# config_get_bool, config_list_foreach) loaded and `config_load getapr` done.
#
#   getapr_uci2toml SECTION >FILE     exit 1 with a message on a bad value
#
# Only options that are set are written: getapr's own defaults fill in the
# rest (config/getapr.toml shows them). Every string is emitted as a TOML
# basic string with \ and " escaped; control characters (a newline in a
# value, say) are refused rather than passed on.

getapr_die() {
    echo "getapr: /etc/config/getapr: $*" >&2
    return 1
}

# TOML basic string of $1.
getapr_str() {
    case $1 in
    *[[:cntrl:]]*)
        getapr_die "control character in '$1'"
        return 1
        ;;
    esac
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

# A decimal number, as TOML wants it.
getapr_num() { # NAME VALUE
    case $2 in
    '' | *[!0-9]*)
        getapr_die "option $1 '$2' is not a number"
        return 1
        ;;
    esac
    printf '%s' "$2"
}

_getapr_item() {
    _getapr_s=$(getapr_str "$1") || {
        _getapr_bad=1
        return 0
    }
    _getapr_list="${_getapr_list:+$_getapr_list, }$_getapr_s"
}

# KEY = [list] when the UCI list OPTION has entries.
getapr_list() { # SECTION OPTION KEY
    _getapr_list=
    _getapr_bad=
    config_list_foreach "$1" "$2" _getapr_item
    [ -z "$_getapr_bad" ] || return 1
    [ -z "$_getapr_list" ] || printf '%s = [%s]\n' "$3" "$_getapr_list"
}

# KEY = "string" when OPTION is set.
getapr_opt_str() { # SECTION OPTION KEY
    config_get _getapr_v "$1" "$2"
    [ -n "$_getapr_v" ] || return 0
    _getapr_v=$(getapr_str "$_getapr_v") || return 1
    printf '%s = %s\n' "$3" "$_getapr_v"
}

# KEY = number when OPTION is set.
getapr_opt_num() { # SECTION OPTION KEY
    config_get _getapr_v "$1" "$2"
    [ -n "$_getapr_v" ] || return 0
    _getapr_v=$(getapr_num "$2" "$_getapr_v") || return 1
    printf '%s = %s\n' "$3" "$_getapr_v"
}

# KEY = true|false when OPTION is set (UCI booleans: 1/0, yes/no, on/off, true/false).
getapr_opt_bool() { # SECTION OPTION KEY
    config_get _getapr_v "$1" "$2"
    [ -n "$_getapr_v" ] || return 0
    case $_getapr_v in
    1 | yes | on | true | enabled) printf '%s = true\n' "$3" ;;
    0 | no | off | false | disabled) printf '%s = false\n' "$3" ;;
    *)
        getapr_die "option $2 '$_getapr_v' is not a boolean"
        return 1
        ;;
    esac
}

getapr_uci2toml() { # SECTION
    _s=${1:-main}
    echo "# Generated from /etc/config/getapr by /etc/init.d/getapr; edit that file."
    echo "[dns]"
    getapr_list "$_s" listen listen || return 1
    getapr_list "$_s" upstream upstreams || return 1
    getapr_opt_str "$_s" resolv_conf resolv_conf || return 1
    getapr_opt_num "$_s" timeout_ms timeout_ms || return 1
    getapr_opt_num "$_s" cache_size cache_size || return 1
    getapr_list "$_s" allow allow || return 1
    echo "[http]"
    config_get_bool _getapr_on "$_s" http 1
    if [ "$_getapr_on" = 1 ]; then
        getapr_list "$_s" http_listen listen || return 1
        getapr_list "$_s" http_allow allow || return 1
    else
        echo "listen = []"
    fi
    echo "[probe]"
    config_get_bool _getapr_on "$_s" probe 1
    if [ "$_getapr_on" = 1 ]; then
        getapr_opt_num "$_s" probe_interval_ms interval_ms || return 1
        getapr_opt_num "$_s" probe_timeout_ms timeout_ms || return 1
        getapr_list "$_s" probe_target targets || return 1
        getapr_list "$_s" stun stun || return 1
        getapr_opt_bool "$_s" probe_destinations destinations || return 1
        getapr_list "$_s" probe_interface interfaces || return 1
        getapr_list "$_s" exclude_interface exclude_interfaces || return 1
    else
        # docs/interface.md: this is "no probe traffic at all".
        printf 'targets = []\nstun = []\ndestinations = false\n'
    fi
    echo "[policy]"
    getapr_opt_str "$_s" filter filter || return 1
    getapr_opt_bool "$_s" break_dnssec break_dnssec || return 1
}
