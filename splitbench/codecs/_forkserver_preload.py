"""Preloaded by the codec sweep's forkserver, and only there: the forkserver dies with the sweep.

Linux sends SIGKILL to the forkserver when the sweep's process ends, however it ends (kill -9
included); each worker asks the same of the forkserver (``pipeline._start_worker``), so no
encoder outlives a sweep. Never import this module elsewhere: importing it is what arms it.
"""

from splitbench.codecs.orphans import die_with_parent

die_with_parent()
