# memory-lib.sh: hold the machine's PostgreSQL server to a fixed amount of
# memory, page cache included, for the length of a measuring run, as a
# database container with a memory limit is held. Source it, then:
# bound_memory LIMIT ADMIN_URL (LIMIT in bytes or with a K, M or G suffix)
# moves the server's postmaster and every process it has started into a new
# memory cgroup, where the backends it starts later are born; unbound_memory
# (run it from an EXIT trap) moves them all back and removes the cgroup.
# Call bound_memory in the script's own shell, not in a pipeline: it keeps
# what it moved in shell variables.
#
# Why: on the project's machines, memory the guest has not touched lately
# costs about three times as much to fill as memory it keeps reusing
# (docs/performance.md, "Seventh pass"). A server whose page cache grows
# without bound pays that more and more the longer a run lasts, which says
# nothing of the log. (Held to 5 GiB there, the runs did not get flatter:
# reclaim and a full verify's reads cost as much; see that section.) Needs root, cgroup v1's memory controller or cgroup v2
# with memory enabled, and the server's superuser in ADMIN_URL (to find its
# data directory).

MEMORY_CGROUP=
MEMORY_HOME= # the server's own memory cgroup, where unbound_memory puts it back

# memory_cgroup_root prints the hierarchy that holds the memory controller.
memory_cgroup_root() {
  if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
    echo /sys/fs/cgroup
  elif [ -d /sys/fs/cgroup/memory ]; then
    echo /sys/fs/cgroup/memory
  else
    echo "memory-lib: no memory cgroup controller on this machine" >&2
    return 1
  fi
}

# memory_cgroup_of PID prints the memory cgroup PID is in, relative to the
# controller's root.
memory_cgroup_of() {
  local line
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    line=$(grep '^0::' "/proc/$1/cgroup")
  else
    line=$(grep -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' "/proc/$1/cgroup")
  fi
  echo "${line##*:}"
}

bound_memory() {
  local limit=$1 admin_url=$2 root datadir postmaster pid moved=0
  root=$(memory_cgroup_root) || return 1
  datadir=$(psql -X -Atq "$admin_url" -c 'SHOW data_directory') || return 1
  postmaster=$(head -1 "$datadir/postmaster.pid") || return 1
  MEMORY_CGROUP=$root/mediator-scale-$$
  if [ "$root" = /sys/fs/cgroup ] && ! grep -qw memory "$root/cgroup.subtree_control"; then
    echo +memory >"$root/cgroup.subtree_control"
  fi
  mkdir "$MEMORY_CGROUP"
  if [ "$root" = /sys/fs/cgroup ]; then
    echo "$limit" >"$MEMORY_CGROUP/memory.max"
  else
    echo "$limit" >"$MEMORY_CGROUP/memory.limit_in_bytes"
  fi
  MEMORY_HOME=$(memory_cgroup_of "$postmaster")
  for pid in "$postmaster" $(pgrep -P "$postmaster"); do
    echo "$pid" >"$MEMORY_CGROUP/cgroup.procs"
    moved=$((moved + 1))
  done
  echo "memory: PostgreSQL held to $limit (postmaster $postmaster and the $((moved - 1)) processes it had started)"
}

unbound_memory() {
  [ -n "$MEMORY_CGROUP" ] || return 0
  local pid
  # Every process in the group is the server's: the ones moved, and the
  # backends it started since.
  for pid in $(cat "$MEMORY_CGROUP/cgroup.procs"); do
    echo "$pid" >"$(dirname "$MEMORY_CGROUP")$MEMORY_HOME/cgroup.procs" 2>/dev/null || true
  done
  rmdir "$MEMORY_CGROUP" 2>/dev/null || echo "memory-lib: could not remove $MEMORY_CGROUP" >&2
  MEMORY_CGROUP=
}

# memory_peak prints the most memory the bounded group has held, in bytes.
memory_peak() {
  if [ -f "$MEMORY_CGROUP/memory.peak" ]; then
    cat "$MEMORY_CGROUP/memory.peak"
  else
    cat "$MEMORY_CGROUP/memory.max_usage_in_bytes"
  fi
}
