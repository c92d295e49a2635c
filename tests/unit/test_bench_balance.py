"""``hive bench balance``: which target each phase is held to, and the agents of different skill."""

from __future__ import annotations

from services.cli.bench.balance import (
    DEFAULT_STRATEGY_TARGET,
    SKILLED,
    TARGET_EFFICIENCY,
    BalanceResult,
    Phase,
    _skilled_agents,
    skilled_quality,
)


def phase(name: str, strategy: str) -> Phase:
    return Phase(name=name, tasks=1, strategy=strategy, agents=1, paced_by="completion")


def test_the_default_strategy_is_held_to_its_own_target_and_unequal_agents_are_only_reported() -> None:
    result = BalanceResult(agents=1, capacity=1, work_ms=1.0, concurrency=1, rebalance_after_s=1.0, phases=[])
    assert result.target_of(phase("light", "load_balanced")) == TARGET_EFFICIENCY
    assert result.target_of(phase("heavy-adaptive", "adaptive")) == DEFAULT_STRATEGY_TARGET
    assert result.target_of(phase("skilled", "adaptive")) is None


def test_the_skilled_agents_declare_the_same_and_differ_only_in_the_work_they_do() -> None:
    agents = _skilled_agents(5, capacity=3, work_ms=10.0)
    assert [agent.agent_id for agent in agents] == [f"{SKILLED}-{i}" for i in range(5)]
    assert len({(tuple(a.capabilities), a.persona, a.capacity) for a in agents}) == 1
    qualities = [skilled_quality(index, 5) for index in range(5)]
    assert qualities == sorted(qualities) and (qualities[0], qualities[-1]) == (0.5, 0.95)
