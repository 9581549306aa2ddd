#!/bin/bash
# Run a command held to a share of this machine's CPUs by a cgroup quota: a slower machine,
# emulated. Needs root and a cgroup file system (v1 or v2). The command's tables name the
# quota (benchmarks/throughput.py, `held_back`).
#
#   bash benchmarks/held.sh CPUS COMMAND...
#   ONEDNN_MAX_CPU_ISA=AVX2 bash benchmarks/held.sh 1.0 python benchmarks/preset.py quick --seeds 30
#
# Each call makes a cgroup of its own (digits-held-PID), so two commands side by side are
# each held to CPUS.
set -euo pipefail
if [[ $# -lt 2 || ! $1 =~ ^[0-9]*\.?[0-9]+$ ]]; then
  echo "usage: held.sh CPUS COMMAND... (CPUS: how many CPUs the command may use, e.g. 1.0)" >&2
  exit 2
fi
cpus=$1
shift
period=50000 # microseconds: a short period keeps the command's speed even
quota=$(awk -v c="$cpus" -v p="$period" 'BEGIN { printf "%d", c * p }')
name="digits-held-$$"
if [[ -d /sys/fs/cgroup/cpu && -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]]; then # v1
  root=/sys/fs/cgroup/cpu
  group=$root/$name
  mkdir "$group"
  echo "$period" >"$group/cpu.cfs_period_us"
  echo "$quota" >"$group/cpu.cfs_quota_us"
elif [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then # v2
  root=/sys/fs/cgroup
  echo +cpu >"$root/cgroup.subtree_control" 2>/dev/null || true
  group=$root/$name
  mkdir "$group"
  echo "$quota $period" >"$group/cpu.max"
else
  echo "held.sh: no cgroup file system with a CPU controller at /sys/fs/cgroup" >&2
  exit 1
fi
# Out of the group and the group removed, however the command ends.
trap 'echo $$ >"$root/cgroup.procs"; rmdir "$group"' EXIT
echo $$ >"$group/cgroup.procs"
"$@"
