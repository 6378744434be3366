"""Active/standby engines: leader election and fencing through PostgreSQL (election.py)."""
from engine.ha.election import LeaderElection, Role

__all__ = ["LeaderElection", "Role"]
