"""Throwaway test clusters in containers (Slurm, HTCondor, plain sshd) for kong.

Not part of the installed kong package: used by the tests (``tests/clusters.py``)
and by people through ``deploy/testcluster.py``.
"""
