"""The channel variables the engine keeps on FreeSWITCH channels: the contract between the
dialplan in freeswitch/ (which sets callrouter_entry before park), the call model (which keeps
the rest up to date), the CDR mapping, and a restarted or standby engine (which adopts calls in
progress from them). No imports: every package may depend on this one.
"""

VAR_ENTRY = "callrouter_entry"  # set by the FreeSWITCH dialplan: which entry point handles the call
VAR_STAGE = "callrouter_stage"  # ivr | queue | talking | wrapup
VAR_JOINED = "callrouter_joined"  # epoch seconds the caller first reached the engine (queue order)
VAR_LEG = "callrouter_leg"  # caller | agent | outbound
VAR_PARENT = "callrouter_parent"  # on an engine-originated leg: the Unique-ID of the caller's leg
VAR_AGENT = "callrouter_agent"
VAR_FLOW = "callrouter_flow"
VAR_NODE = "callrouter_ivr_node"
VAR_QUEUE = "callrouter_queue"
VAR_QUEUE_JOINED = "callrouter_queue_joined"  # epoch seconds the caller joined its current queue (its place)
VAR_CAMPAIGN = "callrouter_campaign"  # on a dialer's call: its campaign and contact id, so a restarted
VAR_CONTACT = "callrouter_contact"  # engine adopts the call instead of dialling the contact again
# Call data: what the caller keyed in, lookups found, the dialplan set or a campaign's contact holds,
# on the caller's channel and every agent leg rung for it (callrouter_data_<name>).
DATA_PREFIX = "callrouter_data_"
# Set on an agent's ring: through the inter-node gateway sofia sends it as the SIP header
# X-Callrouter-Parent, and the far node's legs carry it back as this variable, naming their call.
VAR_PARENT_HEADER = "sip_h_X-Callrouter-Parent"
ENGINE_VARS = (VAR_ENTRY, VAR_STAGE, VAR_JOINED, VAR_LEG, VAR_PARENT, VAR_AGENT, VAR_FLOW, VAR_NODE, VAR_QUEUE,
               VAR_QUEUE_JOINED, VAR_CAMPAIGN, VAR_CONTACT)

