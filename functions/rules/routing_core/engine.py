"""The routing decision: a submitted job in, `route` or `reject` out, with the reasons.

Hot path of the rules Lambda, so plain Python over dicts: the routing table is
validated by pydantic (see table.py) and compiled here once into closures; a decision
is then a handful of comparisons. Bad input never raises: it becomes a rejection.

What it reads and answers is in decision.py (Job, Decision, the builders), the compiled checks in
checks.py, weighted splits in splits.py; strategies.py ranks, rate_limits.py admits, regions.py places
a candidate in one of its provider's regions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from routing_core import limits, preferences, quality, rate_limits, reasons, strategies
from routing_core.availability import Availability
from routing_core.checks import compile_when as _compile_when
from routing_core.checks import first_failure as _first_failure
from routing_core.checks import limit_checks as _limit_checks
from routing_core.decision import WHITE_SPACE as _WHITE_SPACE
from routing_core.decision import Decision, Job, echo
from routing_core.decision import Tally as _Tally
from routing_core.decision import candidate as _candidate
from routing_core.decision import is_number as _is_number
from routing_core.decision import reject as _reject
from routing_core.decision import route as _route
from routing_core.decision import unavailable as _unavailable
from routing_core.preferences import Preferences
from routing_core.regions import place
from routing_core.splits import chain as _chain
from routing_core.splits import compile_split as _compile_split
from routing_core.splits import split_bucket
from routing_core.splits import split_chain as _split_chain

__all__ = ["AUTO", "QUOTE_LENGTH_SEC", "Decision", "Engine", "Job", "echo", "split_bucket"]  # importers' names

AUTO = "auto"
DEFAULT_REGION = "default"  # providerRegion of a provider that lists no regions: its one queue
QUOTE_LENGTH_SEC = 5  # quoted for a job that gives no lengthSec: the providers' default clip


class Engine:
    """Decides for one routing table and one set of queue URLs (the function's environment)."""

    def __init__(self, table: Mapping[str, Any], queue_urls: Mapping[str, str],
                 router_region: str | None = None) -> None:
        self.router_region = router_region  # where this router runs: a job's residency must include it
        self.providers: dict[str, dict[str, Any]] = {}
        for name, spec in table["providers"].items():
            self.providers[name] = {
                "enabled": spec["enabled"],
                "queue": spec["queue"],
                "queueUrl": queue_urls.get(spec["queueUrlEnv"]) or None,
                "model": spec["defaultModel"],
                "limits": _limit_checks(spec["limits"]),
                "byPriority": {priority: (queue["queue"], queue_urls.get(queue["queueUrlEnv"]) or None)
                               for priority, queue in spec.get("priorityQueues", {}).items()},
                # (region, queue, URL) in the order failover tries them; empty: the provider's one queue
                "regions": [(region, queue["queue"], queue_urls.get(queue["queueUrlEnv"]) or None)
                            for region, queue in sorted((spec.get("regions") or {}).items(),
                                                        key=lambda entry: (entry[1]["failoverOrder"], entry[0]))],
            }
        self.known_models, self.known_regions = preferences.known_names(table)
        self.rules = [
            (rule["name"], _compile_when(rule["when"]), _chain(rule.get("route") or [], table),
             strategies.Strategy(rule.get("strategy") or "order", rule.get("minQuality"), rule.get("maxExploration")),
             _compile_split(rule.get("split"), table))
            for rule in table["rules"]
        ]
        self.prices = {(name, model): (price["perSecondUsd"], max(price["perSecondUsd"].values()),
                                       price.get("audioPerSecondUsd", 0), price.get("minimumUsd", 0))
                       for name, spec in table["providers"].items() for model, price in spec.get("prices", {}).items()}
        self.tiers = {name: (tier.get("maxQuoteUsd"), tier.get("priority", "normal"))
                      for name, tier in table.get("tiers", {}).items()}
        self.budgets = {name: spec["dailyBudgetUsd"] for name, spec in table["providers"].items()
                        if spec.get("dailyBudgetUsd") is not None}
        # (provider, model or None) -> jobs per minute: the counters a routed job takes (routing_core.rate_limits)
        self.rate_limits: dict[tuple[str, str | None], int] = {
            (name, model): limit["maxJobsPerMinute"] for name, spec in table["providers"].items()
            for model, limit in [(None, spec.get("rateLimits")), *(spec.get("modelRateLimits") or {}).items()]
            if limit and limit.get("maxJobsPerMinute")}
        # (provider, model or "") -> maxInFlight: least-busy's denominator, and the leases a routed job takes
        # (routing_core.rate_limits)
        self.max_in_flight: dict[tuple[str, str], int] = {
            (name, model or ""): limit["maxInFlight"] for name, spec in table["providers"].items()
            for model, limit in [(None, spec.get("rateLimits")), *(spec.get("modelRateLimits") or {}).items()]
            if limit and limit.get("maxInFlight")}
        self.sort_strategies = {sort: strategies.Strategy(name) for sort, name in strategies.SORT_STRATEGY.items()}
        credits = table.get("credits")
        self.credits_per_usd = credits["creditsPerUsd"] if credits else None
        self.credit_exempt_tiers = frozenset(credits.get("exemptTiers", [])) if credits else frozenset()
        self.explicit_preferred = table.get("explicitProvider") == "preferred"
        self._selector_cache: dict[Any, list[preferences.Selector]] = {}
        policies = {name: spec.get("dataPolicy") for name, spec in table["providers"].items()}
        self.consent_safe = frozenset(name for name, policy in policies.items()
                                      if policy and not policy["retainsInputs"] and not policy["trainsOnInputs"])
        self.data_policy_note = {name: "has no dataPolicy (unknown: treated as retaining inputs)" if not policy else
                                 "retains inputs" if policy["retainsInputs"] else "trains on inputs"
                                 for name, policy in policies.items()}
        self.uses_credits = credits is not None or any(rule["when"].get("minCredits") is not None
                                                       for rule in table["rules"])

    def quote(self, provider: str, model: str, length: float | None, resolution: str | None,
              audio: bool | None) -> float:
        """The model's list price for the job: per second at its resolution (an unlisted or absent one at
        the model's highest price: never under-quoted), the audio surcharge, at least the minimum charge.
        Without a length, QUOTE_LENGTH_SEC."""
        per_second, highest, audio_per_second, minimum = self.prices[(provider, model)]
        seconds = QUOTE_LENGTH_SEC if length is None else length
        rate = per_second.get(resolution, highest) if resolution is not None else highest
        return round(float(max(minimum, seconds * (rate + (audio_per_second if audio else 0)))), 4)

    def region_scopes(self) -> list[tuple[str, str | None, str | None]]:
        """Every provider region's own scope: what `provider status` lists besides candidates()."""
        return [(name, None, region) for name, spec in self.providers.items() for region, _, _ in spec["regions"]]

    def candidates(self) -> list[tuple[str, str | None]]:
        """Every provider and every model a rule or an explicit request can route to."""
        known: dict[tuple[str, str | None], None] = {(name, None): None for name in self.providers}
        known.update({(name, spec["model"]): None for name, spec in self.providers.items()})
        known.update({candidate: None for _, _, chain, _, split in self.rules
                      for candidate in (chain if split is None else [(p, m) for p, m, _ in split[0]])})
        return list(known)

    def decide(self, detail: Any, credit_balance: Any = None, availability: Availability | None = None) -> Decision:
        """The decision; `submittedDetail` is the detail as compact JSON, "" when over the contract's limits.
        Without `availability` every provider is taken to be available."""
        explanation: list[dict[str, Any]] = []
        if not isinstance(detail, dict):
            return _reject(reasons.MISSING_FIELD_PREFIX + "jobId", "validate", explanation,
                           "the job detail is not a JSON object")
        text, refused, why = limits.check(detail)
        decision = self._decide(detail, credit_balance, availability, explanation) if refused is None else \
            _reject(refused, "validate", explanation, why)
        decision["submittedDetail"] = text
        return decision

    def read_credits_first(self, decision: Decision, detail: dict[str, Any]) -> Decision:
        """Ask the workflow for the user's balance when the table routes on credits (never twice)."""
        explanation = [*decision["explanation"], {"rule": "credits", "matched": False,
                                                  "why": "a rule needs the credit balance: read it, then decide"}]
        return {"outcome": "read_credits", "provider": None, "model": None, "queue": None, "queueUrl": None,
                "reason": None, "rule": "credits", "explanation": explanation, "quoteUsd": None, "quoteUsdText": None,
                "priority": None, "providerRegion": None,
                "userId": detail["userId"],
                "submittedDetail": decision.get("submittedDetail", "")}

    def _decide(self, detail: dict[str, Any], credit_balance: Any, availability: Availability | None,
                explanation: list[dict[str, Any]]) -> Decision:
        for field in reasons.REQUIRED_FIELDS:
            value = detail.get(field)
            if not isinstance(value, str) or not value.strip(_WHITE_SPACE):
                return _reject(reasons.MISSING_FIELD_PREFIX + field, "validate", explanation,
                               f"{field} is absent, null, not a string or blank")

        length = detail.get("lengthSec")
        if length is not None:
            if not _is_number(length) or (isinstance(length, float) and math.isnan(length)):
                return _reject(reasons.INVALID_LENGTH_NAN, "validate", explanation,
                               f"lengthSec is {type(length).__name__}, not a number")
            if not reasons.MIN_LENGTH_SEC <= length <= reasons.MAX_LENGTH_SEC:
                return _reject(reasons.INVALID_LENGTH_RANGE, "validate", explanation,
                               f"lengthSec {length:g} outside {reasons.MIN_LENGTH_SEC}..{reasons.MAX_LENGTH_SEC}")

        try:
            prefs = preferences.parse(detail, self.known_models, self._selector_cache, self.known_regions)
            preferences.check_metadata(detail.get("metadata"))
        except ValueError as exc:
            return _reject(reasons.INVALID_ROUTING, "validate", explanation, str(exc))
        if prefs is not None and prefs.residency is not None and self.router_region is not None \
                and not preferences.in_residency(self.router_region, prefs.residency):
            # Its queue, and so the job at rest, would be in this router's region (docs/ARCHITECTURE.md).
            return _reject(reasons.PREFERENCES_UNSATISFIABLE, "residency", explanation,
                           f"routing.residency {prefs.residency}: this router runs in {self.router_region}; publish "
                           f"the job to the router deployed in a region of {prefs.residency}")
        job = Job(length, detail, credit_balance)
        job_id: str = detail["jobId"]
        requested = detail.get("provider")
        key = requested.strip().lower() if isinstance(requested, str) else requested
        if key is not None and key not in ("", AUTO):
            if prefs is not None and prefs.given:
                return _reject(reasons.INVALID_ROUTING, "validate", explanation,
                               f"provider {echo(requested)} and routing given: pick one")
            provider = self.providers.get(key) if isinstance(key, str) else None
            if provider is None or not provider["enabled"]:
                state = "disabled in the routing table" if provider else "unknown"
                return _reject(reasons.UNSUPPORTED_PROVIDER_PREFIX + echo(requested), "explicit-provider",
                               explanation, f"provider {echo(requested)} is {state}")
            model = provider["model"]
            if prefs is not None and prefs.consent is False and key not in self.consent_safe:
                return _reject(reasons.PREFERENCES_UNSATISFIABLE, "explicit-provider", explanation,
                               f"provider {key} requested, but no consent given and it "
                               f"{self.data_policy_note[key]}")
            out, note, why_out, region = place(key, provider, model, job_id, availability, None)
            ok = out is None
            note = note if ok else why_out
            quote = self.quote(key, model, job.length, job.resolution, job.audio)
            max_quote, _ = self._tier(job)
            if ok and max_quote is not None and quote > max_quote:
                return _reject(reasons.OVER_TIER_LIMIT, "explicit-provider", explanation,
                               f"{key}/{model} quotes ${quote:g}, over the {job.tier_policy} tier's ${max_quote:g}")
            if ok:
                refusal = self._credits_refusal(job, key, model, quote)
                if refusal is not None:
                    return _reject(reasons.INSUFFICIENT_CREDITS, "explicit-provider", explanation, refusal)
                exhausted = self._admit(key, model, availability, job_id)
                budget_key: str | None = None
                if exhausted is None:
                    exhausted, budget_key = self._charge(key, quote, availability)
                    if exhausted is not None:
                        self._release(key, model, availability, job_id)
                if exhausted is None:
                    return self._route_priced(job, key, provider, model, quote, budget_key, "explicit-provider",
                                              explanation, f"provider {key} requested" + (f" ({note})" if note else ""),
                                              region)
                note = exhausted
            unavailable = reasons.REGION_UNAVAILABLE if out == "region" else reasons.PROVIDER_UNAVAILABLE_PREFIX + key
            if not self.explicit_preferred:
                return _unavailable(unavailable, "explicit-provider", explanation,
                                    f"provider {key} requested (strict): {note}")
            explanation.append({"rule": "explicit-provider", "matched": False,
                                "why": f"provider {key} requested (preferred): {note}; falling back"})
            decision = self._auto(job, job_id, availability, explanation, prefs)
            if decision["outcome"] == "route":
                return decision
            return _unavailable(unavailable, "explicit-provider", explanation, None)
        explanation.append({"rule": "explicit-provider", "matched": False, "why": "provider is auto or not given"})
        return self._auto(job, job_id, availability, explanation, prefs)

    def _auto(self, job: Job, job_id: str, availability: Availability | None,
              explanation: list[dict[str, Any]], prefs: Preferences | None = None) -> Decision:
        outcome = _Tally()
        max_quote, _ = self._tier(job)
        matched = False
        for name, checks, chain, strategy, split in self.rules:
            why = _first_failure(checks, job)
            if why is not None:
                explanation.append({"rule": name, "matched": False, "why": why})
                continue
            matched = True
            step: dict[str, Any] = {"rule": name, "matched": True}
            if split is not None:
                step["bucket"] = bucket = split_bucket(job_id)
                chain = _split_chain(split, bucket)
            decision = self._try_candidates(job, job_id, availability, explanation, prefs, step, chain, strategy,
                                            max_quote, outcome)
            if decision is not None:
                return decision
        if not matched and prefs is not None and prefs.order:  # the job's own order, where no rule matched
            decision = self._try_candidates(job, job_id, availability, explanation, prefs,
                                            {"rule": ORDER_RULE, "matched": True}, [], _ORDER, max_quote, outcome)
            if decision is not None:
                return decision
        if outcome.rate_limited:  # retryable: recorded FAILED like no_available_provider, for replay
            return _unavailable(reasons.RATE_LIMITED, None, explanation, None)
        if outcome.held_back:
            return _unavailable(reasons.NO_AVAILABLE_PROVIDER, None, explanation, None)
        if outcome.region_out:
            return _unavailable(reasons.REGION_UNAVAILABLE, None, explanation, None)
        if outcome.cheapest_over_price is not None:
            decision = _reject(reasons.OVER_MAX_PRICE, None, explanation, None)
            decision["quoteUsd"] = outcome.cheapest_over_price
            decision["quoteUsdText"] = f"{outcome.cheapest_over_price:.4f}"
            return decision
        if outcome.over_limit:
            return _reject(reasons.OVER_TIER_LIMIT, None, explanation, None)
        if outcome.by_preferences:
            return _reject(reasons.PREFERENCES_UNSATISFIABLE, None, explanation, None)
        return _reject(reasons.NO_ROUTE, None, explanation, None)

    def _arrange(self, job: Job, chain: list[tuple[str, str]], strategy: strategies.Strategy,
                 prefs: Preferences | None, availability: Availability | None, step: dict[str, Any]
                 ) -> tuple[list[tuple[str, str, float]], frozenset[tuple[str, str]] | None, list[str]]:
        """The candidates in the order they are tried; those that may take the job without fallbacks (None:
        any), which are order's candidates, or else the rule's first after its own split and strategy; and
        the filters that shaped the list."""
        quoted = [(p, m, self.quote(p, m, job.length, job.resolution, job.audio)) for p, m in chain]
        applied = ["rule"]
        if strategy.name == "cheapest":
            quoted.sort(key=_by_quote)  # stable: the rule's order breaks ties
        elif strategy.uses_stats:
            quoted, step["strategy"] = self._rank(strategy, quoted, availability, job)
        if prefs is None:
            return quoted, None, applied
        rule_first = frozenset((p, m) for p, m, _ in quoted[:1])
        if prefs.sort == "price":
            quoted.sort(key=_by_quote)
            applied.append("sort")
        elif prefs.sort is not None:
            quoted, step["sort"] = self._rank(self.sort_strategies[prefs.sort], quoted, availability, job)
            applied.append("sort")
        named: dict[tuple[str, str], None] = {}
        if prefs.order:
            applied.append("order")
            for provider, model in prefs.order:
                if model is not None:
                    named[(provider, model)] = None
                    continue
                in_chain = [(p, m) for p, m, _ in quoted if p == provider]
                named.update(dict.fromkeys(in_chain or [(provider, self.providers[provider]["model"])]))
            known = {(p, m): q for p, m, q in quoted}
            head = [(p, m, known[(p, m)] if (p, m) in known else self.quote(p, m, job.length, job.resolution,
                                                                             job.audio)) for p, m in named]
            quoted = head + [c for c in quoted if (c[0], c[1]) not in named]
        if prefs.fallbacks:
            return quoted, None, applied
        return quoted, frozenset(named) if named else rule_first, applied

    def _try_candidates(self, job: Job, job_id: str, availability: Availability | None,
                        explanation: list[dict[str, Any]], prefs: Preferences | None, step: dict[str, Any],
                        chain: list[tuple[str, str]], strategy: strategies.Strategy, max_quote: float | None,
                        outcome: _Tally) -> Decision | None:
        """Each candidate through the filters, in order; the first that passes them all takes the job. Filters
        without side effects come first: the availability check may claim a breaker's probe, the budget
        charges the quote."""
        quoted, allowed, applied = self._arrange(job, chain, strategy, prefs, availability, step)
        if step.get("bucket") is not None:
            applied.insert(1, "split")
        applied.append("limits")
        if prefs is not None:
            if allowed is not None:
                applied.append("allowFallbacks")
            applied += [name for name, on in (("only", prefs.only), ("ignore", prefs.ignore),
                                              ("consent", prefs.consent is False),
                                              ("regions", prefs.regions is not None)) if on]
        if max_quote is not None:
            applied.append("tier")
        max_price = prefs.max_price if prefs is not None else None
        if max_price is not None:
            applied.append("maxPrice")
        if availability is not None:
            applied.append("availability")
            if (self.rate_limits or self.max_in_flight) and availability.charge_budget is not None \
                    and rate_limits.LIMITER is not None:
                applied.append("rateLimit")
            if self.budgets and availability.charge_budget is not None:
                applied.append("budget")
        step["filters"] = applied
        by_price = strategy.name == "cheapest" or (prefs is not None and prefs.sort == "price")
        ranked = by_price or strategy.name != "order" or (prefs is not None and prefs.sort is not None)
        tried: list[dict[str, Any]] = []
        step["candidates"] = tried
        for position, (provider_name, model, quote) in enumerate(quoted):
            provider = self.providers[provider_name]
            note: str | None = None
            budget_key: str | None = None
            region: str | None = None
            dropped, skipped = self._drop(job, provider_name, provider, model, quote, allowed, prefs,
                                          max_quote, max_price)
            if dropped is None:
                dropped, note, skipped, region = place(provider_name, provider, model, job_id, availability, prefs)
            if dropped is None:
                refusal = self._credits_refusal(job, provider_name, model, quote)
                if refusal is not None:
                    tried.append(_candidate(provider_name, model, quote, "credits", refusal))
                    explanation.append({**step, "why": refusal})
                    return _reject(reasons.INSUFFICIENT_CREDITS, step["rule"], explanation, None)
                skipped = self._admit(provider_name, model, availability, job_id)
                if skipped is not None:
                    dropped = "rateLimit"
                else:
                    skipped, budget_key = self._charge(provider_name, quote, availability)
                    dropped = "budget" if skipped is not None else None
                    if skipped is not None:
                        self._release(provider_name, model, availability, job_id)
            outcome.count(dropped, quote)
            tried.append(_candidate(provider_name, model, quote, dropped, skipped))
            if dropped is None:
                later = "a cheaper candidate takes the job" if by_price else \
                    "a candidate ranked higher takes the job" if ranked else "an earlier candidate takes the job"
                tried += [_candidate(p, m, q, None, f"not chosen: {later}") for p, m, q in quoted[position + 1:]]
                chosen = f"routes to {provider_name}/{model} at ${quote:g}" + (
                    " (the cheapest)" if by_price else " (ranked first)" if ranked and not position else "")
                explanation.append({**step, "why": chosen + (f" ({note})" if note else "")})
                return self._route_priced(job, provider_name, provider, model, quote, budget_key, step["rule"],
                                          explanation, region=region)
            if dropped == "tier" and not ranked:
                break  # the rule's order is its price: it does not route to another candidate to save
        explanation.append({**step, "matched": False, "why": "no candidate can take the job: " + "; ".join(
            f"{c['provider']}/{c['model']} {c['skipped']}" for c in tried)})
        return None

    def _rank(self, strategy: strategies.Strategy, quoted: list[tuple[str, str, float]],
              availability: Availability | None, job: Job) -> tuple[list[tuple[str, str, float]], dict[str, Any]]:
        stats = availability.stats if availability is not None else None
        model = availability.quality_model if availability is not None else None
        predicted = None
        if model and strategy.name == "best-value":  # the job's segment in the fitted quality model
            seg = quality.segment(job.length, job.resolution, job.audio)
            predicted = {(p, m): quality.predict(model, p, m, seg) for p, m, _ in quoted}
        return strategy.rank(quoted, stats, self.max_in_flight, availability.stats_note if availability else None,
                             predicted)

    def _drop(self, job: Job, name: str, provider: Mapping[str, Any], model: str, quote: float,
              allowed: frozenset[tuple[str, str]] | None, prefs: Preferences | None, max_quote: float | None,
              max_price: float | None) -> tuple[str | None, str | None]:
        """(the first filter that drops the candidate, why) before availability, or (None, None)."""
        if not provider["enabled"]:
            return "limits", "disabled in the routing table"
        limit = _first_failure(provider["limits"], job)
        if limit is not None:
            return "limits", f"limit: {limit}"
        if prefs is not None:
            if allowed is not None and (name, model) not in allowed:
                return "allowFallbacks", "the job allows no fallbacks"
            if prefs.only is not None and not preferences.matches(prefs.only, name, model):
                return "only", "not in the job's routing.only"
            if prefs.ignore is not None and preferences.matches(prefs.ignore, name, model):
                return "ignore", "in the job's routing.ignore"
            if prefs.consent is False and name not in self.consent_safe:
                return "consent", "no consent given, and the provider " + self.data_policy_note[name]
        if max_quote is not None and quote > max_quote:
            return "tier", f"over the {job.tier_policy} tier's limit: quote ${quote:g} > ${max_quote:g}"
        if max_price is not None and quote > max_price:
            return "maxPrice", f"quote ${quote:g} > the job's maxPriceUsd ${max_price:g}"
        return None, None

    def _tier(self, job: Job) -> tuple[float | None, str]:
        return self.tiers.get(job.tier_policy, (None, "normal"))

    def _credits_refusal(self, job: Job, provider: str, model: str, quote: float) -> str | None:
        """Why the user cannot pay the quote in credits, if they cannot (only with a balance known)."""
        if self.credits_per_usd is None or job.credits is None or job.tier_policy in self.credit_exempt_tiers:
            return None
        needed = quote * self.credits_per_usd
        if needed <= job.credits:
            return None
        return f"{provider}/{model} quotes ${quote:g} = {needed:g} credits, over the balance of {job.credits:g}"

    def _admit(self, provider: str, model: str, availability: Availability | None, job_id: str) -> str | None:
        """Why the provider's or model's rate limit (jobs a minute, then jobs in flight) cannot admit the job now
        (None: admitted, its slots taken). Only in a decision that may spend (charge_budget set: not explain, a
        dry run or a shadow)."""
        if not (self.rate_limits or self.max_in_flight) or availability is None or availability.charge_budget is None:
            return None
        limiter = rate_limits.LIMITER
        scopes = [(f"{provider}#{m}" if m else provider, self.rate_limits[(provider, m)])
                  for m in (None, model) if (provider, m) in self.rate_limits]
        flights = [(f"{provider}#{m}" if m else provider, self.max_in_flight[(provider, m)])
                   for m in ("", model) if (provider, m) in self.max_in_flight]
        return limiter.admit(scopes, flights, job_id) if (scopes or flights) and limiter is not None else None

    def _release(self, provider: str, model: str, availability: Availability | None, job_id: str) -> None:
        """Give back the job's in-flight leases: admitted, then refused by the budget (never routed)."""
        limiter = rate_limits.LIMITER
        flights = [f"{provider}#{m}" if m else provider for m in ("", model) if (provider, m) in self.max_in_flight]
        if flights and limiter is not None and availability is not None and availability.charge_budget is not None:
            limiter.release(flights, job_id)

    def _charge(self, provider: str, quote: float, availability: Availability | None) -> tuple[str | None, str | None]:
        """(why the provider's daily budget cannot take the quote, the budget item charged). No budget, or no
        live state to charge (explain, a dry run): nothing charged, no request."""
        budget = self.budgets.get(provider)
        if budget is None or availability is None or availability.charge_budget is None:
            return None, None
        charged, detail = availability.charge_budget(provider, quote, budget)
        return (None, detail) if charged else (detail, None)

    def _route_priced(self, job: Job, name: str, provider: Mapping[str, Any], model: str, quote: float,
                      budget_key: str | None, rule: str, explanation: list[dict[str, Any]],
                      why: str | None = None, region: str | None = None) -> Decision:
        priority = self._tier(job)[1]
        if region is not None:  # the provider region's own queue (table.py: regions exclude priorityQueues)
            _, queue, url = next(entry for entry in provider["regions"] if entry[0] == region)
            provider = {**provider, "queue": queue, "queueUrl": url}
        elif priority in provider["byPriority"]:  # the provider's queue for this priority, as if its only one
            queue, url = provider["byPriority"][priority]
            provider = {**provider, "queue": queue, "queueUrl": url}
        decision = _route(name, provider, model, rule, explanation, why)
        if decision["outcome"] == "route":
            decision["quoteUsd"], decision["quoteUsdText"] = quote, f"{quote:.4f}"
            decision["priority"] = priority
            decision["providerRegion"] = region or DEFAULT_REGION
            if budget_key is not None:
                decision["budgetKey"] = budget_key
        return decision


ORDER_RULE = "routing.order"  # the job's own order, tried where no rule of the table matched
_ORDER = strategies.Strategy()



def _by_quote(candidate: tuple[str, str, float]) -> float:
    return candidate[2]
