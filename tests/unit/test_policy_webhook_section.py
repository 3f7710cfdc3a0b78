"""The policy file's `webhook:` section: loading, errors that name the path, digest, and precedence.

The environment (GATE_WEBHOOK_STAGES / GATE_WEBHOOK_UNKNOWN_NAMESPACE) wins over the file key by key;
see docs/webhook.md. The HTTPS side is in tests/integration/test_webhook_policy_stages.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from concurrent import futures
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import grpc
import pytest

from gate.clock import ManualClock
from gate.config import Settings
from gate.domain import Stage
from gate.errors import InvalidArgument
from gate.policy import Policy, PolicyError, default_policy, load_policy
from gate.policy.model import WebhookPolicy
from gate.policy_tools import DecisionHistory, PolicyTools
from gate.server import policy_servicer
from gate.service import GateService
from gate.webhook.stages import StageMap, UnknownNamespace, combine, parse_stage_map
from gate.webhook.wiring import stages_for
from tests.unit.test_cli import run_cli
from tests.unit.test_policy_loader import BASE

# BASE has 21 lines, so the section starts on line 22.
SECTION = """\
webhook:
  namespaces:
    prod: p
    staging: S2
    payments-dev: d
  unknown_namespace: deny
"""


def _with(section: str) -> str:
    return BASE + section


def test_section_loads_namespaces_and_rule() -> None:
    policy = load_policy(_with(SECTION))
    assert policy.webhook is not None
    assert dict(policy.webhook.namespaces) == {"prod": Stage.P, "staging": Stage.S2, "payments-dev": Stage.D}
    assert policy.webhook.unknown_namespace == "deny"
    # The transitions are untouched by the section.
    assert policy.transition(Stage.S2, Stage.P) == load_policy(BASE).transition(Stage.S2, Stage.P)


def test_both_keys_are_optional_and_a_stage_may_judge_unlisted_namespaces() -> None:
    only_rule = load_policy(_with("webhook:\n  unknown_namespace: s1\n")).webhook
    assert only_rule == WebhookPolicy({}, "s1")
    only_names = load_policy(_with("webhook:\n  namespaces: {prod: p}\n")).webhook
    assert only_names == WebhookPolicy({"prod": Stage.P}, None)


def test_no_section_or_an_empty_one_is_none_and_keeps_the_digest() -> None:
    without = load_policy(BASE)
    assert without.webhook is None
    assert "webhook" not in without.canonical()
    for empty in ("webhook: {}\n", "webhook:\n  namespaces: {}\n"):
        same = load_policy(_with(empty))
        assert same.webhook is None
        assert same.digest == without.digest
    assert default_policy().webhook is None


def test_section_is_part_of_the_digest_and_normalized() -> None:
    with_section = load_policy(_with(SECTION))
    assert with_section.digest != load_policy(BASE).digest
    # Key order and stage spelling do not matter; a different stage does.
    reordered = SECTION.replace("    prod: p\n    staging: S2\n", "    staging: s2\n    prod: P\n")
    assert load_policy(_with(reordered)).digest == with_section.digest
    moved = SECTION.replace("staging: S2", "staging: s1")
    assert load_policy(_with(moved)).digest != with_section.digest
    canonical = with_section.canonical()["webhook"]
    assert canonical == {
        "namespaces": {"payments-dev": "d", "prod": "p", "staging": "s2"},
        "unknown_namespace": "deny",
    }
    json.dumps(canonical)  # JSON-ready: ShowPolicy sends it as normalized JSON


@pytest.mark.parametrize(
    ("section", "line", "path", "words"),
    [
        (SECTION.replace("prod: p", "prod: x"), 24, "webhook.namespaces.prod", "unknown stage 'x'"),
        (SECTION.replace("prod: p", "prod: 1"), 24, "webhook.namespaces.prod", "expected a stage name"),
        (SECTION.replace("prod: p", "prod: [p]"), 24, "webhook.namespaces.prod", "got a list"),
        (
            SECTION.replace("prod: p", "Prod_1: p"),
            24,
            "webhook.namespaces.Prod_1",
            "not a Kubernetes namespace",
        ),
        (SECTION.replace("prod: p", "staging: p"), 25, "webhook.namespaces.staging", "duplicate key"),
        (
            SECTION.replace("unknown_namespace: deny", "unknown_namespace: maybe"),
            27,
            "webhook.unknown_namespace",
            "bad value 'maybe' (expected allow, deny or a stage",
        ),
        (
            SECTION.replace("  namespaces:", "  namespace:"),
            23,
            "webhook.namespace",
            "unknown key (expected one of namespaces, unknown_namespace); did you mean 'namespaces'?",
        ),
        (
            "webhook:\n  namespaces: [prod, staging]\n",
            23,
            "webhook.namespaces",
            "expected a mapping, got a list",
        ),
        ("webhook:\n", 22, "webhook", "expected a mapping, got nothing (null)"),
        ("webhooks: {}\n", 22, "webhooks", "did you mean 'webhook'?"),
    ],
)
def test_errors_name_line_and_path(section: str, line: int, path: str, words: str) -> None:
    with pytest.raises(PolicyError) as e:
        load_policy(_with(section), source="policy.yaml")
    assert e.value.problems == (e.value,), str(e.value)  # one mistake, one problem
    assert (e.value.line, e.value.path) == (line, path), str(e.value)
    assert words in e.value.problem, str(e.value)
    assert str(e.value).startswith(f"policy.yaml:{line}: {path}: ")


def test_hand_built_sections_are_checked_too() -> None:
    with pytest.raises(InvalidArgument) as e:
        WebhookPolicy({"Not_A_Namespace": Stage.P})
    assert e.value.field == "webhook.namespaces"
    with pytest.raises(InvalidArgument) as e:
        WebhookPolicy({}, "sometimes")
    assert e.value.field == "webhook.unknown_namespace"


# -- precedence: environment over file, key by key -----------------------------------------------------

FILE = WebhookPolicy({"prod": Stage.P, "staging": Stage.S2}, "deny")


def test_file_alone_decides_when_the_environment_is_silent() -> None:
    env = parse_stage_map("", "")  # both variables unset
    assert env == StageMap() and not env.namespaces_given and not env.unknown_given
    stages, sources = combine(env, FILE)
    assert stages.stage_of("prod") is Stage.P and stages.stage_of("staging") is Stage.S2
    assert stages.stage_of("elsewhere") is None and stages.unknown is UnknownNamespace.DENY
    assert (sources.namespaces, sources.unknown, sources.overridden) == ("policy file", "policy file", ())


def test_file_may_judge_unlisted_namespaces_as_a_stage() -> None:
    stages, _ = combine(parse_stage_map("", ""), WebhookPolicy({}, "t"))
    assert stages.stage_of("anything") is Stage.T


def test_gate_webhook_stages_replaces_the_file_namespaces_whole() -> None:
    stages, sources = combine(parse_stage_map("dev=d,prod=s2"), FILE)
    assert stages.stage_of("prod") is Stage.S2  # the environment's stage, not the file's p
    assert stages.stage_of("dev") is Stage.D
    assert stages.stage_of("staging") is None  # listed only in the file: not merged in
    # The unlisted-namespace rule was not set in the environment, so the file's still applies.
    assert stages.unknown is UnknownNamespace.DENY
    assert sources.namespaces == "GATE_WEBHOOK_STAGES" and sources.unknown == "policy file"
    assert sources.overridden == ("webhook.namespaces (by GATE_WEBHOOK_STAGES)",)


def test_gate_webhook_unknown_namespace_replaces_only_the_rule() -> None:
    stages, sources = combine(parse_stage_map("", "allow"), FILE)
    assert stages.stage_of("staging") is Stage.S2  # the file's namespaces still apply
    assert stages.unknown is UnknownNamespace.ALLOW and stages.default_stage is None
    as_stage, _ = combine(parse_stage_map("", "d"), FILE)
    assert as_stage.stage_of("elsewhere") is Stage.D
    assert sources.overridden == ("webhook.unknown_namespace (by GATE_WEBHOOK_UNKNOWN_NAMESPACE)",)


def test_no_file_section_is_the_environment_as_before() -> None:
    env = parse_stage_map("prod=p", "deny")
    stages, sources = combine(env, None)
    assert stages == env
    assert (sources.namespaces, sources.unknown, sources.overridden) == (
        "GATE_WEBHOOK_STAGES",
        "GATE_WEBHOOK_UNKNOWN_NAMESPACE",
        (),
    )
    nothing, nowhere = combine(StageMap(), None)
    assert nothing == StageMap() and (nowhere.namespaces, nowhere.unknown) == ("none", "default")


def test_settings_to_effective_map_logs_sources_and_warns_on_override(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = load_policy(_with(SECTION), source="policy.yaml")
    settings = Settings.from_env({"GATE_WEBHOOK_STAGES": "prod=d"})
    with caplog.at_level(logging.INFO, logger="gate.webhook.wiring"):
        stages = stages_for(settings, policy)
    assert stages.stage_of("prod") is Stage.D and stages.stage_of("staging") is None
    assert "namespace stages from GATE_WEBHOOK_STAGES" in caplog.text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "webhook.namespaces" in warnings[0].getMessage()
    assert "policy.yaml" in warnings[0].getMessage()
    # The environment silent: the file's map, no warning.
    caplog.clear()
    quiet = stages_for(Settings.from_env({}), policy)
    assert quiet.stage_of("staging") is Stage.S2
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


# -- gate policy show -----------------------------------------------------------------------------------


@pytest.fixture
def policy_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Policy], None]]:
    """`serve(policy)`: a real gRPC server on loopback answering gate.v1.Policies with that policy."""
    servers: list[grpc.Server] = []
    for name in ("GATE_TOKEN", "GATE_TLS_CA"):
        monkeypatch.delenv(name, raising=False)

    def serve(policy: Policy) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        # ShowPolicy reads only the active policy: the service and history are never touched.
        tools = PolicyTools(
            cast(GateService, None),
            cast(DecisionHistory, None),
            policy,
            ManualClock(datetime(2025, 6, 1, tzinfo=UTC)),
        )
        policy_servicer.register_policies(server, tools)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        monkeypatch.setenv("GATE_SERVER", f"127.0.0.1:{port}")

    try:
        yield serve
    finally:
        for server in servers:
            server.stop(grace=None)


def test_policy_show_lists_the_webhook_section(
    policy_server: Callable[[Policy], None], capsys: pytest.CaptureFixture[str]
) -> None:
    policy_server(load_policy(_with(SECTION), source="policy.yaml"))
    r = run_cli(capsys, "policy", "show")
    assert r.code == 0, r.err
    block = r.out[r.out.index("Admission webhook stages") :].splitlines()
    assert block[1].split() == ["NAMESPACE", "STAGE"]
    assert [line.split() for line in block[2:5]] == [["payments-dev", "d"], ["prod", "p"], ["staging", "s2"]]
    assert "unlisted namespaces: deny" in r.out and "GATE_WEBHOOK_STAGES" in r.out
    yaml_out = run_cli(capsys, "policy", "show", "--yaml").out
    assert "webhook:" in yaml_out and "staging: s2" in yaml_out
    as_json = json.loads(run_cli(capsys, "policy", "show", "--json").out)
    assert json.loads(as_json["normalized_json"])["webhook"]["namespaces"]["prod"] == "p"


def test_policy_show_without_a_section_has_no_webhook_block(
    policy_server: Callable[[Policy], None], capsys: pytest.CaptureFixture[str]
) -> None:
    policy_server(load_policy(BASE))
    r = run_cli(capsys, "policy", "show")
    assert r.code == 0 and "SETTING" in r.out
    assert "Admission webhook" not in r.out


# -- several problems: gate policy validate / replay over a real server -------------------------------

# A bad severity, an unknown key with its "did you mean", a bad duration and a bad webhook stage.
BROKEN = (
    _with(SECTION.replace("prod: p", "prod: x"))
    .replace("max_unfixable_severity: CRITICAL", "max_unfixable_severity: SEVERE", 1)
    .replace("max_scan_age: 14d", "max_scan_age: 2 weeks")
    .replace("    on_state:\n", "    on_states:\n")
)
BROKEN_AT = [
    (5, "transitions.d->t.max_unfixable_severity", "unknown severity 'SEVERE'"),
    (15, "transitions.s1->s2.max_scan_age", "bad duration '2 weeks'"),
    (20, "transitions.s2->p.on_states", "did you mean 'on_state'?"),
    (24, "webhook.namespaces.prod", "unknown stage 'x' (expected one of d, t, s1, s2, p)"),
]


def test_policy_validate_prints_every_problem(
    policy_server: Callable[[Policy], None], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy_server(load_policy(BASE))
    path = tmp_path / "policy.yaml"
    path.write_text(BROKEN)
    r = run_cli(capsys, "policy", "validate", str(path))
    assert r.code == 2, r.out + r.err
    out = r.out.splitlines()
    assert out[0] == f"{path}: 4 problems:"
    assert len(out) == 5
    for got, (line, field, words) in zip(out[1:], BROKEN_AT, strict=True):
        assert got.startswith(f"{path}:{line}: {field}: ") and words in got, got
    as_json = json.loads(run_cli(capsys, "policy", "validate", str(path), "--json").out)
    assert [(e["line"], e["field"]) for e in as_json["errors"]] == [(ln, f) for ln, f, _ in BROKEN_AT]

    # One mistake: the same single line as before, no heading.
    path.write_text(BASE.replace("max_scan_age: 14d", "max_scan_age: 2 weeks"))
    one = run_cli(capsys, "policy", "validate", str(path))
    assert one.code == 2
    assert one.out == (
        f"{path}:15: transitions.s1->s2.max_scan_age: bad duration '2 weeks' "
        "(expected a number and unit, e.g. 7d, 12h, 1d12h, 90m)\n"
    )


def test_policy_replay_of_a_broken_candidate_names_every_problem(
    policy_server: Callable[[Policy], None], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy_server(load_policy(BASE))
    path = tmp_path / "candidate.yaml"
    path.write_text(BROKEN)
    r = run_cli(capsys, "policy", "replay", str(path))
    assert r.code == 2, r.out + r.err  # INVALID_ARGUMENT, as with one problem
    assert "INVALID_ARGUMENT" in r.err and f"{path}: 4 problems:" in r.err
    for line, field, words in BROKEN_AT:
        assert f"{path}:{line}: {field}: " in r.err and words in r.err
