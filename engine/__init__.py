"""callrouter: a call-routing engine for FreeSWITCH.

One package per capability; see README.md ("Architecture") for the data flow:
esl (the wire), calls (one Call per channel), simulator (FreeSWITCH's stand-in),
db (PostgreSQL bootstrap and migrations), api (admin HTTP), cli (the `callrouter` command);
`engine.app` is the composition root that wires them.
"""
