"""Masking personal data in call text: what must be hidden, and what must stay readable."""

from __future__ import annotations

import pytest

from qa_inspect.privacy import Masker, digits_of, mask_text

MASKED = [
    # (sentence, the personal data that must disappear, the label that replaces it)
    ("我的手机号是13812345678，有事打给我", "13812345678", "[手机号]"),
    ("你打我电话 138 1234 5678 就行", "1234", "[手机号]"),
    ("号码138-1234-5678", "1234-5678", "[手机号]"),
    ("电话是幺三八一二三四五六七八", "幺三八一二三四五六七八", "[手机号]"),
    ("我电话幺三八，零零一三，八零零零", "八零零零", "[手机号]"),
    ("我手机一五九零零零一二三四五", "一五九零零零一二三四五", "[手机号]"),
    ("座机0571-87654321，白天有人", "87654321", "[电话]"),
    ("家里电话是87654321", "87654321", "[电话]"),
    ("身份证号11010519900101123X", "11010519900101123X", "[身份证号]"),
    ("身份证是110105199001011234", "110105199001011234", "[身份证号]"),
    ("他念成了110105199001011234X，多了一位", "110105199001011234", "[身份证号]"),
    ("从银行卡6222021234567890123扣款", "6222021234567890123", "[银行卡号]"),
    ("卡号是六二二二零二一二三四五六七八九零一", "六二二二零二一二三四五六七八九零一", "[银行卡号]"),
    ("户号是1234567890", "1234567890", "[户号]"),
    ("我家户号 3300123456789 你查一下", "3300123456789", "[户号]"),
    ("户号三三零零一二三四五六", "三三零零一二三四五六", "[户号]"),
    ("我用户编号1100223344，户名张三", "1100223344", "[户号]"),
]


@pytest.mark.parametrize(("text", "secret", "label"), MASKED)
def test_numbers_are_masked_with_a_label(text: str, secret: str, label: str) -> None:
    out = mask_text(text)
    assert secret not in out
    assert label in out


ADDRESSES = [
    ("地址是城南路18号3栋", "城南路", ["18", "3栋"]),
    ("幸福小区5栋2单元301室", "幸福小区", ["5栋", "301"]),
    ("我住在五号楼三单元502", "单元", ["五号楼", "502"]),
    ("我家在人民路一百二十三号", "人民路", ["一百二十三"]),
    ("朝阳区建国路88号院2号楼1单元1201", "朝阳区建国路", ["88", "1201"]),
    ("李家村3组12号", "李家村", ["3组", "12号"]),
]


@pytest.mark.parametrize(("text", "kept", "gone"), ADDRESSES)
def test_addresses_keep_the_road_but_not_the_house_number(text: str, kept: str, gone: list[str]) -> None:
    out = mask_text(text)
    assert kept in out
    for piece in gone:
        assert piece not in out, out
    assert "*" in out


UNCHANGED = [
    "您好，国家电网95598，工号1024，很高兴为您服务。",
    "您也可以拨打12398能源监管热线或者12345市民热线",
    "抢修人员城区范围45分钟内到达现场，24小时内恢复送电",
    "停电是2026-07-14下午开始的",
    "2026年7月14日有计划停电，提前7天公告",
    "欠费300元，缴清后24小时内复电",
    "这个月电费两百多，比上个月多了123.5元",
    "我7月1号就报修了，到现在三天了",
    "通话编号C20260714-0001已经记录",
    "一一核对一下您的信息",
    "用电量是1200度，电价0.5元每度",
    "电费是1200，上个月是800",
    "我家电表是2019年换的",
    "给您登记了 工单号是2026071400123 请记一下",
    "您的受理号：3207141234567，可以在网上国网查进度",
]


@pytest.mark.parametrize("text", UNCHANGED)
def test_service_numbers_times_dates_and_amounts_stay(text: str) -> None:
    assert mask_text(text) == text


def test_several_kinds_in_one_asr_sentence() -> None:
    text = "喂 我户号是1234567890 电话幺三八零零一三八零零零 地址城南路18号3栋 停了45分钟了"
    out = mask_text(text)
    assert out == "喂 我户号是[户号] 电话[手机号] 地址城南路**号*栋 停了45分钟了"


def test_a_service_reference_keyword_does_not_unmask_personal_numbers() -> None:
    # Only the number right after 工单号 is kept; a phone number later in the sentence is still masked.
    masked = mask_text("工单号2026071400123 有问题打我电话13800138000")
    assert "2026071400123" in masked and "13800138000" not in masked


def test_kinds_can_be_limited_and_are_validated() -> None:
    only_phone = Masker(kinds=["mobile"])
    assert only_phone.mask("户号1234567890 手机13812345678") == "户号1234567890 手机[手机号]"
    with pytest.raises(ValueError, match="unknown personal-data kind"):
        Masker(kinds=["email"])


def test_mask_value_walks_json_and_keeps_ids() -> None:
    m = Masker()
    value = {"call_id": "C13812345678", "taboo": [{"text": "你打13812345678"}], "score": 50}
    out = m.mask_value(value, frozenset({"call_id"}))
    assert out == {"call_id": "C13812345678", "taboo": [{"text": "你打[手机号]"}], "score": 50}


def test_digits_of_reads_chinese_numerals() -> None:
    assert digits_of("幺三八 一二-3四") == "138123" + "4"
