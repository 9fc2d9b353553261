"""The detection pack: built-in + configured Sigma rules, network analytics and IOC matching, compiled once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from detections.analytics import analytic_rules
from detections.compiler import CompiledRule, compile_rules
from detections.fingerprints import load_fingerprints
from detections.ioc import IocSet, load_iocs, make_ioc_rule
from detections.loader import RuleSet, default_rule_dirs, load_rules
from secops.config import Settings

log = logging.getLogger(__name__)


@dataclass
class Pack:
    ruleset: RuleSet
    rules: list[CompiledRule]
    iocs: IocSet

    @property
    def runnable(self) -> list[CompiledRule]:
        return [r for r in self.rules if r.runnable]

    def errors(self) -> list[tuple[str, str]]:
        out = [(str(f.path), f.error or "") for f in self.ruleset.errors]
        out += [(r.source or r.id, r.error or "") for r in self.rules if r.error]
        return out


def build_pack(settings: Settings, rule_dirs: list[Path] | None = None, with_analytics: bool = True) -> Pack:
    dirs = rule_dirs if rule_dirs is not None else default_rule_dirs(settings.detections.rules_dirs)
    ruleset = load_rules(dirs)
    rules = compile_rules(ruleset)
    iocs = load_iocs(list(settings.detections.ioc_dirs))
    if with_analytics:
        fingerprints = load_fingerprints(settings.detections.fingerprint_files)
        for problem in fingerprints.errors:
            log.warning("fingerprint list: %s", problem)
        rules += analytic_rules(settings.detections.infrastructure, fingerprints)
        rules.append(make_ioc_rule(iocs))
    return Pack(ruleset, rules, iocs)
