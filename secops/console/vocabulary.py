"""Words the console shows from stored values (roles, statuses, severities): marked here so that the message
extractor finds them; templates translate the stored value with ``_(value)``."""

from __future__ import annotations


def N_(message: str) -> str:  # gettext's conventional name for a no-op marker
    return message


ROLES = (N_("viewer"), N_("analyst"), N_("responder"), N_("admin"), N_("auditor"))
ALERT_STATUSES = (N_("open"), N_("acknowledged"), N_("closed"))
SEVERITIES = (N_("informational"), N_("low"), N_("medium"), N_("high"), N_("critical"))
RUN_STATUSES = (N_("running"), N_("waiting_approval"), N_("completed"), N_("failed"), N_("refused"), N_("denied"),
                N_("expired"), N_("halted"), N_("planned"), N_("pending"), N_("done"), N_("skipped"), N_("not_run"),
                N_("approved"), N_("waiting"), N_("retrying"))
CASE_STATUSES = (N_("open"), N_("in_progress"), N_("closed"))
ALERT_HISTORY = (N_("created"), N_("updated"), N_("reopened"), N_("assigned"), N_("noted"),
                 N_("suppressed"))
AUDIT_OUTCOMES = (N_("success"), N_("failure"), N_("unknown"), N_("partial"), N_("not_found"))
FLASH = (N_("acknowledge"), N_("assign"), N_("close"), N_("reopen"), N_("note"), N_("approve"), N_("deny"),
         N_("kill switch on"), N_("kill switch off"))  # what the flash after a form reports as done
PLAYBOOK_ACTIONS = (N_("enrich"), N_("contain"), N_("notify"), N_("pcap"), N_("rescan"), N_("tag"), N_("ticket"))
