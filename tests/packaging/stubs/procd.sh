# shellcheck shell=dash
# Stand-in for the parts of /etc/rc.common and /lib/functions/procd.sh that pipit.init calls. procd
# itself is not there: every call is written as one line to $PROCD_LOG, and procd_running answers
# with $PROCD_RUNNING (1: the instance runs). start does what rc.common's does around the
# script's own functions, and reload calls reload_service.

procd_record() {
	printf '%s\n' "$*" >>"$PROCD_LOG"
}

extra_command() { :; }

procd_open_instance() { procd_record procd_open_instance "$@"; }
procd_set_param() { procd_record procd_set_param "$@"; }
procd_close_instance() { procd_record procd_close_instance "$@"; }
procd_add_reload_trigger() { procd_record procd_add_reload_trigger "$@"; }
procd_send_signal() { procd_record procd_send_signal "$@"; }
procd_running() {
	procd_record procd_running "$@"
	[ "${PROCD_RUNNING:-0}" = 1 ]
}

start() {
	procd_record start
	start_service && service_triggers
}

stop() {
	procd_record stop
}

reload() {
	procd_record reload
	reload_service
}

logger() {
	cat >>"$LOGGER_LOG"
}
