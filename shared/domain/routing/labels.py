"""Label requirements and preferences of a task against an agent's labels. Pure.

A task's ``labels`` (``{"gpu": "h100"}``) are required equalities; its ``label_rules`` add
comparators (``eq``, ``ne``, ``in``, ``gt``/``lt``/``gte``/``lte`` on numbers, ``exists``), each
required (the agent is no candidate without it) or preferred (the agent ranks higher by the rule's
``weight``). An agent's labels are its registered ``labels``, over its ``metadata``.
"""

from __future__ import annotations

from shared.domain.fleet import AgentView, TaskView
from shared.events import LabelRule

NUMERIC_OPS = frozenset({"gt", "lt", "gte", "lte"})


def label_rule_problem(rule: LabelRule) -> str | None:
    """What is wrong with a rule (its value does not suit its comparator), or None."""
    if rule.op == "exists":
        return None if rule.value is None else "op 'exists' takes no value"
    if rule.value is None:
        return f"op {rule.op!r} needs a value"
    if rule.op == "in":
        return None if isinstance(rule.value, list) else "op 'in' needs a list of values"
    if isinstance(rule.value, list):
        return f"op {rule.op!r} takes one value, not a list"
    if rule.op in NUMERIC_OPS and _number(rule.value) is None:
        return f"op {rule.op!r} compares numbers: {rule.value!r} is not one"
    return None


def agent_labels(agent: AgentView) -> dict[str, str]:
    return {**agent.metadata, **agent.labels} if agent.metadata else agent.labels


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def rule_met(rule: LabelRule, labels: dict[str, str]) -> bool:
    have = labels.get(rule.label)
    if rule.op == "exists":
        return have is not None
    if have is None:
        return rule.op == "ne"
    if rule.op == "eq":
        return have == _text(rule.value)
    if rule.op == "ne":
        return have != _text(rule.value)
    if rule.op == "in":
        return isinstance(rule.value, list) and have in rule.value
    left, right = _number(have), _number(rule.value)
    if left is None or right is None:
        return False
    return {
        "gt": left > right,
        "lt": left < right,
        "gte": left >= right,
        "lte": left <= right,
    }[rule.op]


def describe(rule: LabelRule) -> str:
    if rule.op == "exists":
        return f"{rule.label} exists"
    value = "[" + ", ".join(rule.value) + "]" if isinstance(rule.value, list) else _text(rule.value)
    symbol = {"eq": "=", "ne": "!=", "in": " in ", "gt": ">", "lt": "<", "gte": ">=", "lte": "<="}[rule.op]
    return f"{rule.label}{symbol}{value}"


def unmet_requirements(task: TaskView, agent: AgentView) -> list[str]:
    """The task's required labels the agent lacks, described."""
    spec = task.spec
    if not spec.labels and not spec.label_rules:
        return []
    labels = agent_labels(agent)
    unmet = [f"{key}={value}" for key, value in sorted(spec.labels.items()) if labels.get(key) != value]
    unmet += [describe(r) for r in spec.label_rules if r.mode == "require" and not rule_met(r, labels)]
    return unmet


def preference_score(task: TaskView, agent: AgentView) -> tuple[float, list[str]]:
    """The summed weight of the preferred rules the agent meets, and those rules described."""
    rules = [r for r in task.spec.label_rules if r.mode == "prefer"]
    if not rules:
        return 0.0, []
    labels = agent_labels(agent)
    met = [r for r in rules if rule_met(r, labels)]
    return sum(r.weight for r in met), [f"{describe(r)} (+{r.weight:g})" for r in met]
