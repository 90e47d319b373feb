#!/bin/sh
# systemd-analyze verify on the units as configured in this build, with ExecStart pointed
# at this build's pinpoold (verify insists that the binary exists).  Exit 77 = skipped.
set -u
build_units="$1"   # the build's systemd/ folder (configured units)
bin_dir="$2"       # the build's bin/ folder

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "SKIPPED: systemd-analyze is not installed"
  exit 77
fi
tmp=$(mktemp -d /tmp/ppd-units-XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
sed "s|^ExecStart=[^ ]*pinpoold|ExecStart=$bin_dir/pinpoold|" "$build_units/pinpoold.service" \
  > "$tmp/pinpoold.service"
cp "$build_units/pinpoold.socket" "$tmp/pinpoold.socket"
grep -q '^Type=notify$' "$tmp/pinpoold.service" || { echo "FAIL: service is not Type=notify"; exit 1; }
grep -q '^ListenStream=/run/pinpool/pinpool.sock$' "$tmp/pinpoold.socket" || { echo "FAIL: ListenStream"; exit 1; }
grep -q '^SocketMode=0660$' "$tmp/pinpoold.socket" || { echo "FAIL: SocketMode"; exit 1; }
grep -q '^SocketGroup=pinpool$' "$tmp/pinpoold.socket" || { echo "FAIL: SocketGroup"; exit 1; }

out=$(cd "$tmp" && systemd-analyze verify --man=no ./pinpoold.socket ./pinpoold.service 2>&1)
rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -qiE 'Failed to (initialize|connect|create|set up) (manager|bus)|System has not been booted|Operation not permitted'; then
  echo "SKIPPED: systemd-analyze cannot run here: $out"
  exit 77
fi
# verify may warn about things outside our units (other units on the host): only lines
# that name our files count.
ours=$(echo "$out" | grep -E 'pinpoold\.(service|socket)' || true)
if [ $rc -ne 0 ] || [ -n "$ours" ]; then
  echo "systemd-analyze verify failed (rc $rc):"
  echo "$out"
  exit 1
fi
echo "systemd-analyze verify: pinpoold.socket and pinpoold.service are clean"
exit 0
