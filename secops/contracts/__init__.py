"""Typed records for what crosses a context or process boundary, each built from and dumped to its
document (or task payload) in one place: scan results, passive observations, alert references,
playbook runs and their steps."""

from secops.contracts.alert import AlertRef
from secops.contracts.observation import Observation, ObservationKind
from secops.contracts.playbook import (
    Approval,
    ApprovalStatus,
    PlaybookRun,
    RunStatus,
    StepOutcome,
    StepRecord,
    StepStatus,
)
from secops.contracts.scan import ScanResult, ScanSource

__all__ = ["AlertRef", "Approval", "ApprovalStatus", "Observation", "ObservationKind", "PlaybookRun", "RunStatus",
           "ScanResult", "ScanSource", "StepOutcome", "StepRecord", "StepStatus"]
