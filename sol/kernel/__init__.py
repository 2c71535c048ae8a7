"""The kernel's interface files, read and written as text: the layer under both the write
pipeline (``sol.actuators``) and the Linux backend's facilities (``sol.linux``).

``procfs`` parses ``/proc`` and ``/sys`` texts (PSI, schedstat, cpulists, meminfo, numa_maps),
``cgroupfs`` finds the cgroup hierarchy (v1 or v2) under an injected root, ``errors`` turns
every kernel-interface problem into an exception that names the file. Imports go one way:
``sol.kernel`` <- ``sol.actuators`` <- ``sol.linux``; nothing here imports either of them.
"""
