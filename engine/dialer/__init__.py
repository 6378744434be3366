"""The outbound dialer's core: campaigns, contacts, compliance (DNC, calling windows, abandon
accounting), retry rules, predictive pacing, persistence, CSV import and the what-if driver.

Decisions are pure functions over the dataclasses of `model`; the live layer (placing calls over
ESL, connecting answered calls through the ACD) calls them and stores what happened via `store`.
"""
