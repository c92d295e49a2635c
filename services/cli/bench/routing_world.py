"""The hidden world of ``hive bench routing``: agents whose true skill the router never sees.

Each agent has a true skill per task type and per cognitive style. What it declares when it
registers is only a hint: proficiencies are its true type skills plus self-assessment noise, and
its persona names its strongest style (the true style skills also carry a part no persona
reveals). A task's true expected quality with an agent is ``0.65 x type skill + 0.35 x style
skill`` (the mean style skill when the task prefers no style); the agent reports that plus
Gaussian noise. Everything is drawn from one seed, so a run can be repeated exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from shared.domain.routing.persona import style_affinity
from shared.events import CognitiveStyle, Persona, TaskProfile, TaskSubmitted

TASK_TYPES: tuple[str, ...] = ("code_analysis", "code_review", "refactoring", "code_generation", "testing")
STYLES: tuple[CognitiveStyle, ...] = ("analytical", "creative", "pragmatic", "collaborative", "meticulous")
TYPE_SHARE = 0.65
"""Share of the type skill in the true expected quality (the style skill has the rest)."""


@dataclass(frozen=True)
class HiddenAgent:
    agent_id: str
    type_skill: dict[str, float]
    style_skill: dict[str, float]
    capabilities: dict[str, float]
    persona: Persona
    capacity: int

    def true_quality(self, task_type: str, style: str | None) -> float:
        """Expected quality of this agent on a task (what the router should learn)."""
        styles = self.style_skill
        skill = styles[style] if style is not None else sum(styles.values()) / len(styles)
        return TYPE_SHARE * self.type_skill[task_type] + (1.0 - TYPE_SHARE) * skill


@dataclass
class World:
    agents: dict[str, HiddenAgent]
    tasks: dict[str, TaskSubmitted] = field(default_factory=dict)
    report_noise: float = 0.05

    def true_quality(self, agent_id: str, task_id: str) -> float:
        task = self.tasks[task_id]
        return self.agents[agent_id].true_quality(task.task_type, task.profile.preferred_cognitive_style)

    def reported_quality(self, agent_id: str, task_id: str, rng: random.Random) -> float:
        return min(1.0, max(0.0, rng.gauss(self.true_quality(agent_id, task_id), self.report_noise)))

    def capable(self, agent_id: str, task_id: str) -> bool:
        return self.tasks[task_id].task_type in self.agents[agent_id].capabilities


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def make_world(agents: int, capacity: int, seed: int, types_per_agent: int = 4) -> World:
    """`agents` hidden agents; each offers `types_per_agent` task types, every type offered by some."""
    rng = random.Random(seed)
    hidden: dict[str, HiddenAgent] = {}
    for index in range(agents):
        style = STYLES[index % len(STYLES)]
        offered = sorted(rng.sample(TASK_TYPES, k=min(types_per_agent, len(TASK_TYPES))))
        if index < len(TASK_TYPES) and TASK_TYPES[index] not in offered:
            offered = sorted({*offered[1:], TASK_TYPES[index]})
        type_skill = {t: round(rng.uniform(0.35, 0.95), 3) for t in TASK_TYPES}
        style_skill = {
            str(s): round(_clamp(0.5 * style_affinity(style, s) + 0.5 * rng.random()), 3) for s in STYLES
        }
        hidden[f"bench-{index}"] = HiddenAgent(
            agent_id=f"bench-{index}",
            type_skill=type_skill,
            style_skill=style_skill,
            capabilities={t: round(_clamp(type_skill[t] + rng.gauss(0.0, 0.1)), 2) for t in offered},
            persona=Persona(
                cognitive_style=style,
                creativity=round(rng.random(), 2),
                analytical_depth=round(rng.random(), 2),
                collaboration=round(rng.random(), 2),
            ),
            capacity=capacity,
        )
    return World(agents=hidden)


def make_tasks(world: World, count: int, seed: int, prefix: str = "route") -> list[TaskSubmitted]:
    """`count` tasks of random types; five in six prefer a cognitive style. Registered in `world`."""
    rng = random.Random(seed + 1)
    tasks = []
    for index in range(count):
        style_pick = rng.randrange(len(STYLES) + 1)
        task = TaskSubmitted(
            task_id=f"{prefix}-{index}",
            task_type=rng.choice(TASK_TYPES),
            profile=TaskProfile(
                preferred_cognitive_style=STYLES[style_pick] if style_pick < len(STYLES) else None,
                creativity_requirements=round(rng.random(), 2),
                analytical_depth=round(rng.random(), 2),
                collaboration_intensity=round(rng.random(), 2),
            ),
        )
        world.tasks[task.task_id] = task
        tasks.append(task)
    return tasks


EQUAL_TYPE = "balance"
"""Task type of the equal-agents world."""


def make_equal_world(agents: int, capacity: int, quality: float = 0.8) -> World:
    """`agents` agents alike in everything, declared and hidden: the router cannot be right to
    prefer any of them (each is "the best free agent"), so only the evenness of its choices tells."""
    hidden = {
        f"equal-{index}": HiddenAgent(
            agent_id=f"equal-{index}",
            type_skill={EQUAL_TYPE: quality},
            style_skill={str(style): quality for style in STYLES},
            capabilities={EQUAL_TYPE: 1.0},
            persona=Persona(),
            capacity=capacity,
        )
        for index in range(agents)
    }
    return World(agents=hidden)


def make_equal_tasks(world: World, count: int, prefix: str = "equal") -> list[TaskSubmitted]:
    """`count` tasks every agent of an equal world can take, preferring no style. Registered in `world`."""
    tasks = [TaskSubmitted(task_id=f"{prefix}-{index}", task_type=EQUAL_TYPE) for index in range(count)]
    world.tasks.update((task.task_id, task) for task in tasks)
    return tasks
