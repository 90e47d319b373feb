#!/usr/bin/env bash
# test_systemd_restart.sh BUILD — restart survival under a real systemd 252 (booted by
# tests/systemd/sysd.sh, the units as installed):
#   1. a client (sysd_survivor) holds a buffer and objects with patterns in them;
#   2. `systemctl kill -s KILL pinpoold` → Restart= brings a new main process, which
#      finds the region and journal in the fd store (NFileDescriptorStore=2) and restores
#      from the journal;
#   3. the client's next call re-claims its session: the call succeeds, every pattern is
#      intact, it frees everything (pp_reclaims >= 1);
#   4. `systemctl restart pinpoold` (a stop and a start, as for an upgrade of the binary:
#      systemd 252 keeps the fd store across it): the stopping daemon leaves its sessions
#      to the journal, the new one takes them back, and a client held across it carries on;
#   5. a hung loop (PINPOOLD_TEST_HANG_AFTER_REQUESTS, with WatchdogSec=2s in a drop-in) is
#      killed by systemd's watchdog (Result=watchdog), restarted, and a client held across
#      it carries on the same way.
# Exit 0 pass, 1 fail, 77 skip (no root, or systemd cannot boot here).
set -u

BUILD=$(cd "${1:?usage: test_systemd_restart.sh BUILD}" && pwd -P)
HERE=$(cd "$(dirname "$0")" && pwd -P)
SYSD=$HERE/../systemd/sysd.sh
SURVIVOR=$BUILD/tests/sysd_survivor
DIR=

[ "$(id -u)" = 0 ] || { echo "SKIPPED: needs root (booting systemd)"; exit 77; }

cleanup() {
  [ -n "$DIR" ] && "$SYSD" stop "$DIR"
  [ -n "$DIR" ] && rm -rf "$DIR"
}
trap cleanup EXIT

in_ns() { "$SYSD" run "$DIR" "$@"; }
fail() {
  echo "FAIL: $*"
  in_ns systemctl status --no-pager pinpoold.service
  "$SYSD" journal "$DIR" -n 80 -u pinpoold.service
  [ -f "$DIR/survivor.log" ] && sed 's/^/    survivor: /' "$DIR/survivor.log"
  exit 1
}
pass() { echo "ok: $*"; }

main_pid() { in_ns systemctl show -P MainPID pinpoold.service; }
new_main_pid() {
  local old=$1 p deadline=$((SECONDS + 30))
  while [ $SECONDS -lt $deadline ]; do
    p=$(main_pid)
    if [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$old" ] &&
      [ "$(in_ns systemctl show -P ActiveState pinpoold.service)" = active ]; then
      echo "$p"
      return 0
    fi
    sleep 0.1
  done
  return 1
}
wait_file() { # FILE SECS
  local deadline=$((SECONDS + $2))
  while [ ! -e "$1" ]; do
    [ $SECONDS -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
# A survivor in the background inside the namespace, its files in $DIR/$1.
start_survivor() {
  mkdir -p "$DIR/$1"
  in_ns sh -c "'$SURVIVOR' '$DIR/$1' >'$DIR/survivor.log' 2>&1 &"
  wait_file "$DIR/$1/ready" 30 || fail "the survivor did not get its buffer"
}
finish_survivor() {
  touch "$DIR/$1/go"
  wait_file "$DIR/$1/result" 60 || fail "the survivor did not finish"
  grep -q '^ok' "$DIR/$1/result" || fail "survivor: $(cat "$DIR/$1/result")"
}

DIR=$(mktemp -d /tmp/pinpool-sysd-restart-XXXXXX)
chmod 755 "$DIR"
SYSD_OWNER_PID=$$ SYSD_PINPOOLD_OPTS="--size 16M --page-size 4K --grace 60000" \
  "$SYSD" start "$DIR" "$BUILD"
rc=$?
[ $rc -eq 77 ] && { echo "SKIPPED: a real systemd cannot run here (see above)"; exit 77; }
[ $rc -eq 0 ] || fail "the harness could not boot systemd and install this build"
in_ns pinpoolctl status >/dev/null || fail "pinpoolctl status (socket activation) failed"

# 1-3. SIGKILL.
start_survivor kill
pid=$(main_pid)
n=$(in_ns systemctl show -P NFileDescriptorStore pinpoold.service)
[ "$n" = 2 ] || fail "the fd store holds '$n' fds, not the region and the journal"
in_ns systemctl kill -s KILL pinpoold.service || fail "systemctl kill failed"
pid2=$(new_main_pid "$pid") || fail "no new main process within 30 s of SIGKILL"
"$SYSD" journal "$DIR" -u pinpoold.service | grep -q "restored from the journal" ||
  fail "the new daemon did not restore from the journal"
finish_survivor kill
pass "SIGKILL of $pid: $pid2 restored the region and journal; the client carried on ($(cat "$DIR/kill/result"))"

# 4. systemctl restart.
start_survivor restart
pid=$(main_pid)
in_ns systemctl restart pinpoold.service || fail "systemctl restart failed"
pid2=$(new_main_pid "$pid") || fail "no new main process after systemctl restart"
[ "$("$SYSD" journal "$DIR" -u pinpoold.service | grep -c "restored from the journal")" -ge 2 ] ||
  fail "the restarted daemon did not restore from the journal"
finish_survivor restart
pass "systemctl restart: $pid2 took the sessions back; the client carried on ($(cat "$DIR/restart/result"))"

# 5. The watchdog.
in_ns mkdir -p /etc/systemd/system/pinpoold.service.d
in_ns sh -c 'printf "[Service]\nWatchdogSec=2s\nEnvironment=PINPOOLD_TEST_HANG_AFTER_REQUESTS=20\n" >/etc/systemd/system/pinpoold.service.d/hang.conf'
in_ns systemctl daemon-reload || fail "daemon-reload failed"
in_ns systemctl restart pinpoold.service || fail "systemctl restart failed"
start_survivor hang
pid=$(main_pid)
# Requests until the loop hangs (a pinpoolctl then gets no answer); the watchdog does the
# rest.
for i in $(seq 1 40); do
  timeout 3 "$SYSD" run "$DIR" pinpoolctl status >/dev/null 2>&1 || break
done
pid2=$(new_main_pid "$pid") || fail "the hung daemon was not restarted"
[ "$(in_ns systemctl show -P NRestarts pinpoold.service)" -ge 1 ] || fail "no restart counted"
"$SYSD" journal "$DIR" -u pinpoold.service | grep -qi "watchdog timeout" ||
  fail "systemd did not report a watchdog timeout"
finish_survivor hang
pass "a hung loop: killed by systemd's watchdog, restarted as $pid2; the client carried on"
echo "test_systemd_restart: every check passed"
exit 0
