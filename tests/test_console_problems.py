"""Chinese messages for the transcript readers' problems, as the console's upload pages show them."""

from __future__ import annotations

import io

from kefu.io import iter_records
from kefu.web.problems import error_text_zh, problem_zh


def test_error_lines_of_qa_score_read_in_chinese() -> None:
    # Exactly what `kefu qa score` writes into an error line: "; ".join(str(problem) …).
    bad = (b'{"call_id": "X", "turns": [{"role": "\\u7ecf\\u7406", "text": "hi"}, {"role": "agent"}]}\n'
           b'{"call_id": "Y", "turns": [}\n')
    records = list(iter_records("up.jsonl", stream=io.BytesIO(bad)))
    texts = [error_text_zh("; ".join(str(p) for p in r.errors)) for r in records]
    assert texts[0].startswith("第 1 句的角色必须是 agent/customer") and "经理" in texts[0]
    assert "；第 2 句缺少文本（text）" in texts[0]
    assert texts[1] == "不是有效的 JSON（缺少值，第 28 列；行可能被截断，或缺少括号、引号、逗号）"
    # Per-turn inputs name their own line; an unknown message is kept as it is.
    assert problem_zh(records[0].errors[0])[0] is None
    assert error_text_zh("something new went wrong") == "something new went wrong"
