# A stand-in for OpenWrt's /lib/functions.sh, for tests/deploy.rs: just
# config_load, config_get, config_get_bool and config_list_foreach, enough
# for deploy/openwrt/files/getapr.init and uci2toml.sh. A UCI file is shell
# syntax (`config TYPE 'NAME'`, `option K 'V'`, `list K 'V'`), so loading
# one is sourcing it with these three words defined as functions.
# Values are stored by reference (eval of "\$2"), never re-parsed.

_uci_s=
config() { _uci_s=$2; }
option() { eval "_uci_${_uci_s}_$1=\$2"; }
list() {
    eval "_uci_n=\${_uci_${_uci_s}_$1_n:-0}"
    _uci_n=$((_uci_n + 1))
    eval "_uci_${_uci_s}_$1_$_uci_n=\$2"
    eval "_uci_${_uci_s}_$1_n=$_uci_n"
}

config_load() { . "${UCI_CONFIG_DIR:-/etc/config}/$1"; }

config_get() { # VAR SECTION OPTION [DEFAULT]
    eval "$1=\${_uci_$2_$3-\$4}"
}

config_get_bool() { # VAR SECTION OPTION [DEFAULT]
    config_get _uci_b "$2" "$3" "$4"
    case $_uci_b in
    1 | yes | on | true | enabled) eval "$1=1" ;;
    *) eval "$1=0" ;;
    esac
}

config_list_foreach() { # SECTION OPTION FUNCTION
    eval "_uci_len=\${_uci_$1_$2_n:-0}"
    _uci_i=1
    while [ "$_uci_i" -le "$_uci_len" ]; do
        eval "_uci_v=\$_uci_$1_$2_$_uci_i"
        "$3" "$_uci_v"
        _uci_i=$((_uci_i + 1))
    done
}
