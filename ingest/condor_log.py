"""Compatibility name of :mod:`ingest.condor` (the HTCondor log reader was split into that package).

Everything public is re-exported, so ``from ingest.condor_log import LogFollower`` keeps working.
"""

from ingest.condor import *  # noqa: F401,F403
from ingest.condor import __all__  # noqa: F401
