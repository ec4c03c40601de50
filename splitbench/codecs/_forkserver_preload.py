"""Preloaded by the codec sweep's forkserver, and only there: the forkserver dies with the sweep.

Linux sends SIGKILL to the forkserver when the sweep's process ends, however it ends (kill -9
included); each worker asks the same of the forkserver (``executors._start_worker``), so no
encoder outlives a sweep. Never import this module elsewhere: importing it is what arms it.
"""

from splitbench.orphans import announce_parent, die_with_parent, expected_parent

# The sweep announced itself before starting this forkserver: if it ended while this was
# still importing, die now (PDEATHSIG would never come). Workers then check against this process.
die_with_parent(expected_parent=expected_parent())
announce_parent()
