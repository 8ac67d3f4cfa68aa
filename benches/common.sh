# Sourced by the benches (recording, browser calls).
#
# host_notes: says what about this machine changes their figures, so a result is read against
# the machine it came from.
#
# Free page reporting (virtio-balloon's REPORTING feature, on in Firecracker, cloud-hypervisor
# and QEMU's free-page-reporting=on) gives the pages the guest frees back to the host. The next
# page-cache page a recording writer fills there is faulted in again by the host: on the
# 2-core Xeon VM of README "What recording costs" that put the kernel's page-cache copy at
# over half of the writers' time, and turning reporting off cut the writers' CPU by about 30 %.
host_notes() {
  local cpu
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  echo "host: $(nproc) cores, ${cpu:-unknown CPU}, kernel $(uname -r)"
  local d features
  for d in /sys/bus/virtio/devices/*; do
    [ "$(cat "$d/device" 2>/dev/null)" = 0x0005 ] || continue
    features=$(cat "$d/features" 2>/dev/null)
    # Feature bits are listed lowest first; bit 5 is VIRTIO_BALLOON_F_REPORTING.
    if [ "${features:5:1}" = 1 ]; then
      local order
      order=$(cat /sys/module/page_reporting/parameters/page_reporting_order 2>/dev/null || echo "?")
      echo "host: free page reporting is on (page_reporting_order $order): page-cache writes land on"
      echo "      pages the hypervisor must fault in again, which raises the writers' CPU (README)"
    fi
  done
}

# thread_times PID: run time so far of a process's media clocks and recording writers (ns, per
# thread from the scheduler), and of the rest of it (ns, the process's clock ticks less those
# two: threads that have exited, such as idle blocking-pool threads, count there but are no
# longer listed). A process that has died reads as zeros rather than ending the bench.
thread_times() {
  local all
  all=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.0f", ($14 + $15) / hz * 1e9}' "/proc/$1/stat" 2>/dev/null) || all=0
  for t in /proc/"$1"/task/*; do echo "$(cat "$t/comm") $(cut -d' ' -f1 "$t/schedstat")"; done 2>/dev/null |
    awk -v all="$all" '$1 ~ /^media/ {m += $2} $1 ~ /^rec-writer/ {w += $2}
         END {printf "%.0f %.0f %.0f\n", m, w, all - m - w}'
}

# split_since_start PID: thread_times as "media 1.23 s, writers 0.45 s, other 0.67 s".
split_since_start() {
  thread_times "$1" | awk '{printf "media %.2f s, writers %.2f s, other %.2f s", $1 / 1e9, $2 / 1e9, $3 / 1e9}'
}

# ticks PID: a process's CPU time so far, in clock ticks (user + system, from /proc);
# rss PID: its resident memory now, in KiB. The browser-call benches read the server with them.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
