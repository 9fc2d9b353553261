"""Typed records for what crosses a context or process boundary, each built from and dumped to its
document (or task payload) in one place, one module per contract:

- ``scan``: ScanResult (nmap run or XML import -> inventory merge, also the Celery payload)
- ``observation``: Observation (passive sightings from the sensors -> inventory merge)
- ``alert``: AlertRef (an alert as the playbooks read it, sent by id as ``playbooks.on_alert``)
- ``playbook``: PlaybookRun, StepRecord, Approval and the status/outcome enums (the run document)
"""
