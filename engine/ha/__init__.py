"""Beyond one machine: leader election and fencing through PostgreSQL (election.py), and the CDRs
of the legs a node runs for a caller on another node (relay.py)."""
from engine.ha.election import LeaderElection, Role
from engine.ha.relay import RelayLegs

__all__ = ["LeaderElection", "RelayLegs", "Role"]
