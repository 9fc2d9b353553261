"""The SOC console: an ASGI web application (FastAPI + server-rendered Jinja2) for triage, approvals, PCAP and
assets. A composition root: it may import every context (detections, inventory, playbooks, collectors)."""
