# shellcheck shell=dash
# Stand-in for OpenWrt's /usr/share/libubox/jshn.sh (libubox), which Debian does not package: the
# functions pipit.init uses, with the output of the real json_dump (json-c's spaced format:
# `{ "a": 1, "b": [ "x" ] }`, `{ }` when empty, "/" written as "\/", control characters as
# \uXXXX). Containers are tracked on a stack held in shell variables.

# Appends to the document.
_jshn_put() {
	_JSHN_OUT="$_JSHN_OUT$1"
}

# Writes $1 as a JSON string the way json-c does.
_jshn_quote() {
	printf '%sx' "$1" | awk '
		BEGIN {
			ORS = ""
			for (i = 1; i < 32; i++) esc[sprintf("%c", i)] = sprintf("\\u%04x", i)
			esc["\b"] = "\\b"; esc["\f"] = "\\f"; esc["\r"] = "\\r"; esc["\t"] = "\\t"
			esc["\\"] = "\\\\"; esc["\""] = "\\\""; esc["/"] = "\\/"
		}
		{
			if (NR > 1) out = out "\\n"
			n = length($0)
			for (i = 1; i <= n; i++) {
				c = substr($0, i, 1)
				out = out ((c in esc) ? esc[c] : c)
			}
		}
		END { print "\"" substr(out, 1, length(out) - 1) "\"" }'
}

# Starts a new member of the open container: the separator, and the key inside an object.
_jshn_member() {
	if [ "${_JSHN_FIRST%"${_JSHN_FIRST#?}"}" = 1 ]; then
		_jshn_put " "
		_JSHN_FIRST="0${_JSHN_FIRST#?}"
	else
		_jshn_put ", "
	fi
	if [ "${_JSHN_STACK%"${_JSHN_STACK#?}"}" = o ]; then
		_jshn_put "$(_jshn_quote "$1"): "
	fi
}

_jshn_open() {
	_jshn_member "$2"
	_jshn_put "$3"
	_JSHN_STACK="$1$_JSHN_STACK"
	_JSHN_FIRST="1$_JSHN_FIRST"
}

# Closes the open container: " }" after members as after none, as json-c writes it.
_jshn_close() {
	_jshn_put " $1"
	_JSHN_STACK=${_JSHN_STACK#?}
	_JSHN_FIRST=${_JSHN_FIRST#?}
}

json_init() {
	_JSHN_OUT="{"
	_JSHN_STACK=o
	_JSHN_FIRST=1
}

json_add_object() { _jshn_open o "$1" "{"; }
json_close_object() { _jshn_close "}"; }
json_add_array() { _jshn_open a "$1" "["; }
json_close_array() { _jshn_close "]"; }

json_add_string() {
	_jshn_member "$1"
	_jshn_put "$(_jshn_quote "$2")"
}

# Like jshn, an integer in decimal without leading zeros.
json_add_int() {
	local sign="" digits="$2"
	case "$digits" in
		-*) sign=- digits=${digits#-} ;;
	esac
	while [ "${digits#0}" != "$digits" ] && [ -n "${digits#0}" ]; do
		digits=${digits#0}
	done
	[ "$digits" = 0 ] && sign=""
	_jshn_member "$1"
	_jshn_put "$sign$digits"
}

# Like jshn, 0 is false and any other number true.
json_add_boolean() {
	_jshn_member "$1"
	if [ "$2" = 0 ]; then _jshn_put false; else _jshn_put true; fi
}

json_dump() {
	printf '%s }\n' "$_JSHN_OUT"
}
