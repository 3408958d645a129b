"""Benchmark prompts of roughly N tokens, each different from its first token on.

vLLM's automatic prefix caching reuses the KV cache of whole blocks (16 tokens by default) that match a
cached prompt from its start (vLLM docs, "Automatic Prefix Caching"). Identical or same-prefix prompts
would skip most of the prefill and make TTFT look better than real traffic gets. Each prompt therefore
opens with a unique tag and continues with sentences drawn at random from varied topics.

Without the model's tokenizer the length is estimated at 4 characters per token, OpenAI's rule of thumb
for English ("What are tokens and how to count them"); the benchmark reports the prompt tokens the
server counted, so the estimate is checked on every run.
"""

from __future__ import annotations

import random

CHARACTERS_PER_TOKEN = 4

SENTENCES = (
    "The harbour master logged forty-two arrivals before noon, most of them fishing boats returning early.",
    "A sourdough starter needs flour, water and patience more than it needs any particular recipe.",
    "Kubernetes schedules a pod only onto a node whose taints the pod tolerates.",
    "The committee postponed its vote on the bridge repairs until the engineers filed their report.",
    "Migrating birds use the Earth's magnetic field, the position of the sun and the pattern of the stars.",
    "In 1854 John Snow traced a cholera outbreak in London to a single contaminated water pump.",
    "A good incident review asks what made the failure possible, not who pressed the button.",
    "The violinist tuned her instrument twice because the concert hall was colder than the green room.",
    "Compound interest turns small, regular savings into a large sum over several decades.",
    "The recipe calls for three cloves of garlic, a pinch of chilli and a generous splash of olive oil.",
    "Glaciers carve U-shaped valleys, while rivers tend to cut narrow valleys shaped like a V.",
    "Every database migration should be reversible, or at least rehearsed on a copy of production data.",
    "The museum's new wing displays textiles from the Silk Road alongside the tools used to weave them.",
    "Photosynthesis converts light, water and carbon dioxide into sugar and releases oxygen.",
    "The train to the coast was delayed by a signal fault, so the passengers shared sandwiches and stories.",
    "A load balancer spreads requests across healthy backends and stops sending traffic to failing ones.",
    "Chess openings have names like the Sicilian Defence, the Queen's Gambit and the Ruy Lopez.",
    "The village bakery opens at five in the morning and usually sells out of rye bread by ten.",
    "Volcanic soil is fertile, which is why vineyards often climb the slopes of dormant volcanoes.",
    "The lighthouse keeper wrote the weather in a leather notebook every evening for thirty years.",
    "Graphics processors run thousands of simple threads at once, which suits matrix multiplication.",
    "The orchestra rehearsed the final movement slowly before playing it at full tempo.",
    "Bees communicate the direction and distance of flowers with a figure-of-eight waggle dance.",
    "A budget spreadsheet is only useful if someone updates it when the actual invoices arrive.",
    "The hikers reached the ridge at dusk and pitched their tents in the lee of a granite outcrop.",
    "Medieval scribes copied manuscripts by hand, and their small mistakes help historians date the copies.",
    "An on-call rotation works best when alerts are rare, actionable and owned by the team that gets paged.",
    "The city planted plane trees along the boulevard because they tolerate pollution and heavy pruning.",
    "Quantum computers use qubits, which can hold a superposition of zero and one until measured.",
    "The market stall sold twelve kinds of olives, four kinds of feta and honey from the nearby hills.",
    "Spot instances cost less than on-demand ones but can be reclaimed with two minutes' notice.",
    "The novelist rewrote the opening chapter eleven times before her editor was satisfied.",
    "Tides are driven mainly by the moon's gravity, with a smaller contribution from the sun.",
    "A well-written commit message explains why a change was made, not only what it changed.",
    "The ferry crossing takes ninety minutes in calm weather and more than two hours in a storm.",
    "Coral reefs cover a tiny fraction of the ocean floor yet shelter about a quarter of marine species.",
    "The carpenter measured twice, cut once, and still sanded the joint until it closed without a gap.",
    "Caching speeds up reads but adds a new question: when does a cached answer stop being true?",
    "The football match went to extra time after a late equaliser from a free kick.",
    "Saffron is expensive because each crocus flower yields only three delicate stigmas.",
)

INSTRUCTION = "Write a detailed, well-structured summary of the notes above."


def synthetic_prompt(rng: random.Random, index: int, target_tokens: int) -> str:
    """A prompt of about `target_tokens` tokens whose first tokens no other prompt shares."""
    target_characters = max(target_tokens, 1) * CHARACTERS_PER_TOKEN
    parts = [f"Notes {index}-{rng.getrandbits(48):012x}:"]
    length = len(parts[0]) + 1 + len(INSTRUCTION)
    while length < target_characters:
        sentence = rng.choice(SENTENCES)
        parts.append(sentence)
        length += len(sentence) + 1
    parts.append(INSTRUCTION)
    return " ".join(parts)
