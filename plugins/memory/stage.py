"""The memory cognition stage: recall before the answer, store after it.

``before``: the date and time now, where this conversation left off (and how long ago),
the last few exchanges of this session (working memory) and the best-matching long-term
memories, each with how long ago it was said, go into ``turn.context``.

``after``: the user's words and the answer are stored as episodic memories of this
session (importance from the words, strength from the emotion stage's intensity), facts
the user stated about themselves as semantic memories (a fact already known is
reinforced instead of duplicated), and the session's last activity is updated.
"""

from __future__ import annotations

import time
from typing import Any

from core.logging import get_logger

from .facts import extract_facts, importance

log = get_logger("loom.memory")

CONTINUITY_GAP = 30 * 60.0  # a pause longer than this is worth mentioning


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


class MemoryStage:
    name = "memory"

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    async def _get(self, turn: Any) -> Any:
        """The turn's app's memory service (opened on first use)."""
        handle = turn.app.services.get("memory") if turn.app is not None else None
        if handle is None:
            raise RuntimeError("the memory stage needs a turn run by an app with the memory plugin")
        return await handle.get()

    async def before(self, turn: Any) -> None:
        svc = await self._get(turn)
        now = svc.clock()
        text = turn.transcript
        info: dict[str, Any] = {"recalled": []}
        turn.context.append(f"Current date and time: {time.strftime('%A %d %B %Y, %H:%M', time.localtime(now))}.")

        session = await svc.session(turn.session_id)
        if session is not None:
            info["session"] = {"turns": session["turns"], "last_ago": session["last_ago"]}
            if now - session["last_at"] > CONTINUITY_GAP:
                turn.context.append(f"This conversation continues from {session['last_ago']} "
                                    f"(it was about: \"{_short(session['last_text'] or '', 80)}\").")
        else:
            previous = [s for s in await svc.sessions(1) if s["id"] != turn.session_id]
            if previous:
                p = previous[0]
                info["previous_session"] = {"id": p["id"], "last_ago": p["last_ago"]}
                turn.context.append(f"Your previous conversation with the user was {p['last_ago']} "
                                    f"(about: \"{_short(p['title'] or '', 80)}\").")

        working = await svc.working(turn.session_id)
        recent = working[-4:]
        if recent:
            lines = [f"{i['role'] or 'note'} ({i['ago']}): {_short(i['text'])}" for i in recent]
            turn.context.append("Earlier in this conversation:\n" + "\n".join(lines))
        shown = {i["text"] for i in recent}

        if text.strip():
            found = await svc.recall(text, k=self.settings.recall_k)
            for r in found:
                if r["score"] < self.settings.min_score or r["text"] in shown or r["text"] == text:
                    continue
                if (r.get("metadata") or {}).get("uncertain"):
                    continue  # a past guess must not come back as a fact and make new samples agree
                who = "fact about the user" if r["kind"] == "semantic" else (
                    "the user said" if r["role"] == "user" else "you said" if r["role"] == "assistant" else "noted")
                where = "" if r["session_id"] in (None, turn.session_id) else ", in another conversation"
                turn.context.append(f"Memory ({who}, {r['ago']}{where}): {_short(r['text'], 240)}")
                info["recalled"].append({"id": r["id"], "score": r["score"], "ago": r["ago"], "kind": r["kind"]})
        turn.metadata["memory"] = info

    async def after(self, turn: Any) -> None:
        svc = await self._get(turn)
        text = turn.transcript.strip()
        if not text:
            return
        tools = turn.plan.tool_names() if turn.plan is not None and hasattr(turn.plan, "tool_names") else []
        if "memory.forget" in tools:  # storing "forget X" would keep X: only note the turn
            await svc.note_turn(turn.session_id, "(asked to forget something)")
            return
        emo = turn.metadata.get("emotion") or {}
        intensity = float(emo.get("intensity", 0.0) or 0.0)
        label = emo.get("dominant")
        # An explicit memory.remember step already stored the fact the user gave.
        facts = [] if "memory.remember" in tools else extract_facts(text)
        weight = importance(text, intensity, len(facts))
        limit = svc.settings.max_text
        items: list[dict[str, Any]] = [dict(text=text[:limit], kind="episodic", session_id=turn.session_id,
                                            role="user", importance=weight, emotion=min(intensity, 1.0),
                                            emotion_label=label)]
        # What a memory tool answered is memory already (or a receipt): not worth storing again.
        echo = bool(tools) and all(t.startswith("memory.") for t in tools)
        if turn.answer and not echo:
            meta = {"uncertain": True, "confidence": turn.confidence} if turn.uncertain else None
            items.append(dict(text=turn.answer[:limit], kind="episodic", session_id=turn.session_id,
                              role="assistant", importance=0.25 if turn.uncertain else 0.35, metadata=meta))
        ids = []
        for item in items:  # one at a time so working memory sees both, in order
            ids.append(await svc.remember(**item))
        stored_facts = []
        for fact in facts:
            known = await svc.recall(fact, k=1, kinds=["semantic"], touch=False)
            if known and (known[0]["text"].lower() == fact.lower() or (known[0]["similarity"] or 0) > 0.95):
                await svc.touch([known[0]["id"]])
                continue
            stored_facts.append(await svc.remember(fact, "semantic", session_id=turn.session_id,
                                                   importance=max(weight, 0.7), emotion=min(intensity, 1.0),
                                                   emotion_label=label, metadata={"from": ids[0]}))
        await svc.note_turn(turn.session_id, text)
        turn.metadata.setdefault("memory", {})["stored"] = {"episodic": ids, "semantic": stored_facts}
