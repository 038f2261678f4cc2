# shellcheck shell=dash
# Stand-in for the UCI part of OpenWrt's /lib/functions.sh (with uci_load), which Debian does not
# package. It behaves as the real one does for what pipit.init uses:
# - config_load NAME reads ${UCI_CONFIG_DIR:-/etc/config}/NAME. The real one evaluates the output
#   of `uci -n export NAME`; this one evaluates the file itself, which is the same for files written
#   in uci's own format (one statement per line, values in single quotes), as the fixtures are.
#   Anonymous sections get names like uci's: "cfg" followed by six hex digits.
# - config, option and list store values in CONFIG_<section>_<option> variables and call
#   config_cb, option_cb and list_cb; a new load forgets the sections and lists of the last one;
# - config_get, config_get_bool, config_foreach and config_list_foreach read them back.

config_cb() { :; }
option_cb() { :; }
list_cb() { :; }

package() { :; }

config() {
	local type="$1" name="$2"
	CONFIG_NUM_SECTIONS=$((CONFIG_NUM_SECTIONS + 1))
	[ -n "$name" ] || name=$(printf 'cfg%02x%04x' "$CONFIG_NUM_SECTIONS" $((CONFIG_NUM_SECTIONS * 40503 % 65536)))
	CONFIG_SECTIONS="${CONFIG_SECTIONS:+$CONFIG_SECTIONS }$name"
	CONFIG_SECTION=$name
	eval "CONFIG_${name}_TYPE=\$type"
	config_cb "$type" "$name"
}

option() {
	local name="$1"
	shift
	eval "CONFIG_${CONFIG_SECTION}_${name}=\$*"
	option_cb "$name" "$*"
}

list() {
	local name="$1" length
	shift
	eval "length=\$((\${CONFIG_${CONFIG_SECTION}_${name}_LENGTH:-0} + 1))"
	[ "$length" = 1 ] && CONFIG_LIST_STATE="$CONFIG_LIST_STATE ${CONFIG_SECTION}_${name}"
	eval "CONFIG_${CONFIG_SECTION}_${name}_ITEM${length}=\$*"
	eval "CONFIG_${CONFIG_SECTION}_${name}_LENGTH=\$length"
	eval "CONFIG_${CONFIG_SECTION}_${name}=\"\${CONFIG_${CONFIG_SECTION}_${name}:+\${CONFIG_${CONFIG_SECTION}_${name}} }\$*\""
	list_cb "$name" "$*"
}

config_load() {
	local file="${UCI_CONFIG_DIR:-/etc/config}/$1" section list
	for section in $CONFIG_SECTIONS; do
		unset "CONFIG_${section}_TYPE"
	done
	for list in $CONFIG_LIST_STATE; do
		unset "CONFIG_${list}" "CONFIG_${list}_LENGTH"
	done
	CONFIG_LIST_STATE=
	CONFIG_SECTIONS=
	CONFIG_NUM_SECTIONS=0
	CONFIG_SECTION=
	[ -r "$file" ] || return 1
	# shellcheck disable=SC1090
	. "$file"
}

# config_get VAR SECTION OPTION [DEFAULT]: an unset or empty option gives DEFAULT.
config_get() {
	eval "$1=\${CONFIG_${2}_${3}:-\$4}"
}

config_get_bool() {
	local value
	config_get value "$2" "$3" "$4"
	case "$value" in
		1 | on | true | yes | enabled) value=1 ;;
		0 | off | false | no | disabled) value=0 ;;
		*) value="$4" ;;
	esac
	eval "$1=\$value"
}

# config_foreach FUNCTION [TYPE [ARGS...]]: FUNCTION SECTION ARGS... for each section of TYPE.
config_foreach() {
	local function="$1" type="$2" section section_type
	shift
	[ $# -gt 0 ] && shift
	for section in $CONFIG_SECTIONS; do
		eval "section_type=\${CONFIG_${section}_TYPE:-}"
		[ -z "$type" ] || [ "$section_type" = "$type" ] || continue
		"$function" "$section" "$@"
	done
}

# config_list_foreach SECTION LIST FUNCTION [ARGS...]: FUNCTION ITEM ARGS... for each item.
config_list_foreach() {
	local section="$1" name="$2" function="$3" length i=1 item
	shift 3
	eval "length=\${CONFIG_${section}_${name}_LENGTH:-0}"
	while [ "$i" -le "$length" ]; do
		eval "item=\${CONFIG_${section}_${name}_ITEM${i}}"
		"$function" "$item" "$@"
		i=$((i + 1))
	done
}
