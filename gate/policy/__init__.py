"""Promotion policy, pure: YAML thresholds per stage transition → `evaluate` → an explained Decision.

    policy = load_policy_file(path)  # or default_policy()
    decision = evaluate(policy, EvaluationInput(...), now)

Rules judge the scans and findings (rules.py) and the image itself — its catalogued bases by layer
chain, its name and its config (image_rules.py, fed by gate.provenance). A multi-platform index is
judged platform by platform and passes only if every required platform passes (platforms.py). No I/O
beyond reading the policy text (loader) and no clock: `now` is always passed in.
"""

from gate.policy.engine import dedupe_findings, evaluate, merge_findings
from gate.policy.loader import PolicyError, default_policy, load_policy, load_policy_file
from gate.policy.model import (
    EvaluationInput,
    OnState,
    Policy,
    ScannerStatus,
    TransitionPolicy,
    format_duration,
    parse_duration,
)
from gate.policy.platforms import IndexInput, evaluate_index, required_platforms

__all__ = [
    "EvaluationInput",
    "IndexInput",
    "OnState",
    "Policy",
    "PolicyError",
    "ScannerStatus",
    "TransitionPolicy",
    "dedupe_findings",
    "default_policy",
    "evaluate",
    "evaluate_index",
    "format_duration",
    "load_policy",
    "load_policy_file",
    "merge_findings",
    "parse_duration",
    "required_platforms",
]
