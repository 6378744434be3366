"""The ACD: skills-based routing of waiting calls to agents, after mod_callcenter and app_queue.

model.py holds the plain data (agents, queues, tiers, members), routing.py the Router with its
incremental indexes, strategies.py and relaxation.py the pure rules it applies, explain.py the
"why this agent" report, estimator.py the estimated wait time, erlang.py the staffing formulas,
config.py the YAML loader and whatif.py the in-process driver over the simulator.
"""
