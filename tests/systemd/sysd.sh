#!/usr/bin/env bash
# sysd.sh — boot a real systemd as PID 1 in private namespaces, install this build's
# pinpool into it, and run commands inside.  For tests that must see what systemd does
# (socket activation, Type=notify, Restart=, start limits, sandboxing, kills, reloads).
#
#   sysd.sh start DIR [BUILD]   boot systemd; with BUILD (or $SYSD_BUILD) also `install`
#   sysd.sh install DIR BUILD   cmake --install BUILD inside (as root, to the live system:
#                               the install step runs systemd-sysusers itself), check
#                               the pinpool group, daemon-reload, write
#                               /etc/default/pinpoold when SYSD_PINPOOLD_OPTS is set,
#                               systemctl enable --now pinpoold.socket
#   sysd.sh run DIR CMD...      run CMD inside (every namespace, systemd's root, a clean
#                               environment); exit status is CMD's, 125 if DIR has no
#                               running systemd
#   sysd.sh wait DIR SECS CMD...  `run` CMD every 0.2 s until it succeeds; 1 after SECS
#                               (its last output shown), 125 if no systemd runs
#   sysd.sh journal DIR [ARGS]  journalctl --no-pager ARGS inside
#   sysd.sh pid DIR             the host PID of the namespace's PID 1 (systemd)
#   sysd.sh alive DIR           exit 0 while DIR's systemd runs
#   sysd.sh stop DIR            kill the namespace, remove its cgroup and the harness's
#                               files in DIR (DIR itself when that leaves it empty)
#
# Exit codes of start/install: 0 ready; 77 this machine cannot boot systemd here (not
# root, no unshare/nsenter, no writable cgroup2, no overlayfs, systemd did not reach
# running/degraded in time) — the reason is printed, tests turn it into a visible skip;
# 1 anything else, e.g. the build does not install or pinpoold.socket does not start.
#
# Environment: SYSD_BOOT_TIMEOUT (seconds to reach running/degraded, default 60);
# SYSD_OWNER_PID (the namespace is torn down within a second of this process ending;
# default: the caller of `start`, $PPID — a test passes its own $$); SYSD_BIND (more
# host paths, space-separated, to show inside); SYSD_PINPOOLD_OPTS (see install);
# SYSD_KEEP=1 (stop leaves DIR's files: boot.log, console.log).
#
# Typical use (a test script): SYSD_OWNER_PID=$$ sysd.sh start "$d" "$build" || exit $?;
# trap 'sysd.sh stop "$d"' EXIT; sysd.sh run "$d" systemctl kill -s KILL pinpoold;
# sysd.sh wait "$d" 20 pinpoolctl status.  Unit drop-ins (WatchdogSec=, ...) go to
# /etc/systemd/system/pinpoold.service.d/ inside, followed by `systemctl daemon-reload`.
# Boot takes about 0.5 s, start with the install about 1 s, stop about 0.2 s.
#
# What the namespace is.  `unshare --pid --mount --net --uts --ipc --cgroup --fork
# --kill-child` runs `sysd.sh __boot`, which becomes PID 1 of the new PID namespace and
# builds the root systemd will see, all of it in the private mount namespace:
#   /              overlayfs: the host's root file system below, a tmpfs above, so every
#                  write (/etc, /usr/local, /var) lands in memory and vanishes with it
#   /proc          a new procfs, with /proc/sys and /proc/sysrq-trigger read-only
#   /sys           a new sysfs, read-only; /sys/fs/cgroup a cgroup2 mount, writable,
#                  whose root is a cgroup made for this namespace on the host
#                  (the --cgroup namespace), so systemd's slices stay inside it
#   /dev           a tmpfs with null, zero, full, random, urandom, tty bound from the
#                  host, a private devpts and /dev/shm; /dev/console is DIR/console.log
#   /run, /tmp     new tmpfs
#   DIR            the host's DIR, read-write, at the same path
#   BUILD, its source tree, SYSD_BIND paths: each an overlay (host below, tmpfs above)
#                  at the same path, so `cmake --install` can write its manifest
# Units that would act on the host kernel or devices (modules, sysctl, binfmt, udev,
# hugetlbfs and debugfs mounts, swap, gettys, time sync, fstab) are masked, and systemd
# boots `sysd-harness.target` (sysinit + sockets) with container=pinpool-sysd set.
# The hugepage pool is the host's: tests size it from the host (tests/common/hugepages.h
# semantics; /sys is read-only inside).
#
# Teardown.  PID 1 of a PID namespace takes every process of it along when it dies, and
# unshare --kill-child makes it die with unshare.  A watcher (`sysd.sh __watch`, its own
# session) kills unshare as soon as the owner process ends, so a test killed by ctest's
# timeout leaves nothing running; `stop` kills it at once.  The cgroup is removed
# bottom-up after the processes are gone.
set -u

SELF=$(readlink -f "$0")
SYSD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Masked inside: each would act on the host kernel, its devices or its consoles, or
# clean directories the harness binds (tmpfiles).  Nothing here is needed by pinpoold.
MASKED_UNITS="systemd-modules-load.service kmod-static-nodes.service systemd-sysctl.service
  systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount
  systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
  systemd-udev-trigger.service systemd-udev-settle.service systemd-hwdb-update.service
  dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount
  sys-kernel-config.mount sys-fs-fuse-connections.mount systemd-remount-fs.service
  systemd-random-seed.service systemd-pstore.service systemd-timesyncd.service
  getty@.service serial-getty@.service console-getty.service getty-static.service
  systemd-firstboot.service systemd-machine-id-commit.service systemd-repart.service
  systemd-pcrphase-sysinit.service systemd-pcrphase.service
  systemd-tmpfiles-setup-dev.service systemd-tmpfiles-setup.service
  systemd-tmpfiles-clean.service systemd-tmpfiles-clean.timer systemd-journald-audit.socket
  cryptsetup.target veritysetup.target integritysetup.target swap.target"
MASKED_GENERATORS="systemd-fstab-generator systemd-gpt-auto-generator
  systemd-cryptsetup-generator systemd-integritysetup-generator
  systemd-veritysetup-generator systemd-hibernate-resume-generator"

say() { echo "sysd: $*" >&2; }
skip() {
  echo "sysd: SKIP: $*"
  exit 77
}
die() {
  say "$*"
  exit 1
}

# The directory argument, absolute; created by start.
absdir() {
  [ -n "${1:-}" ] || die "missing DIR"
  (cd "$1" 2>/dev/null && pwd -P) || die "no such directory: $1"
}

# PID runs (a zombie keeps its /proc entry, but no namespaces to enter).
proc_alive() {
  local st
  st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' /proc/"$1"/status 2>/dev/null)
  [ -n "$st" ] && [ "$st" != Z ]
}

# The host PID of DIR's systemd, if it runs; else nothing (status 1).
init_pid() {
  local p
  p=$(cat "$1/init.pid" 2>/dev/null) || return 1
  [ -n "$p" ] && [ "$(cat /proc/"$p"/comm 2>/dev/null)" = systemd ] || return 1
  proc_alive "$p" || return 1
  echo "$p"
}

# nsenter into DIR's namespaces and root; CMD's exit status.
enter() {
  local dir=$1 pid
  shift
  pid=$(init_pid "$dir") || {
    say "no systemd running in $dir"
    return 125
  }
  nsenter --target "$pid" --mount --uts --ipc --net --pid --cgroup --root --wd -- \
    env -i PATH="$SYSD_PATH" TERM=dumb LANG=C.UTF-8 HOME=/root SYSTEMD_PAGER= "$@"
}

cgroup_remove() {
  local cg=$1 i
  [ -n "$cg" ] && [ -d "$cg" ] || return 0
  [ -e "$cg/cgroup.kill" ] && echo 1 >"$cg/cgroup.kill" 2>/dev/null
  for i in $(seq 50); do
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
    [ -d "$cg" ] || return 0
    sleep 0.1
  done
  say "could not remove cgroup $cg"
  return 1
}

# Kill the namespace of unshare UPID: its PID 1 first, so that unshare reaps it and ends
# by itself (no zombie left to the host's init), then unshare if it lingers.
ns_kill() {
  local upid=$1 i
  [ -n "$upid" ] && [ "$(cat /proc/"$upid"/comm 2>/dev/null)" = unshare ] || return 0
  for i in $(pgrep -P "$upid"); do kill -KILL "$i" 2>/dev/null; done
  for i in $(seq 40); do
    proc_alive "$upid" || return 0
    sleep 0.05
  done
  kill -KILL "$upid" 2>/dev/null
}

# ---- __watch DIR CGROUP OWNER: start unshare in CGROUP, kill it when OWNER ends --------
cmd_watch() {
  local dir=$1 cg=$2 owner=$3 upid
  (
    echo "$BASHPID" >"$cg/cgroup.procs" || exit 1
    exec unshare --pid --mount --net --uts --ipc --cgroup --fork --kill-child=SIGKILL \
      bash "$SELF" __boot "$dir"
  ) &
  upid=$!
  echo "$upid" >"$dir/unshare.pid"
  trap 'kill -KILL $upid 2>/dev/null' EXIT
  trap 'exit 0' TERM INT HUP
  while kill -0 "$owner" 2>/dev/null && kill -0 "$upid" 2>/dev/null; do
    sleep 1
  done
  ns_kill "$upid"
  cgroup_remove "$cg"
  # The owner is gone, so nobody will call stop: clean up as stop would.
  kill -0 "$owner" 2>/dev/null || files_remove "$dir"
}

# ---- __boot DIR: PID 1 of the new namespaces; build the root, then exec systemd ---------
cmd_boot() {
  local dir=$1 S R E n i=0 p
  set -e
  S=$dir/ns
  mount -t tmpfs -o mode=0700 sysd-state "$S"
  mkdir "$S/upper" "$S/work" "$S/root"
  R=$S/root
  mount -t overlay overlay -o "lowerdir=/,upperdir=$S/upper,workdir=$S/work" "$R" ||
    { echo "sysd-boot: cannot mount an overlay over /"; exit 1; }
  mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
  for p in sys sysrq-trigger; do
    [ -e "$R/proc/$p" ] || continue
    mount --bind "$R/proc/$p" "$R/proc/$p"
    mount -o remount,bind,ro "$R/proc/$p"
  done
  mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"
  mount -t tmpfs -o mode=0755,nosuid sysd-dev "$R/dev"
  for n in null zero full random urandom tty; do
    touch "$R/dev/$n"
    mount --bind "/dev/$n" "$R/dev/$n"
  done
  mkdir "$R/dev/pts" "$R/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
  ln -s pts/ptmx "$R/dev/ptmx"
  mount -t tmpfs -o mode=1777,nosuid,nodev sysd-shm "$R/dev/shm"
  touch "$R/dev/console"
  mount --bind "$dir/console.log" "$R/dev/console"
  ln -s /proc/self/fd "$R/dev/fd"
  ln -s /proc/self/fd/0 "$R/dev/stdin"
  ln -s /proc/self/fd/1 "$R/dev/stdout"
  ln -s /proc/self/fd/2 "$R/dev/stderr"
  mount -t tmpfs -o mode=0755,nosuid,nodev sysd-run "$R/run"
  mount -t tmpfs -o mode=1777,nosuid,nodev sysd-tmp "$R/tmp"
  while IFS= read -r p; do
    [ -n "$p" ] || continue
    i=$((i + 1))
    mkdir -p "$S/bind$i/upper" "$S/bind$i/work" "$R$p"
    mount -t overlay overlay -o "lowerdir=$p,upperdir=$S/bind$i/upper,workdir=$S/bind$i/work" "$R$p" ||
      { echo "sysd-boot: cannot show $p inside"; exit 1; }
  done <"$dir/binds"
  mkdir -p "$R$dir"
  mount --bind "$dir" "$R$dir"

  E=$R/etc/systemd/system
  mkdir -p "$E" "$R/etc/systemd/system-generators"
  for n in $MASKED_UNITS; do ln -sfn /dev/null "$E/$n"; done
  for n in $MASKED_GENERATORS; do ln -sfn /dev/null "$R/etc/systemd/system-generators/$n"; done
  cat >"$E/sysd-harness.target" <<'EOF'
[Unit]
Description=pinpool test harness (sysinit and sockets only)
Requires=sysinit.target sockets.target
After=sysinit.target sockets.target
AllowIsolate=yes
EOF
  cd "$R"
  mkdir -p .sysd-old
  pivot_root . .sysd-old
  cd /
  umount -l /.sysd-old
  rmdir /.sysd-old
  exec env -i container=pinpool-sysd PATH="$SYSD_PATH" LANG=C.UTF-8 \
    /lib/systemd/systemd --unit=sysd-harness.target --show-status=no
}

# ---- start ----------------------------------------------------------------------------
cmd_start() {
  local dir build=${2:-${SYSD_BUILD:-}} t cgmnt cur cg owner upid pid state src deadline
  [ -n "${1:-}" ] || die "usage: sysd.sh start DIR [BUILD]"
  [ "$(id -u)" = 0 ] || skip "booting systemd in namespaces needs root"
  for t in unshare nsenter setsid mount pivot_root pgrep findmnt; do
    command -v "$t" >/dev/null || skip "$t is not installed"
  done
  [ -x /lib/systemd/systemd ] || skip "systemd is not installed (/lib/systemd/systemd)"
  unshare --help 2>&1 | grep -q -- --kill-child || skip "unshare lacks --kill-child"
  mkdir -p "$1" || die "cannot create $1"
  dir=$(absdir "$1")
  if init_pid "$dir" >/dev/null; then die "$dir already has a running systemd"; fi
  case $dir in *[:,\ ]*) die "DIR must not contain ':', ',' or spaces: $dir" ;; esac

  # A cgroup of our own under the cgroup2 hierarchy: the namespace's cgroup root.
  cgmnt=$(findmnt -n -o TARGET -t cgroup2 | head -n1)
  [ -n "$cgmnt" ] || skip "no cgroup2 hierarchy is mounted"
  cur=$(sed -n 's/^0:://p' /proc/self/cgroup)
  cg=$cgmnt${cur%/}/pinpool-sysd-$$-$RANDOM
  mkdir "$cg" 2>/dev/null || skip "cannot create a cgroup under $cgmnt${cur%/}"

  # Host paths to show inside: the build, its source tree, SYSD_BIND.
  : >"$dir/binds"
  if [ -n "$build" ]; then
    build=$(absdir "$build")
    [ -f "$build/CMakeCache.txt" ] || die "$build is not a CMake build folder"
    src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
    echo "$build" >>"$dir/binds"
    [ -n "$src" ] && echo "$src" >>"$dir/binds"
  fi
  for t in ${SYSD_BIND:-}; do
    [ -e "$t" ] || die "SYSD_BIND: no such path: $t"
    (cd "$t" && pwd -P) >>"$dir/binds"
  done
  if grep -q '[:,]' "$dir/binds"; then die "a path to show inside contains ':' or ','"; fi

  mkdir -p "$dir/ns"
  : >"$dir/console.log"
  : >"$dir/boot.log"
  rm -f "$dir/init.pid" "$dir/unshare.pid"
  echo "$cg" >"$dir/cgroup"
  owner=${SYSD_OWNER_PID:-$PPID}
  setsid bash "$SELF" __watch "$dir" "$cg" "$owner" </dev/null >>"$dir/boot.log" 2>&1 &
  echo $! >"$dir/watch.pid"

  # PID 1 is unshare's only child.
  deadline=$((SECONDS + 10))
  while :; do
    upid=$(cat "$dir/unshare.pid" 2>/dev/null)
    if [ -n "$upid" ]; then
      pid=$(pgrep -P "$upid" | head -n1)
      [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = systemd ] && break
      kill -0 "$upid" 2>/dev/null || { boot_failed "$dir" "the namespace ended during setup"; }
    fi
    [ $SECONDS -lt $deadline ] || boot_failed "$dir" "systemd was not started within 10 s"
    sleep 0.05
  done
  echo "$pid" >"$dir/init.pid"

  # Bounded wait for the end of boot.
  deadline=$((SECONDS + ${SYSD_BOOT_TIMEOUT:-60}))
  while :; do
    state=$(enter "$dir" systemctl is-system-running 2>/dev/null)
    case $state in
    running | degraded) break ;;
    maintenance | stopping | offline) boot_failed "$dir" "systemd is $state" ;;
    esac
    init_pid "$dir" >/dev/null || boot_failed "$dir" "systemd died while booting"
    [ $SECONDS -lt $deadline ] ||
      boot_failed "$dir" "systemd did not reach running/degraded within ${SYSD_BOOT_TIMEOUT:-60} s (state: ${state:-unknown}; jobs: $(enter "$dir" systemctl list-jobs --no-legend 2>&1 | head -n5 | tr '\n' ';'))"
    sleep 0.1
  done
  echo "sysd: systemd $(enter "$dir" systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p') is $state as PID 1 in $dir (host PID $pid)"
  if [ "$state" = degraded ]; then
    say "failed units: $(enter "$dir" systemctl --failed --no-legend --plain | awk '{print $1}' | tr '\n' ' ')"
  fi
  if [ -n "$build" ]; then cmd_install "$dir" "$build" || exit 1; fi
  return 0
}

# Boot failed: tear down, say why (with the end of the logs), exit 77.
boot_failed() {
  local dir=$1
  shift
  echo "sysd: SKIP: systemd cannot boot here: $*"
  tail -n 15 "$dir/boot.log" "$dir/console.log" 2>/dev/null | sed 's/^/sysd:   /'
  SYSD_KEEP=1 cmd_stop "$dir" >/dev/null 2>&1
  exit 77
}

# ---- install --------------------------------------------------------------------------
cmd_install() {
  local dir build
  dir=$(absdir "${1:-}")
  build=$(absdir "${2:-}")
  init_pid "$dir" >/dev/null || die "no systemd running in $dir"
  enter "$dir" test -f "$build/cmake_install.cmake" ||
    die "$build is not visible inside (give it to start, or list it in SYSD_BIND)"
  enter "$dir" cmake --install "$build" >"$dir/install.log" 2>&1 ||
    { cat "$dir/install.log" >&2; die "cmake --install $build failed inside"; }
  grep -i sysusers "$dir/install.log" | grep -v '^-- Installing' | sed 's/^/sysd: install: /'
  enter "$dir" getent group pinpool >/dev/null || die "the install left no pinpool group"
  enter "$dir" systemctl daemon-reload || die "daemon-reload failed"
  if ! enter "$dir" systemctl cat pinpoold.socket >/dev/null 2>&1; then
    # A prefix outside systemd's unit path (e.g. /opt/pinpool): link the installed units.
    enter "$dir" sh -c 'grep -E "/pinpoold\.(service|socket)$" "$1/install_manifest.txt" |
      xargs systemctl link' sh "$build" >/dev/null || die "cannot link the installed units"
  fi
  if [ -n "${SYSD_PINPOOLD_OPTS+x}" ]; then
    enter "$dir" sh -c 'printf "PINPOOLD_OPTS=\"%s\"\n" "$1" >/etc/default/pinpoold' sh \
      "$SYSD_PINPOOLD_OPTS" || die "cannot write /etc/default/pinpoold"
  fi
  enter "$dir" systemctl enable --now pinpoold.socket >/dev/null 2>&1 ||
    { enter "$dir" systemctl status --no-pager pinpoold.socket >&2; die "pinpoold.socket did not start"; }
  echo "sysd: installed $build; pinpoold.socket is $(enter "$dir" systemctl is-active pinpoold.socket)"
}

# ---- stop -----------------------------------------------------------------------------
cmd_stop() {
  local dir upid wpid cg
  [ -n "${1:-}" ] || die "usage: sysd.sh stop DIR"
  [ -d "$1" ] || return 0
  dir=$(absdir "$1")
  upid=$(cat "$dir/unshare.pid" 2>/dev/null)
  wpid=$(cat "$dir/watch.pid" 2>/dev/null)
  cg=$(cat "$dir/cgroup" 2>/dev/null)
  # Only our own processes: unshare running __boot for this DIR (and its child, PID 1 of
  # the namespace), the watcher for this DIR.
  ns_kill "$upid"
  if [ -n "$wpid" ] && [ -r "/proc/$wpid/cmdline" ] &&
    tr '\0' ' ' <"/proc/$wpid/cmdline" | grep -q "__watch $dir "; then
    kill -TERM "$wpid" 2>/dev/null
  fi
  cgroup_remove "$cg"
  files_remove "$dir"
  return 0
}

# The harness's files in DIR, and DIR when that leaves it empty (not with SYSD_KEEP=1).
files_remove() {
  [ "${SYSD_KEEP:-0}" != 1 ] || return 0
  rm -f "$1"/{init.pid,unshare.pid,watch.pid,cgroup,binds,boot.log,console.log,install.log}
  rmdir "$1/ns" "$1" 2>/dev/null
  return 0
}

cmd_wait() {
  local dir=$1 secs=$2 deadline out
  shift 2
  deadline=$((SECONDS + secs))
  while :; do
    out=$(enter "$dir" "$@" 2>&1) && return 0
    [ $? -ne 125 ] || return 125
    if [ $SECONDS -ge $deadline ]; then
      say "timed out after $secs s waiting for: $*"
      printf '%s\n' "$out" | tail -n 5 | sed 's/^/sysd:   /' >&2
      return 1
    fi
    sleep 0.2
  done
}

case "${1:-}" in
start) shift; cmd_start "$@" ;;
install) shift; cmd_install "$@" ;;
run)
  [ $# -ge 3 ] || die "usage: sysd.sh run DIR CMD..."
  d=$(absdir "$2")
  shift 2
  enter "$d" "$@"
  ;;
wait)
  [ $# -ge 4 ] || die "usage: sysd.sh wait DIR SECS CMD..."
  d=$(absdir "$2")
  s=$3
  shift 3
  cmd_wait "$d" "$s" "$@"
  ;;
journal)
  [ $# -ge 2 ] || die "usage: sysd.sh journal DIR [ARGS]"
  d=$(absdir "$2")
  shift 2
  enter "$d" journalctl --no-pager "$@"
  ;;
pid) init_pid "$(absdir "${2:-}")" ;;
alive) init_pid "$(absdir "${2:-}")" >/dev/null ;;
stop) shift; cmd_stop "$@" ;;
__watch) shift; cmd_watch "$@" ;;
__boot) shift; cmd_boot "$@" ;;
*)
  sed -n '2,/^set -u/p' "$SELF" | sed -e '/^set -u/d' -e 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
