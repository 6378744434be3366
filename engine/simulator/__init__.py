"""FreeSWITCH's stand-in: an Event Socket server faithful to FreeSWITCH 1.10 on the wire
(`../shared/reference/`), channels and applications, and a population of simulated callers,
agents and trunks driven by a scenario YAML, on a real or a virtual clock, with a record of
the ground truth of every call. Nothing in the engine may import from here: the engine only
talks to it over TCP, as it would to FreeSWITCH.
"""
