"""Text normalisation: width, traditional characters, fillers, and offset maps back to the input."""

from __future__ import annotations

from kefu.settings import Settings
from kefu.text import normalize, normalize_display, normalize_with_map, to_halfwidth, to_simplified


def test_width_and_traditional() -> None:
    assert to_halfwidth("９５５９８，ＡＰＰ") == "95598,APP"
    assert to_simplified("電費帳單") == "电费帐单"
    assert normalize("網上國網ＡＰＰ") == "网上国网app"


def test_fillers_and_punctuation_are_removed_but_words_kept() -> None:
    assert normalize("嗯 那个那个 我家 停电了，呃！") == "我家停电了"
    assert normalize("那个电表坏了") == "那个电表坏了"  # a single 那个 carries meaning
    assert normalize("额度不够 额 怎么办") == "额度不够怎么办"
    assert normalize("嗯嗯", strip_fillers=False) == "嗯嗯"


def test_offset_map_points_back_to_original_span() -> None:
    original = "呃 你自己不會看嗎？"
    norm, index = normalize_with_map(original)
    assert norm == "你自己不会看吗"
    start = norm.index("不会看")
    span = original[index[start] : index[start + 2] + 1]
    assert span == "不會看"


def test_display_normalisation() -> None:
    assert normalize_display("  您好，\u3000国家电网  ９５５９８ ") == "您好, 国家电网 95598"


def test_settings_home(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("KEFU_HOME", str(tmp_path))
    s = Settings.from_env()
    assert s.kb_dir == tmp_path / "kb" and s.models_dir == tmp_path / "models"
    monkeypatch.delenv("KEFU_HOME")
    assert str(Settings.from_env().home) == "var"
