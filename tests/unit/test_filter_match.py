"""``FilterMatch`` answers as ``shared.subjects.reads`` does, for every filter set and subject, and
its cache stays bounded whatever the ids."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from services.workflow.view import WORKFLOW_READS
from shared.domain.routing.view import ROUTER_READS
from shared.filter_match import MAX_SHAPES, FilterMatch, pins_an_id, shape_of
from shared.subjects import (
    ALL_EVENTS,
    aggregate_filter,
    aggregate_subjects,
    entity_subjects,
    event_subject,
    events_of_type,
    notice_subject,
    notice_subject_v2,
    notices_v2_of,
    reads,
    report_subject,
    reports_by,
    reports_of_type,
    task_decisions,
    type_filters,
)

IDS = ("t1", "t2", "a1", "a2", "wf1")
TYPES = ("submitted", "assigned", "started", "progress", "completed", "task_assigned", "registered", "opened")
AGGREGATES = ("agent", "task", "workflow", "breaker", "system")

FILTER_SETS: list[list[str]] = [
    [ALL_EVENTS],
    list(ROUTER_READS),
    list(WORKFLOW_READS),
    [aggregate_filter("task")],
    [aggregate_filter("agent"), aggregate_filter("system")],
    [aggregate_subjects("task", "t1")],
    [aggregate_subjects("task", "t1"), *notices_v2_of("t1")],
    [task_decisions("t2")],
    [reports_by("t1", "a1")],
    [reports_of_type("t1", "progress")],
    [entity_subjects("a1")],
    [events_of_type("task", "completed"), events_of_type("agent", "task_assigned")],
    [*type_filters("task", "started"), aggregate_subjects("agent", "a2")],
    ["hive.evt.*.*.*", "hive.hb.*"],
    ["hive.*.task.>", "hive.evt.task.*.completed.a1"],
    ["hive.>"],
    ["hive.evt.task.t1.completed"],
    ["hive.evt.task"],
    [],
]
"""The services' own filters, one task's history (pinned ids), and wildcards everywhere."""


def _subjects() -> list[str]:
    """Five- and six-token event subjects of every aggregate, type and id, plus odd ones."""
    found = [
        event_subject(aggregate, aggregate_id, event_type)
        for aggregate, aggregate_id, event_type in itertools.product(AGGREGATES, IDS, TYPES)
    ]
    found += [
        report_subject(task, kind, agent)
        for task in IDS
        for kind in ("started", "progress", "completed")
        for agent in IDS
    ]
    found += [notice_subject_v2(agent, "task_assigned", task) for agent in IDS for task in IDS]
    found += [notice_subject(agent, "task_assigned") for agent in IDS]
    found += [
        "hive.hb.a1",
        "hive.evt",
        "hive.evt.task",
        "hive.evt.task.t1",
        "hive.evt.task.t1.completed.a1.extra",
        "other.evt.task.t1.completed",
        "hive.dlq.router",
        "",
    ]
    return found


def test_agrees_with_reads_on_every_filter_set_and_subject() -> None:
    subjects = _subjects()
    for filters in FILTER_SETS:
        match = FilterMatch(filters)
        for _round in range(2):  # the first asks, the second answers from the cache
            for subject in subjects:
                assert match(subject) == reads(filters, subject), (filters, subject)


TOKEN = st.sampled_from(["hive", "evt", "task", "agent", "t1", "a1", "completed", "x", ""])
FILTER_TOKEN = st.one_of(TOKEN, st.just("*"))


@st.composite
def _filter(draw: st.DrawFn) -> str:
    parts = draw(st.lists(FILTER_TOKEN, min_size=1, max_size=7))
    if draw(st.booleans()):
        parts.append(">")
    return ".".join(parts)


@settings(max_examples=300, deadline=None)
@given(
    filters=st.lists(_filter(), max_size=4),
    subjects=st.lists(st.lists(TOKEN, min_size=1, max_size=7).map(".".join), min_size=1, max_size=12),
)
def test_agrees_with_reads_on_any_filters_and_subjects(filters: list[str], subjects: list[str]) -> None:
    match = FilterMatch(filters)
    for subject in subjects + subjects:
        assert match(subject) == reads(filters, subject), (filters, subject)


def test_a_filter_pins_an_id_only_where_subjects_carry_ids() -> None:
    assert pins_an_id(aggregate_subjects("task", "t1"))
    assert pins_an_id(reports_by("t1", "a1"))
    assert pins_an_id(notices_v2_of("t1")[0])  # hive.evt.agent.*.<notice>.t1 (version 2)
    assert not pins_an_id(events_of_type("task", "completed"))
    assert not pins_an_id(aggregate_filter("agent"))
    assert not pins_an_id(ALL_EVENTS)


def test_ids_do_not_make_shapes() -> None:
    first = shape_of(report_subject("t1", "completed", "a1").split("."))
    second = shape_of(report_subject("t999", "completed", "a42").split("."))
    assert first == second
    assert shape_of(event_subject("task", "t1", "completed").split(".")) != first  # five tokens, not six


def test_the_cache_holds_one_entry_per_shape_whatever_the_ids() -> None:
    match = FilterMatch([*ROUTER_READS, aggregate_subjects("task", "t1"), *notices_v2_of("t1")])
    for index in range(5000):
        match(event_subject("task", f"t{index}", "submitted"))
        match(report_subject(f"t{index}", "completed", f"a{index % 7}"))
        match(notice_subject_v2(f"a{index}", "task_assigned", f"t{index}"))
        match(notice_subject(f"a{index}", "task_assigned"))
    assert match.shapes() == 4


def test_the_cache_is_bounded_for_made_up_event_types() -> None:
    match = FilterMatch([aggregate_filter("task")])
    for index in range(3 * MAX_SHAPES):
        subject = event_subject("task", "t1", f"kind{index}")
        assert match(subject)
        assert match.shapes() <= MAX_SHAPES
    assert not match("hive.evt.agent.a1.kind1")
