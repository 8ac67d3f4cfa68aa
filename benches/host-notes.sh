# Sourced by the recording benches: says what about this machine changes their figures, so a
# result is read against the machine it came from.
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
