"""What the speaker says, in each built-in language.

Kept apart from the logic so a translator edits one table. Numbers are spelled by the
voice itself (espeak-ng and Piper both read digits in their language).
"""

from __future__ import annotations

from datetime import datetime

from firmware.assistant.settings import Language

_TEXT: dict[str, dict[Language, str]] = {
    "unknown": {Language.ENGLISH: "Sorry, I can't do that yet.", Language.KOREAN: "죄송해요, 아직 그건 못 해요."},
    "not_heard": {Language.ENGLISH: "Sorry, I didn't catch that.", Language.KOREAN: "죄송해요, 잘 못 들었어요."},
    "no_recognizer": {
        Language.ENGLISH: "Sorry, I can't understand speech yet: Earmark has no speech recognizer installed.",
        Language.KOREAN: "죄송해요, 아직 음성 인식기가 설치되지 않았어요.",
    },
    "no_cloud": {
        Language.ENGLISH: "Sorry, I can't reach Earmark right now. Nothing was changed.",
        Language.KOREAN: "죄송해요, 지금 이어마크에 연결할 수 없어요. 아무것도 바뀌지 않았어요.",
    },
    "timer_set": {Language.ENGLISH: "Timer set for {duration}.", Language.KOREAN: "{duration} 타이머를 시작할게요."},
    "timer_left": {Language.ENGLISH: "{duration} left.", Language.KOREAN: "{duration} 남았어요."},
    "no_timer": {Language.ENGLISH: "There's no timer running.", Language.KOREAN: "실행 중인 타이머가 없어요."},
    "timers_full": {
        Language.ENGLISH: "Sorry, too many timers are running.",
        Language.KOREAN: "죄송해요, 타이머가 너무 많아요.",
    },
    "timer_cancelled": {Language.ENGLISH: "Timer cancelled.", Language.KOREAN: "타이머를 취소했어요."},
    "volume": {Language.ENGLISH: "Volume {percent} percent.", Language.KOREAN: "볼륨 {percent} 퍼센트."},
    "deleted_last": {
        Language.ENGLISH: "Done. I deleted what you just said.",
        Language.KOREAN: "방금 하신 말을 지웠어요.",
    },
    "deleted_today": {
        Language.ENGLISH: "Done. I deleted {count} recordings from today.",
        Language.KOREAN: "오늘 녹음 {count}개를 지웠어요.",
    },
    "review_stopped": {
        Language.ENGLISH: "Okay. People will not review your recordings. You can change this in the Earmark app.",
        Language.KOREAN: "알겠어요. 이제 사람이 녹음을 검토하지 않아요. 이어마크 앱에서 바꿀 수 있어요.",
    },
    "review_on": {
        Language.ENGLISH: "People may review a small sample of your recordings to improve recognition. "
        "To stop that, say: stop letting people review my recordings.",
        Language.KOREAN: "인식 개선을 위해 사람이 녹음 일부를 검토할 수 있어요. "
        "멈추려면 녹음 검토 하지 마 라고 말하세요.",
    },
    "review_off": {
        Language.ENGLISH: "People never review your recordings.",
        Language.KOREAN: "사람이 녹음을 검토하지 않아요.",
    },
    "review_voice_refused": {
        Language.ENGLISH: "For your privacy, review can only be turned on in the Earmark app.",
        Language.KOREAN: "개인 정보 보호를 위해 검토는 이어마크 앱에서만 켤 수 있어요.",
    },
    "privacy_failed": {
        Language.ENGLISH: "Sorry, that didn't work. Nothing was changed.",
        Language.KOREAN: "죄송해요, 처리하지 못했어요. 아무것도 바뀌지 않았어요.",
    },
}

_UNITS = {
    Language.ENGLISH: (("hour", "hours"), ("minute", "minutes"), ("second", "seconds")),
    Language.KOREAN: (("시간", "시간"), ("분", "분"), ("초", "초")),
}


def say(key: str, language: Language, **values: object) -> str:
    """The reply `key` in `language`, filled in."""
    return _TEXT[key][language].format(**values)


def duration(seconds: float, language: Language) -> str:
    """ "4 minutes and 10 seconds" / "4 분 10 초" (whole seconds, rounded up)."""
    total = max(0, int(-(-seconds // 1)))
    parts = []
    for (one, many), size in zip(_UNITS[language], (3600, 60, 1), strict=True):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count} {one if count == 1 else many}")
    if not parts:
        parts = [f"0 {_UNITS[language][2][1]}"]
    joiner = " and " if language is Language.ENGLISH else " "
    return joiner.join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + joiner + parts[-1]


def clock_time(moment: datetime, language: Language) -> str:
    """ "It's 3:05 PM." / "지금은 오후 3시 5분이에요." """
    hour12 = moment.hour % 12 or 12
    if language is Language.KOREAN:
        half = "오전" if moment.hour < 12 else "오후"
        minutes = f" {moment.minute}분" if moment.minute else ""
        return f"지금은 {half} {hour12}시{minutes}이에요."
    return f"It's {hour12}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}."


def date(moment: datetime, language: Language) -> str:
    """ "Today is Saturday, November 28." / "오늘은 11월 28일 토요일이에요." """
    if language is Language.KOREAN:
        weekday = "월화수목금토일"[moment.weekday()]
        return f"오늘은 {moment.month}월 {moment.day}일 {weekday}요일이에요."
    return f"Today is {moment.strftime('%A, %B')} {moment.day}."
