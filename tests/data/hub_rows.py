"""Fixture rows built in each hub dataset's own column schema (exact column names and value types of the hub sets)."""

from __future__ import annotations


def sst2(n: int = 40) -> list[dict]:  # stanfordnlp/sst2: idx int32, sentence str, label ClassLabel(neg, pos)
    return [{"idx": i, "sentence": f"movie {i} was {'great' if i % 2 else 'dull'} ", "label": i % 2} for i in range(n)]


def finsen(
    n: int = 60,
) -> list[dict]:  # takala/financial_phrasebank sentences_50agree: sentence, label (0 neg, 1 neu, 2 pos)
    return [{"sentence": f"Profit item {i} .", "label": i % 3} for i in range(n)]


def poems(n: int = 30) -> list[dict]:  # google-research-datasets/poem_sentiment: id, verse_text, label (0..3)
    return [{"id": i, "verse_text": f"verse {i}", "label": i % 4} for i in range(n)]


def agnews(n: int = 40) -> list[dict]:  # fancyzhx/ag_news: text, label (0 World, 1 Sports, 2 Business, 3 Sci/Tech)
    return [{"text": f"news {i} headline", "label": i % 4} for i in range(n)]


def bbcnews(
    n: int = 25,
) -> list[dict]:  # SetFit/bbc-news: text, label (0 tech, 1 business, 2 sport, 3 ent., 4 politics)
    names = ["tech", "business", "sport", "entertainment", "politics"]
    return [{"text": f"story {i} " + "word " * 80, "label": i % 5, "label_text": names[i % 5]} for i in range(n)]


def strategyqa(
    n: int = 30,
) -> list[dict]:  # wics/strategy-qa test: qid, term, description, question, answer (bool), ...
    return [
        {
            "qid": f"q{i}",
            "term": "t",
            "description": "d",
            "question": f"Is {i} even?",
            "answer": i % 2 == 0,
            "facts": [f"{i} is a number."],
            "decomposition": ["What is it?"],
        }
        for i in range(n)
    ]


def sciq(n: int = 30) -> list[dict]:  # allenai/sciq
    return [
        {
            "question": f"What is thing {i}?",
            "distractor3": f"d3-{i}",
            "distractor1": f"d1-{i}",
            "distractor2": f"d2-{i}",
            "correct_answer": f"right-{i}",
            "support": f"Support for {i}.",
        }
        for i in range(n)
    ]


def qasc(n: int = 30) -> list[dict]:  # allenai/qasc: choices is {"text": [8], "label": ["A".."H"]}
    keys = list("ABCDEFGH")
    return [
        {
            "id": f"id{i}",
            "question": f"What does {i} do?",
            "choices": {"text": [f"opt{j}-{i}" for j in range(8)], "label": keys},
            "answerKey": keys[i % 8],
            "fact1": "f1",
            "fact2": "f2",
            "combinedfact": "cf",
            "formatted_question": "fq",
        }
        for i in range(n)
    ]


def gsm8k(n: int = 30) -> list[dict]:  # openai/gsm8k main: question, answer ("... #### n")
    return [
        {
            "question": f"Tom has {i} apples and buys 2. How many?",
            "answer": f"Tom has {i} + 2 = <<{i}+2={i + 2}>>{i + 2} apples.\n#### {i + 2}",
        }
        for i in range(n)
    ]


def gsm_symbolic(n: int = 30) -> list[dict]:  # apple/GSM-Symbolic main (test split only)
    return [
        {
            "id": i,
            "instance": 0,
            "question": f"Ann has {i} pens and gets 1,000 more. How many?",
            "answer": f"{i} + 1000 = {i + 1000}\n#### {i + 1000:,}",
            "original_id": i,
            "original_question": "q",
            "original_answer": "a",
            "canonical_answer": "c",
            "final_answer": str(i + 1000),
            "original_final_answer": "x",
        }
        for i in range(n)
    ]


def hmath(n: int = 30) -> list[dict]:  # EleutherAI/hendrycks_math <subset>: problem, level, type, solution
    return [
        {
            "problem": f"Solve $x + {i} = 2x$.",
            "level": "Level 1",
            "type": "Algebra",
            "solution": f"Subtracting, $x = {i}$, so the answer is $\\boxed{{{i}}}$.",
        }
        for i in range(n)
    ]


def squad(n: int = 10) -> list[dict]:  # rajpurkar/squad
    return [
        {
            "id": f"s{i}",
            "title": "T",
            "context": f"Paris is the capital {i}.",
            "question": "What is the capital?",
            "answers": {"text": ["Paris"], "answer_start": [0]},
        }
        for i in range(n)
    ]


def hh(n: int = 10) -> list[dict]:  # Dahoas/full-hh-rlhf
    return [
        {
            "prompt": f"\n\nHuman: hi {i}\n\nAssistant:",
            "response": " hello",
            "chosen": " hello",
            "rejected": " go away",
        }
        for i in range(n)
    ]


def camel_math(n: int = 5) -> list[dict]:  # camel-ai/math: role_1, topic; (sic), sub_topic, message_1, message_2
    topics = ["Algebra", "Probability", "Number theory", "Algebra"]
    return [
        {
            "role_1": "Mathematician_RoleType.ASSISTANT",
            "topic;": topics[i % 4],
            "sub_topic": "Solving equations",
            "message_1": f"Solve for x: 2x + {i} = {2 * i + i}",
            "message_2": f"Subtract {i} from both sides: 2x = {2 * i}. Divide by 2: x = {i}. "
            f"So, the solution is x = {i}.",
        }
        for i in range(n)
    ]
