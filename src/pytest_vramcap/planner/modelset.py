"""Several models on one card: a plan per model, each its own server process, judged together.

Each model runs in its own llama-server (or Ollama runner), so each pays its own
CUDA context, weights, KV cache and compute buffer: the set's peak is the sum of
its plans' peaks. llama.cpp's ``--fit`` keeps its margin free when each process
loads, so the margin counts once, on top of the sum, as for one model
(:func:`~.plan.budget_overrun_mib`).

What the user left out is solved for: the models whose agents and context are
both given are priced first; what they leave is shared evenly between the others,
each solved on its share as one model would be (:func:`~.solver.make_plan`), then
priced again on the whole card. A model that reaches its own limit on its share
(its training context) hands the rest back to the others (water-filling). An
embedding model gets one slot unless its role is named (``--agents embed=2``), as
Ollama loads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..defaults import DEFAULT_CTX_PER_AGENT, MAX_AGENTS, MIB
from ..errors import ConfigError
from ..model.spec import ModelSpec
from .memory import KV_PAD, MemoryBreakdown
from .plan import Plan, PlanRequest, overrun_mib
from .profiles import Profile, several_cards
from .solver import make_plan, placed_on_card, with_split

__all__ = ["PlanSet", "make_plan_set", "set_overrun_mib"]


def set_overrun_mib(memories: list[MemoryBreakdown], profile: Profile, margin_mib: int) -> float:
    """How far the models together are over what the card offers (<= 0: they fit).

    The one-model rule of :func:`~.plan.budget_overrun_mib` over the sum: at load, what each process
    measured plus the one margin ``--fit`` keeps; at peak, every buffer, pools included.
    """
    return max(overrun_mib([memory.by_card[index] for memory in memories], card.usable_mib, margin_mib)
               for index, card in enumerate(profile.cards))  # on several cards the tightest decides


@dataclass(frozen=True)
class PlanSet:
    """The plans of every model of a run, by role, in the order the models were given."""

    plans: dict[str, Plan]
    profile: Profile
    fit_margin_mib: int
    notes: tuple[str, ...] = ()
    asked: Mapping[str, PlanRequest] = field(default_factory=dict)
    """What each role asked, before anything was solved: planning it again on another profile re-solves."""
    named: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def on_profile(self, profile: Profile) -> PlanSet:
        """The same models and requests planned on ``profile`` (the card that really runs, emulating this one)."""
        specs = {role: plan.spec for role, plan in self.plans.items()}
        return make_plan_set(specs, profile, self.asked or {role: p.request for role, p in self.plans.items()},
                             self.named)

    @property
    def roles(self) -> list[str]:
        return list(self.plans)

    @property
    def primary(self) -> Plan:
        """The first model: the one agents that name no model talk to."""
        return next(iter(self.plans.values()))

    @property
    def several(self) -> bool:
        return len(self.plans) > 1

    @property
    def overrun_mib(self) -> float:
        return set_overrun_mib([plan.memory for plan in self.plans.values()], self.profile, self.fit_margin_mib)

    @property
    def fits(self) -> bool:
        # One model: the same unrounded test as Plan.fits (the sum of one is the one-model rule).
        return self.overrun_mib <= 0

    @property
    def total_mib(self) -> float:
        """The models' peak GPU memory together."""
        return round(sum(plan.memory.gpu.total for plan in self.plans.values()) / MIB, 2)

    def planned_by_card_mib(self) -> tuple[float, ...]:
        """What every model together holds at peak on each card (one entry for one card), MiB."""
        return tuple(round(sum(card), 2) for card in zip(*(plan.planned_by_card_mib() for plan in self.plans.values()),
                                                        strict=True))

    @property
    def headroom_mib(self) -> float:
        """Memory left free at peak (on several cards, on the tightest)."""
        if self.profile.devices:
            return round(min(card.usable_mib - sum(plan.memory.devices[index].total for plan in self.plans.values())
                             / MIB for index, card in enumerate(self.profile.devices)), 2)
        return round(self.profile.usable_mib - self.total_mib, 2)

    @property
    def breaking_term(self) -> str | None:
        if self.fits:
            return None
        if not self.several:
            return self.primary.breaking_term
        if self.profile.devices:  # several cards: name the tightest
            index, card = max(enumerate(self.profile.devices), key=lambda item: overrun_mib(
                [plan.memory.devices[item[0]] for plan in self.plans.values()], item[1].usable_mib,
                self.fit_margin_mib))
            parts = " + ".join(f"{role} {plan.memory.devices[index].total / MIB:,.0f}"
                               for role, plan in self.plans.items())
            return (f"on card {index} ({card.name}) together {parts} MiB at peak and the {self.fit_margin_mib} MiB "
                    f"--fit margin are {self.overrun_mib:,.0f} MiB over {card.usable_mib:,} MiB")
        parts = " + ".join(f"{role} {plan.total_mib:,.0f}" for role, plan in self.plans.items())
        return (f"together {parts} MiB at peak and the {self.fit_margin_mib} MiB --fit margin are "
                f"{self.overrun_mib:,.0f} MiB over {self.profile.usable_mib:,} MiB")


def _embedding_request(spec: ModelSpec, request: PlanRequest, named: frozenset[str]) -> PlanRequest:
    """An embedding model's request: one slot unless its role names agents; its context, if none is given, the
    run's default capped at what it was trained on (it answers one input per request, it holds no conversation)."""
    agents = request.agents if "agents" in named and request.agents is not None else 1
    ctx = request.ctx_per_agent or min(DEFAULT_CTX_PER_AGENT, spec.n_ctx_train)
    return replace(request, agents=agents, ctx_per_agent=ctx)


def _at_limit(plan: Plan) -> bool:
    """Whether a solved plan stopped at the model's own limit rather than at its share of the card."""
    if plan.solved_for == "ctx_per_agent":
        return plan.config.ctx_per_agent + KV_PAD > plan.spec.n_ctx_train
    return plan.solved_for == "agents" and plan.config.parallel >= MAX_AGENTS


def _share_profile(profile: Profile, usable_mib: float) -> Profile:
    """One card offering only ``usable_mib``: what is reserved grows by the rest."""
    return replace(profile, reserved_mib=profile.total_mib - int(usable_mib))


def make_plan_set(specs: Mapping[str, ModelSpec], profile: Profile, requests: Mapping[str, PlanRequest],
                  named: Mapping[str, frozenset[str]] | None = None) -> PlanSet:
    """Plan every model of ``specs`` (by role) on ``profile`` together.

    ``named`` says which options a role named itself (``--agents chat=4``): an embedding model takes the shared
    ``--agents`` as one slot. Raises ConfigError when the models cannot share the card even at one slot each.
    """
    named = named or {}
    roles = list(specs)
    asked = dict(requests)
    margin = next(iter(requests.values())).fit_margin_mib
    if len(roles) == 1:
        role = roles[0]
        return PlanSet({role: make_plan(specs[role], profile, requests[role])}, profile, margin, asked=asked)
    requests = {role: _embedding_request(specs[role], requests[role], named.get(role, frozenset()))
                if specs[role].embedding else requests[role] for role in roles}
    notes = [f"{role}: an embedding model, {requests[role].agents} slot(s) of {requests[role].ctx_per_agent} "
             f"(Ollama loads it with one); agents' embedding requests queue for it"
             for role in roles if specs[role].embedding]
    _check_smallest_fits(specs, profile, requests, margin)
    priced = {role: request for role, request in requests.items()
              if request.agents is not None and request.ctx_per_agent is not None}
    plans = _in_order(specs, profile, priced, margin)
    if profile.devices:  # the priced models take their cards first, so the others are solved on what is left
        plans = _place_on_cards(plans, profile, margin)
    open_roles = [role for role in roles if role not in plans]
    # Water-filling: share what the priced models leave evenly; a model that reaches its own limit (its training
    # context, the most agents) on its share is priced as it is and hands the rest back to the others.
    while open_roles:
        room = _share_of_room(profile, list(plans.values()), margin, len(open_roles))
        solved = {role: make_plan(specs[role], room, requests[role]) for role in open_roles}
        capped = [role for role in open_roles if _at_limit(solved[role])] or open_roles
        for role in capped:
            again = replace(requests[role], agents=solved[role].config.parallel,
                            ctx_per_agent=solved[role].config.ctx_per_agent)
            plan = make_plan(specs[role], profile, again)
            if solved[role].config.tensor_split:  # the split made for what the others leave on each card
                plan = with_split(plan, solved[role].config.tensor_split)
            plans[role] = replace(plan, solved_for=solved[role].solved_for)
            notes.append(f"{role}: solved for {solved[role].solved_for} on an even share of what the other models "
                         f"leave ({room.usable_mib:,} MiB with the margin)")
        open_roles = [role for role in open_roles if role not in capped]
    ordered = {role: plans[role] for role in roles}
    if profile.devices:
        ordered = _place_on_cards(ordered, profile, margin)
    return PlanSet(ordered, profile, margin, tuple(notes), asked, named)


def _in_order(specs: Mapping[str, ModelSpec], profile: Profile, requests: Mapping[str, PlanRequest],
              margin: int) -> dict[str, Plan]:
    """Each model's plan in the order given; on several cards each split for what the models before it hold on
    each card (alone, each would take the same roomy card)."""
    plans: dict[str, Plan] = {}
    for role, request in requests.items():
        plan = make_plan(specs[role], profile, request)
        if profile.devices and plans and plan.config.tensor_split:
            room = _share_of_room(profile, list(plans.values()), margin, 1)
            fixed = replace(request, agents=plan.config.parallel, ctx_per_agent=plan.config.ctx_per_agent)
            counts = make_plan(specs[role], room, fixed).config.tensor_split
            plan = with_split(plan, counts) if counts else plan
        plans[role] = plan
    return plans


def _share_of_room(profile: Profile, placed: list[Plan], margin: int, sharers: int) -> Profile:
    """``profile`` offering one of ``sharers`` even shares of what the ``placed`` plans leave, card by card on
    several cards. Each share keeps its own margin when solved; handing the margin back to all but one leaves it
    once. What the placed plans hold counts as --fit sees it at load (pools out: the margin absorbs them) unless
    their pools outgrow the margin (a long context without flash attention): then at peak, so that the share is
    never more than what the card has left at peak."""
    cards = []
    for index, card in enumerate(profile.cards):
        held = [plan.memory.by_card[index] for plan in placed]
        at_load = sum((part.total - part.runtime_pool) / MIB for part in held)
        at_peak = sum(part.total / MIB for part in held)
        share = min((card.usable_mib - at_load - margin) / sharers + margin, (card.usable_mib - at_peak) / sharers)
        cards.append(_share_profile(card, share))
    if not profile.devices:
        return cards[0]
    return replace(several_cards(profile.name, cards), overhead_source=profile.overhead_source,
                   description=profile.description)


def _place_on_cards(plans: dict[str, Plan], profile: Profile, margin: int) -> dict[str, Plan]:
    """Several models on several cards: a model that fits one card beside the others goes to it, the card that
    leaves the most room on the tightest card, as Ollama places a model that fits one card (server/sched.go
    bestSingleGPUFit); one card spares the other cards its CUDA overhead and its layers a card-to-card hop. In
    the order given; the rest stay split over every card."""
    placed = dict(plans)
    for role, plan in plans.items():
        if plan.config.main_gpu is not None:
            continue  # on one card already
        options = []
        for card in range(len(profile.devices)):
            candidate = placed_on_card(plan, card)
            trial = [candidate.memory if other == role else placed[other].memory for other in placed]
            options.append((set_overrun_mib(trial, profile, margin), card, candidate))
        over, card, candidate = min(options, key=lambda option: option[:2])
        if over <= 0:
            placed[role] = candidate
    return placed


def _check_smallest_fits(specs: Mapping[str, ModelSpec], profile: Profile, requests: Mapping[str, PlanRequest],
                         margin: int) -> None:
    """ConfigError (one line) when one slot each, at the given or the smallest context, is already too much."""
    smallest = _in_order(specs, profile, {role: replace(requests[role], agents=1,
                                                        ctx_per_agent=requests[role].ctx_per_agent or KV_PAD)
                                          for role in specs}, margin)
    if profile.devices:
        smallest = _place_on_cards(smallest, profile, margin)
    together = PlanSet(smallest, profile, margin)
    if not together.fits:
        raise ConfigError(f"the models cannot share {profile.name} even at one slot each: {together.breaking_term}"
                          f"{'' if profile.devices else ' usable'}")
