"""CPU and memory of a server's process tree, read from /proc.

CPU: utime+stime+cutime+cstime of every live process under (and including) the
root. A child that exits between two samples moves its time into its parent's
cutime/cstime when reaped, so the sum stays consistent across Postfix's smtpd and
cleanup processes coming and going.
"""
import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    with open("/proc/%s/stat" % pid, "rb") as f:
        data = f.read()
    # comm may hold spaces and parentheses: split after the last ')'
    rest = data[data.rindex(b")") + 2:].split()
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return ppid, utime + stime + cutime + cstime


def tree_pids(root):
    parent = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            parent[int(name)] = _stat(name)[0]
        except (OSError, ValueError, IndexError):
            continue
    children = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def tree_cpu_seconds(root):
    ticks = 0
    for pid in tree_pids(root):
        try:
            ticks += _stat(pid)[1]
        except (OSError, ValueError, IndexError):
            continue
    return ticks / CLK_TCK


def pss_kib(pid):
    """Proportional set size of one process, KiB (smaps_rollup)."""
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError("no Pss in /proc/%d/smaps_rollup" % pid)


def tree_pss_kib(root):
    total = 0
    for pid in tree_pids(root):
        try:
            total += pss_kib(pid)
        except (OSError, RuntimeError):
            continue
    return total
