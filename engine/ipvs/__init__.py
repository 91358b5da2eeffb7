"""The kernel's IP Virtual Server, driven over generic netlink (family "IPVS").

table.py (what a service and a destination are), messages.py (their netlink form), client.py (the
socket), listing.py (`ipvsadm -Ln` output), plan.py (config -> wanted table and which engine serves
each service), reconcile.py (wanted vs kernel -> operations), director.py (the engine's side:
programs the table, follows the checks and the runtime API, reads the counters back).
"""
